"""Pure logic of staged training: process counts, splits, and the settings every stage shares."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .._constants import LATENT_PLAN_DEFAULTS, STAGES
from .._scvi_internals import parse_device_args, use_distributed_sampler
from .._validation import check_bool, check_number, positive_int
from ._latent_data import StepBudget


@dataclass
class StageSettings:
    """What the stages of one ``train()`` call run with, checked and resolved."""

    vae_epochs: int
    latent_budgets: dict[str, StepBudget]
    batch_size: int
    latent_batch_sizes: dict[str, int]
    n_processes: int
    split_kwargs: dict
    plan_kwargs: dict[str, dict]
    callbacks: dict[str, list]
    runner_kwargs: dict = field(default_factory=dict)


def n_accelerators() -> int:
    """CUDA devices of this machine, or 1 (the CPU)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def n_processes(accelerator, devices, trainer_kwargs: Mapping) -> int:
    """Number of training processes (devices times nodes) Lightning will run, 1 unless the
    training is data parallel (a DDP strategy, or several devices)."""
    strategy = trainer_kwargs.get("strategy")
    if strategy == "auto":
        strategy = None
    if strategy is not None and not use_distributed_sampler(strategy):
        return 1
    _, lightning_devices, _ = parse_device_args(
        accelerator=accelerator, devices=devices, return_device="torch"
    )
    if isinstance(lightning_devices, str):
        lightning_devices = [d for d in lightning_devices.split(",") if d.strip()]
    n_devices = len(lightning_devices) if isinstance(lightning_devices, Sequence) else 1
    if isinstance(lightning_devices, int):
        # -1: every device of the accelerator
        n_devices = lightning_devices if lightning_devices > 0 else max(1, n_accelerators())
    n_nodes = int(trainer_kwargs.get("num_nodes", 1))
    if strategy is None and n_devices * n_nodes == 1:
        return 1
    return max(1, n_devices * n_nodes)


def all_finite(module: torch.nn.Module) -> bool:
    """Whether every weight of ``module`` is finite."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def n_training_cells(train_size: float, n_cells: int) -> int:
    """Training cells for ``train_size``, as scvi-tools' DataSplitter counts them."""
    return math.ceil(train_size * n_cells)


def check_split(train_size, validation_size, n_cells: int) -> tuple[float, float | None]:
    """Valid ``train_size`` and ``validation_size`` that leave at least 2 training cells."""
    train_size = check_number("train_size", train_size, 0.0, 1.0, high_open=False)
    if validation_size is not None:
        validation_size = check_number(
            "validation_size", validation_size, 0.0, 1.0, low_open=False
        )
        if train_size + validation_size > 1.0:
            raise ValueError(
                "`train_size + validation_size` must be at most 1, got "
                f"{train_size} + {validation_size}."
            )
    n_train = n_training_cells(train_size, n_cells)
    if n_train < 2:
        raise ValueError(
            f"Training needs at least 2 cells; {n_cells} cells with train_size="
            f"{train_size} give {n_train}."
        )
    return train_size, validation_size


def without_one_cell_batches(split_kwargs: dict, batch_size: int, n_cells: int) -> dict:
    """The VAE's BatchNorm cannot train on a minibatch of one cell: when the training set
    would end with one, drop that last (shuffled, so each epoch another) cell."""
    n_train = n_training_cells(split_kwargs["train_size"], n_cells)
    if "drop_last" in split_kwargs or n_train % batch_size != 1:
        return split_kwargs
    return {**split_kwargs, "drop_last": True}


def checked_budgets(
    max_epochs, vae_epochs, diffusion: tuple, classifier: tuple
) -> tuple[int | None, int | None, dict[str, tuple[int | None, int | None]]]:
    """``train()``'s budgets, checked: the cap on every stage, the VAE's epochs and the
    denoiser's and the classifiers' ``(steps, epochs)`` (at most one of each given)."""
    max_epochs = positive_int("max_epochs", max_epochs)
    vae_epochs = positive_int("vae_epochs", vae_epochs)
    given = {
        "diffusion": checked_latent_budget("diffusion", *diffusion),
        "classifier": checked_latent_budget("classifier", *classifier),
    }
    return max_epochs, vae_epochs, given


def checked_batches(
    batch_size, latent_batch_size, ema_decay
) -> tuple[int, int | None, float | None]:
    """``train()``'s minibatch sizes and weight-average decay, checked (a ``latent_batch_size``
    of None: each latent stage's default)."""
    batch_size = positive_int("batch_size", batch_size, allow_none=False)
    latent_batch_size = positive_int("latent_batch_size", latent_batch_size)
    if ema_decay is not None:
        ema_decay = check_number("ema_decay", ema_decay, 0.0, 1.0)
    return batch_size, latent_batch_size, ema_decay


