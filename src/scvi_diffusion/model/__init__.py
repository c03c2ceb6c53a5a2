"""The ScDiffusion model and the capabilities it is composed of."""
