"""Lightning callbacks of the training stages: progress, weight average, threads that follow
the machine's load, non-finite stop."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback, ProgressBar, WeightAveraging
from scvi.utils import track

from ._errors import NonFiniteLossError
from ._runtime import load_meter, set_torch_threads, training_threads

# seconds between two checks of the other processes' load during a stage
LOAD_CHECK_SECONDS = 1.0


class StageProgressBar(ProgressBar):
    """One progress bar per training stage, named after it.

    The VAE stage counts epochs, as scvi-tools' own bar does; the latent stages, whose epochs
    are only slices of a step budget, count optimiser steps. The bar shows the stage's loss at
    the end of every epoch.

    Parameters
    ----------
    stage
        Name shown on the bar.
    unit
        What the bar counts.
    """

    def __init__(self, stage: str, unit: Literal["epoch", "step"] = "epoch"):
        super().__init__()
        self.stage = stage
        self.unit = unit
        self._enabled = True
        self.main_progress_bar = None

    def __getstate__(self):
        # tqdm bars cannot be pickled (spawned data parallel processes pickle the callbacks)
        return {**self.__dict__, "main_progress_bar": None}

    @property
    def is_enabled(self) -> bool:
        """Whether the bar is shown."""
        return self._enabled

    def disable(self) -> None:
        """Hide the bar (Lightning does so on processes other than the first)."""
        self._enabled = False

    def enable(self) -> None:
        """Show the bar."""
        self._enabled = True

    def on_train_start(self, trainer, pl_module):
        """Open a bar over the stage's epochs or steps."""
        super().on_train_start(trainer, pl_module)
        if not self.is_enabled:
            return
        total = trainer.max_steps if self.unit == "step" else trainer.max_epochs
        self.main_progress_bar = track(
            None,
            total=total,
            description=f"Training {self.stage}",
            unit=self.unit,
            style="tqdm",
        )

    def get_metrics(self, trainer, pl_module) -> dict:
        """The logged metrics shown on the bar, without the logger's version number."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """Count the step."""
        if self.is_enabled and self.unit == "step":
            self.main_progress_bar.update()

    def on_train_epoch_end(self, trainer, pl_module):
        """Count the epoch and show the loss."""
        if not self.is_enabled:
            return
        if self.unit == "epoch":
            self.main_progress_bar.update()
        self.main_progress_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)

    def on_train_end(self, trainer, pl_module):
        """Close the bar."""
        if self.main_progress_bar is not None:
            self.main_progress_bar.close()
            self.main_progress_bar = None

    def on_exception(self, trainer, pl_module, exception):
        """Close the bar when the stage fails or is interrupted."""
        self.on_train_end(trainer, pl_module)


class WarmedUpEMA(WeightAveraging):
    """Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` with an exponential
    moving average whose decay warms up.

    The decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short runs average
    over their recent steps instead of staying near the initial weights. At the end of
    training the averaged weights replace the trained ones (Lightning's behaviour). Each step
    updates every floating-point weight and buffer in one ``torch._foreach_lerp_`` over tensors
    listed once, instead of walking the modules as :class:`~torch.optim.swa_utils.AveragedModel`
    does: on the small latent networks that walk cost as much as the step itself.

    Parameters
    ----------
    decay
        Decay of the average once warmed up.
    """

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay
        self._averaged: list[torch.Tensor] = []
        self._current: list[torch.Tensor] = []
        self._n_updates = 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Create the averaged copy and list the tensors it averages."""
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        averaged = self._average_model.module
        pairs = [
            (kept, live)
            for kept, live in zip(
                [*averaged.parameters(), *averaged.buffers()],
                [*pl_module.parameters(), *pl_module.buffers()],
                strict=True,
            )
            # integer buffers (the null labels of a conditional denoiser) are constants
            if kept.is_floating_point()
        ]
        self._averaged = [kept.detach() for kept, _ in pairs]
        self._current = [live.detach() for _, live in pairs]
        self._n_updates = 0

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Fold the step's weights into the average."""
        # a Python count: reading the averaged model's counter would wait for the GPU
        n = self._n_updates
        if n == 0:
            torch._foreach_copy_(self._averaged, self._current)
        else:
            rate = min(self.decay, (1.0 + n) / (10.0 + n))
            torch._foreach_lerp_(self._averaged, self._current, 1.0 - rate)
        self._n_updates += 1
        self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Averaged per step only."""


class ThreadsFollowLoad(Callback):
    """Re-check, every ``interval`` seconds of a stage, the cores other processes leave idle,
    and use that many torch threads (from 1 to ``max_threads``) once two checks in a row
    agree, so a spike of a second does not switch.

    The stage starts with the threads the idle cores allow (:func:`threads_for_idle_cores`);
    a process that starts later would otherwise stall every operation of a thread that now
    shares its core, and one that ends would leave a core unused. CPU training in one process
    only: on a GPU the threads do not set the pace, and the processes of distributed training
    would count each other as load.

    Parameters
    ----------
    max_threads
        The most threads to use: the user's torch setting when the stage started.
    interval
        Seconds between checks; a check reads ``/proc/stat`` and costs microseconds.
    """

    def __init__(self, max_threads: int, interval: float = LOAD_CHECK_SECONDS):
        super().__init__()
        self.max_threads = max_threads
        self.interval = interval
        self._meter = None
        self._checked = 0.0
        self._proposed = None

    def __getstate__(self):
        # a meter's readings belong to the process that took them
        return {**self.__dict__, "_meter": None}

    def on_train_start(self, trainer, pl_module) -> None:
        self._meter = None
        self._proposed = None
        on_cpu = trainer is None or (
            trainer.world_size == 1 and isinstance(trainer.accelerator, CPUAccelerator)
        )
        if on_cpu and self.max_threads > 1:
            self._meter = load_meter()
        self._checked = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._meter is None or time.monotonic() - self._checked < self.interval:
            return
        self._checked = time.monotonic()
        others = self._meter.others()
        if others is None:
            return
        threads = training_threads(self.max_threads, len(self._meter.cpus) - others)
        if threads != self._proposed:
            self._proposed = threads
            return
        set_torch_threads(threads)


class StopOnNonFiniteLoss(Callback):
    """Stop a stage with a :class:`NonFiniteLossError` as soon as a training loss is not finite
    (instead of training on, or failing later inside torch with NaN weights)."""

    def __init__(self, stage: str):
        self.stage = stage

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """Check the step's loss."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        finite = not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss).all())
        # with data parallel training every process stops at the same step, so none is left
        # waiting for the others' gradients
        if not trainer.strategy.reduce_boolean_decision(finite, all=True):
            raise NonFiniteLossError(
                self.stage,
                f"the loss at epoch {trainer.current_epoch}, step {trainer.global_step}",
            )
