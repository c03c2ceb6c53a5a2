"""Staged training: the VAE, then the denoiser and, with classifier guidance, the classifiers."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
from scvi.dataloaders import DataSplitter
from scvi.train import TrainRunner

from .._constants import (
    DEFAULT_EMA_DECAY,
    STAGE_MODULES,
)
from .._scvi_internals import devices_dsp
from ..train._latent_data import (
    LatentDataSplitter,
    StepBudget,
)
from ..train._settings import stage_settings
from ..train._stage_runner import run_stage
from ..train._stages import (
    StageSettings,
    all_finite,
    check_split,
    checked_batches,
    checked_budgets,
    checked_progress_bar,
    history_without,
    model_stages,
    n_processes,
    stage_plan_kwargs,
    stages_to_train,
    without_one_cell_batches,
)
from ..train._training_plans import LatentStageTrainingPlan, VAEStageTrainingPlan

logger = logging.getLogger("scvi").getChild("diffusion")

UNTRAINED_VAE_MESSAGE = (
    "The VAE is not trained yet; call `model.train()` (or `model.train(stages=['vae'])`) first."
)


class StagedTrainingMixin:
    """``train()`` in stages, each with scvi-tools' TrainRunner and its own progress bar.

    The VAE trains on the counts in epochs; the latent stages (the denoiser and, with
    classifier guidance, one classifier per condition) train on the cells' standardised
    latents for a budget of optimiser steps.
    """

    _training_plan_cls = VAEStageTrainingPlan
    _latent_training_plan_cls = LatentStageTrainingPlan
    _data_splitter_cls = DataSplitter
    _train_runner_cls = TrainRunner

    @devices_dsp.dedent
    def train(
        self,
        max_epochs: int | None = None,
        *,
        stages: Sequence[str] | None = None,
        vae_epochs: int | None = None,
        diffusion_steps: int | None = None,
        classifier_steps: int | None = None,
        diffusion_epochs: int | None = None,
        classifier_epochs: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float = 1.0,
        validation_size: float | None = None,
        batch_size: int = 128,
        latent_batch_size: int | None = None,
        ema_decay: float | None = DEFAULT_EMA_DECAY,
        progress_bar: bool = True,
        vae_plan_kwargs: dict | None = None,
        diffusion_plan_kwargs: dict | None = None,
        classifier_plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the stages: VAE, latent diffusion and, for classifier guidance, the classifiers.

        Each stage runs with scvi-tools' :class:`~scvi.train.TrainRunner` and shows one
        progress bar: the VAE's counts epochs, the latent stages' count optimiser steps.
        ``model.history`` holds every stage's curves, prefixed with ``vae_``, ``diffusion_`` and
        ``classifier_``.

        Parameters
        ----------
        max_epochs
            Cap on every stage, in passes over the cells (handy for quick runs): at most
            ``max_epochs`` VAE epochs, and at most as many latent steps as ``max_epochs`` passes
            over the cells take.
        stages
            Stages to (re)train, for example ``["diffusion"]`` to retrain the denoiser of a
            trained model. Default: all of them (``"vae"``, ``"diffusion"`` and, with
            classifier guidance and conditions, ``"classifier"``), except a VAE taken from a
            trained scVI model by :meth:`from_scvi_model`. They run in that order;
            the latent stages need a trained VAE, and retraining the VAE makes the latent
            stages stale until they are retrained too.
        vae_epochs
            Epochs of the VAE. Default: scvi-tools' heuristic, 400 up to 20,000 cells (so
            its steps grow with the cells), then ``400 * 20,000 / n_cells`` (about 62,500
            minibatches of 128 whatever the size).
        diffusion_steps
            Optimiser steps of the denoiser. Default: 2,000 minibatches of 512 cells, whatever
            the number of cells; where fewer cells fill a minibatch (small data, or a smaller
            ``latent_batch_size``), as many steps as draw the same cells, at most 4,000.
        classifier_steps
            Optimiser steps of the guidance classifiers (``guidance="classifier"`` only).
            Default: 3,000 (at most 500 passes over the cells, so that the classifiers of a
            few hundred cells do not memorise them).
        diffusion_epochs, classifier_epochs
            The same budgets in passes over the cells, instead of steps: one pass is
            ``ceil(n_cells / (latent_batch_size * n_processes))`` steps. Give either steps or
            epochs for a stage.
        %(param_accelerator)s
        %(param_devices)s
        train_size
            Fraction of cells used for training (the rest for validation). All by default: a
            generator should learn from every cell, rare types included.
        validation_size
            Fraction of cells for validation (default: the rest).
        batch_size
            Minibatch size of the VAE stage.
        latent_batch_size
            Minibatch size of the latent stages. Default: 512 cells for the denoiser, 256 for
            the guidance classifiers.
        ema_decay
            Decay of the exponential moving average of the denoiser's weights; the averaged
            weights are the ones kept, as is usual for diffusion models. ``None`` keeps the
            last weights instead.
        progress_bar
            Show one progress bar per stage. ``False`` shows nothing. scvi-tools' name,
            ``enable_progress_bar``, works too.
        vae_plan_kwargs, diffusion_plan_kwargs, classifier_plan_kwargs
            Keyword arguments for each stage's :class:`~scvi.train.TrainingPlan`.
        datasplitter_kwargs
            Keyword arguments for :class:`~scvi.dataloaders.DataSplitter`.
        **trainer_kwargs
            Keyword arguments for :class:`~scvi.train.Trainer`, such as ``strategy="ddp"``
            and ``num_nodes`` for distributed data parallel training (several devices or
            machines; see ``docs/scaling.md``). With several processes, the VAE's data loaders
            shard every epoch between them, and every process of a latent stage takes its own
            minibatch at each of the stage's steps: the latent stages keep their number of
            optimiser steps, each over a larger effective batch.

        Notes
        -----
        The counts are read minibatch by minibatch: a sparse ``X`` is never densified and a
        backed (on-disk) AnnData stays on disk. The latent stages train on the latents of the
        cells, held in memory (``n_latent`` numbers per cell).

        A NaN or infinite loss stops training with a
        :class:`~scvi_diffusion.NonFiniteLossError` that names the stage. If a stage fails or is
        interrupted, the stages trained before it are kept (``model.trained_stages_``) and the
        model stays usable: for example, a trained VAE still gives latent representations and
        ``train(stages=[...])`` resumes with the failed stage.

        On a CPU each stage follows the machine's load: it uses as many torch threads as other
        processes leave cores idle (at most the torch setting), and adapts when that changes.
        The weights depend on the thread count, so for bit-identical results set it yourself
        (``torch.set_num_threads``) and pass ``deterministic=True`` (Lightning's flag): every
        stage then keeps that thread count whatever the load. With the same
        ``scvi.settings.seed``, data, machine and thread count, the weights are identical.

        Returns
        -------
        None
            The model is trained in place; ``model.history`` and ``model.trained_stages_`` are
            updated.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
        >>> model = ScDiffusion(adata)
        >>> model.train()  # the default budget: about a minute on 2 CPU cores  # doctest: +SKIP
        >>> model.train(max_epochs=20)  # a quick look  # doctest: +SKIP
        >>> model.train(stages=["diffusion"], diffusion_steps=4000)  # doctest: +SKIP
        >>> model.train(accelerator="gpu", devices=2, strategy="ddp")  # doctest: +SKIP
        """
        max_epochs, vae_epochs, budgets = checked_budgets(
            max_epochs,
            vae_epochs,
            (diffusion_steps, diffusion_epochs),
            (classifier_steps, classifier_epochs),
        )
        sizes = checked_batches(batch_size, latent_batch_size, ema_decay)
        progress_bar = checked_progress_bar(progress_bar, trainer_kwargs)
        train_size, validation_size = check_split(train_size, validation_size, self.adata.n_obs)
        stages = stages_to_train(
            stages, self._all_stages, self.trained_stages_, self.pretrained_autoencoder_
        )
        processes = n_processes(accelerator, devices, trainer_kwargs)
        split = {"train_size": train_size, "validation_size": validation_size}
        settings = stage_settings(
            n_cells=self.adata.n_obs,
            max_epochs=max_epochs,
            vae_epochs=vae_epochs,
            given_budgets=budgets,
            sizes=sizes,
            n_processes=processes,
            split_kwargs={**split, **(datasplitter_kwargs or {})},
            plan_kwargs=stage_plan_kwargs(
                vae_plan_kwargs, diffusion_plan_kwargs, classifier_plan_kwargs
            ),
            runner_kwargs={
                "accelerator": accelerator,
                "devices": devices,
                "progress_bar": progress_bar,
                **trainer_kwargs,
            },
        )
        self._run_stages(stages, settings)

    def _run_stages(self, stages: list[str], settings: StageSettings) -> None:
        """Train ``stages`` in order; the stages trained so far stay usable if one fails."""
        trained = [s for s in self.trained_stages_ if s not in stages and "vae" not in stages]
        # a latent stage that stays trained needs the latent standardisation it was trained in;
        # otherwise (a new VAE, a pretrained scVI one, or all latent stages retrained) compute it
        standardize_anew = not any(s != "vae" for s in trained)
        history = history_without(self.history_, stages, self._auxiliary_guidance)
        latent_manager = None
        if "vae" in stages:
            self._auxiliary_guidance = {}
            self._reference_table = None
        for stage in stages:
            self.trained_stages_ = list(trained)
            try:
                self._reinitialize_if_not_finite(stage)
                if stage == "vae":
                    stage_history = self._train_vae(settings)
                else:
                    if latent_manager is None:
                        latent_manager = self._latent_training_data(standardize_anew)
                    stage_history = self._run_latent_stage(
                        stage,
                        getattr(self.module, STAGE_MODULES[stage]),
                        latent_manager,
                        settings.latent_budgets[stage],
                        settings.latent_batch_sizes[stage],
                        settings.plan_kwargs[stage],
                        settings.split_kwargs,
                        callbacks=settings.callbacks[stage],
                        **settings.runner_kwargs,
                    )
                history.update(stage_history)
            finally:
                # on failure too: the stages trained so far stay usable
                self.history_ = history
                self.is_trained_ = False
            trained.append(stage)
        self.trained_stages_ = trained
        self.history_ = history
        self.is_trained_ = not self._untrained_stages()

    def _train_vae(self, settings: StageSettings) -> dict:
        """The VAE stage, on the counts, for ``settings.vae_epochs`` epochs."""
        # each process of data parallel training loads its own share of every epoch
        split = {"distributed_sampler": settings.n_processes > 1, **settings.split_kwargs}
        splitter = self._data_splitter_cls(
            self.adata_manager,
            batch_size=settings.batch_size,
            **without_one_cell_batches(split, settings.batch_size, self.adata.n_obs),
        )
        plan = self._training_plan_cls(self.module.autoencoder, **settings.plan_kwargs["vae"])
        return self._run_stage(
            "vae",
            plan,
            splitter,
            settings.vae_epochs,
            callbacks=settings.callbacks["vae"],
            **settings.runner_kwargs,
        )

    def _run_stage(
        self, stage: str, training_plan, data_splitter, max_epochs: int, host=None, **kwargs
    ):
        """Train one stage with scvi-tools' runner (see :func:`run_stage`), timing it; the
        runner trains ``host`` (default: this model)."""
        started = time.perf_counter()
        history = run_stage(
            self._train_runner_cls,
            self if host is None else host,
            stage,
            training_plan,
            data_splitter,
            max_epochs,
            **kwargs,
        )
        self.stage_seconds_ = {**self.stage_seconds_, stage: time.perf_counter() - started}
        return history

    def _run_latent_stage(
        self,
        stage: str,
        module: torch.nn.Module,
        latent_manager,
        budget: StepBudget,
        batch_size: int,
        plan_kwargs: dict,
        split_kwargs: dict,
        host=None,
        **runner_kwargs,
    ) -> dict:
        """Train a latent stage (the denoiser or guidance classifiers) for its step budget."""
        splitter = LatentDataSplitter(latent_manager, budget, batch_size, **split_kwargs)
        plan = self._latent_training_plan_cls(module, **plan_kwargs)
        return self._run_stage(
            stage,
            plan,
            splitter,
            budget.epochs,
            max_steps=budget.steps,
            host=host,
            **runner_kwargs,
        )

    def _reinitialize_if_not_finite(self, stage: str) -> None:
        """Give a stage back its initial weights if they are NaN or infinite (left by a failed
        run), since training from them cannot recover; buffers (the latent standardisation)
        are kept."""
        module = getattr(self.module, STAGE_MODULES[stage])
        if all_finite(module):
            return
        logger.info(f"Re-initialising the weights of stage {stage!r}: they are not finite.")
        fresh = dict(
            getattr(
                self._module_cls(**self._module_kwargs), STAGE_MODULES[stage]
            ).named_parameters()
        )
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                parameter.copy_(fresh[name])

    @property
    def _all_stages(self) -> list[str]:
        """This model's training stages, in the order they run."""
        return model_stages(bool(self.condition_keys), self.guidance)

    def _untrained_stages(self) -> list[str]:
        return [s for s in self._all_stages if s not in self.trained_stages_]

    def _check_trained(self):
        untrained = self._untrained_stages()
        if not untrained:
            return
        if not self.trained_stages_:
            raise ValueError(
                "The model is not trained yet; call `model.train()` before generating."
            )
        raise ValueError(
            f"The stages {untrained} are not trained (the model has {self.trained_stages_}); "
            f"train them before generating: `model.train(stages={untrained})`."
        )

    def _check_if_trained(self, warn: bool = True, message: str = UNTRAINED_VAE_MESSAGE):
        """scvi-tools' check before using the VAE: a trained VAE is enough, even when a later
        stage failed or is not trained yet."""
        if "vae" not in self.trained_stages_:
            super()._check_if_trained(warn=warn, message=message)