def checked_latent_budget(stage: str, steps, epochs) -> tuple[int | None, int | None]:
    """A latent stage's budget as given: steps or passes over the cells, not both."""
    steps = positive_int(f"{stage}_steps", steps)
    epochs = positive_int(f"{stage}_epochs", epochs)
    if steps is not None and epochs is not None:
        raise ValueError(
            f"Give `{stage}_steps` or `{stage}_epochs`, not both (one epoch is one pass "
            "over the cells)."
        )
    return steps, epochs


class ModuleHost:
    """What scvi-tools' TrainRunner needs of a model, for a module trained apart from the
    model's own (a guidance classifier trained on demand): the runner records the stage's
    history and training flag here and moves the module to the training device."""

    def __init__(self, module: torch.nn.Module, adata):
        self.module = module
        self.adata = adata
        self.history_ = None
        self.is_trained_ = False
        self.run_name = None

    def to_device(self, device) -> None:
        """Move the module to ``device``."""
        self.module.to(device)


def model_stages(conditional: bool, guidance: str) -> list[str]:
    """A model's training stages, in the order they run: the classifier stage exists only with
    classifier guidance and at least one registered condition."""
    if conditional and guidance == "classifier":
        return list(STAGES)
    return [s for s in STAGES if s != "classifier"]


def stages_to_train(
    stages, valid: list[str], trained: list[str], pretrained_vae: bool
) -> list[str]:
    """Validated ``stages`` of ``train()``, in running order (``valid`` without a pretrained
    VAE by default); warns (at ``train()``'s caller) when a new VAE makes trained stages stale."""
    if stages is None:
        return [s for s in valid if not (s == "vae" and pretrained_vae)]
    if isinstance(stages, str):
        stages = [stages]
    if not isinstance(stages, Sequence) or not stages:
        raise TypeError(f"`stages` must be a non-empty list of stage names from {valid}.")
    for stage in stages:
        if stage not in valid:
            why = (
                " (the classifier stage exists only with classifier guidance and at least "
                "one registered condition)"
                if stage == "classifier"
                else ""
            )
            raise ValueError(f"Unknown stage {stage!r}; this model's stages are {valid}{why}.")
    ordered = [s for s in valid if s in stages]
    if "vae" not in ordered and "vae" not in trained:
        raise ValueError(
            f"The latent stages {ordered} need a trained VAE; train it first: "
            "`model.train()` or `model.train(stages=['vae', ...])`."
        )
    stale = [s for s in trained if s != "vae" and s not in ordered]
    if "vae" in ordered and stale:
        warnings.warn(
            f"Retraining the VAE changes the latent space: the stages {stale} must be "
            f"retrained before generating (`model.train(stages={stale})`).",
            UserWarning,
            stacklevel=3,
        )
    return ordered


def history_without(history: dict | None, stages: Sequence[str], auxiliary_keys) -> dict:
    """The training history, less the curves of ``stages`` (about to be retrained); the curves
    of classifiers trained on demand for ``auxiliary_keys`` stay unless the VAE is retrained."""
    if "vae" in stages:
        return {}
    auxiliary = tuple(f"classifier_{key}_" for key in auxiliary_keys)
    return {
        key: value
        for key, value in (history or {}).items()
        if not any(key.startswith(f"{s}_") for s in stages) or key.startswith(auxiliary)
    }


def checked_progress_bar(progress_bar, trainer_kwargs: dict) -> bool:
    """``progress_bar``, or scvi-tools' name for it, ``enable_progress_bar``, taken out of
    ``trainer_kwargs``."""
    progress_bar = check_bool("progress_bar", progress_bar)
    if "enable_progress_bar" in trainer_kwargs:
        progress_bar = check_bool("enable_progress_bar", trainer_kwargs.pop("enable_progress_bar"))
    return progress_bar


def stage_plan_kwargs(vae_kwargs, diffusion_kwargs, classifier_kwargs) -> dict[str, dict]:
    """Each stage's training plan arguments: the user's, over the latent stages' defaults."""
    return {
        "vae": vae_kwargs or {},
        "diffusion": {**LATENT_PLAN_DEFAULTS["diffusion"], **(diffusion_kwargs or {})},
        "classifier": {**LATENT_PLAN_DEFAULTS["classifier"], **(classifier_kwargs or {})},
    }
