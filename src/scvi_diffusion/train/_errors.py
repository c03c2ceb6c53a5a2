"""The error a training stage stops with when its loss or weights stop being finite."""

from __future__ import annotations

# what to try when a stage's loss stops being finite, per stage
NON_FINITE_ADVICE = {
    "vae": (
        "Try a lower learning rate (`vae_plan_kwargs={'lr': 1e-4}`), gradient clipping "
        "(`gradient_clip_val=1.0`), or look for cells with extreme counts."
    ),
    "diffusion": (
        "Try a lower learning rate (`diffusion_plan_kwargs={'lr': 1e-4}`) or gradient clipping "
        "(`gradient_clip_val=1.0`); if the latents are extreme, retrain the VAE first."
    ),
    "classifier": (
        "Try a lower learning rate (`classifier_plan_kwargs={'lr': 1e-4}`) or gradient "
        "clipping (`gradient_clip_val=1.0`)."
    ),
}


class NonFiniteLossError(RuntimeError):
    """A training stage stopped because its loss or weights became NaN or infinite.

    Raised by :meth:`ScDiffusion.train <scvi_diffusion.ScDiffusion.train>` as soon as a
    training loss is not finite (instead of training on, or failing later inside torch with
    NaN weights), and when a stage fails with NaN or infinite weights. The message names the
    stage and what to try: a lower learning rate for that stage (``vae_plan_kwargs``,
    ``diffusion_plan_kwargs`` or ``classifier_plan_kwargs``, e.g. ``{"lr": 1e-4}``),
    gradient clipping (``gradient_clip_val=1.0``), or, for the VAE, looking for cells with
    extreme counts. Stages trained before the failed one are kept, so only that stage needs
    training again, with ``model.train(stages=[error.stage])``.

    Parameters
    ----------
    stage : str
        The stage that stopped: ``"vae"``, ``"diffusion"``, ``"classifier"`` or, for a
        classifier trained on demand for an unregistered obs column, ``"classifier_<key>"``.
    where : str
        What became non-finite, e.g. ``"the loss at epoch 3, step 120"`` or ``"the weights"``.

    Attributes
    ----------
    stage : str
        The stage that stopped.

    Examples
    --------
    Retrain only the failed stage, with a lower learning rate:

    >>> import scvi_diffusion
    >>> try:  # doctest: +SKIP
    ...     model.train()
    ... except scvi_diffusion.NonFiniteLossError as error:
    ...     print(error)
    ...     model.train(stages=[error.stage], diffusion_plan_kwargs={"lr": 1e-4})

    The message says what to try:

    >>> error = scvi_diffusion.NonFiniteLossError("diffusion", "the loss at step 120")
    >>> error.stage
    'diffusion'
    >>> print(error)  # doctest: +ELLIPSIS
    Training stage 'diffusion' stopped: the loss at step 120 became NaN or infinite. Try a ...
    >>> "diffusion_plan_kwargs={'lr': 1e-4}" in str(error)
    True
    """

    def __init__(self, stage: str, where: str):
        # classifiers trained on demand for unregistered columns are named "classifier_<key>"
        advice = NON_FINITE_ADVICE.get(stage, NON_FINITE_ADVICE["classifier"])
        retrain = (
            f"Stages trained before it are kept; retrain this one with "
            f"`model.train(stages=[{stage!r}])`."
            if stage in NON_FINITE_ADVICE
            else ""
        )
        super().__init__(
            f"Training stage {stage!r} stopped: {where} became NaN or infinite. {advice} "
            f"{retrain}".rstrip()
        )
        self.stage = stage
        self.where = where

    def __reduce__(self):
        # rebuilt from its arguments (not its message) when it crosses processes, as from
        # spawned data-parallel workers
        return type(self), (self.stage, self.where)
