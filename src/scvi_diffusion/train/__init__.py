"""Training: the stages' training plans, latent data, callbacks, errors and runtime."""
