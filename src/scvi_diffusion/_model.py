"""ScDiffusion: latent diffusion with guidance on scVI's latent space."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data._constants import _MODEL_NAME_KEY, _SETUP_ARGS_KEY
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.dataloaders import DataSplitter
from scvi.model._utils import (
    get_max_epochs_heuristic,
    parse_device_args,
    use_distributed_sampler,
)
from scvi.model.base import BaseModelClass, VAEMixin
from scvi.model.base._constants import SAVE_KEYS
from scvi.train import TrainRunner
from scvi.utils import setup_anndata_dsp
from scvi.utils._docstrings import devices_dsp
from tqdm.auto import tqdm

from ._callbacks import StageProgressBar, StopOnNonFiniteLoss, WarmedUpEMA
from ._conditions import ConditionSpace, draw_reference_cells, parse_requests
from ._constants import (
    INTERPOLATION_WEIGHT_KEY,
    LATENT_OBSM_KEY,
    PARAMS_UNS_KEY,
    condition_registry_key,
)
from ._count_sampling import sample_counts, to_csr
from ._diffusion import (
    SAMPLER_SPACING,
    SAMPLERS,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    run_sampler,
)
from ._io import validate_out, write_h5ad_in_batches
from ._latent_data import LatentDataSplitter, StepBudget, latent_step_budget, steps_per_pass
from ._module import (
    AUTOENCODERS,
    GUIDANCE_MODES,
    ConditionClassifiersModule,
    ScDiffusionModule,
)
from ._pretrained import (
    ARCHITECTURE_ARGS,
    check_autoencoder_kwargs,
    check_batches,
    read_scvi_model,
)
from ._runtime import quiet_lightning, threads_for_idle_cores
from ._save_load import ModelFileError, read_model_file, save_atomically, write_model_file
from ._trainingplans import LatentStageTrainingPlan, NonFiniteLossError, VAEStageTrainingPlan
from ._validation import (
    check_bool,
    check_key,
    check_number,
    check_seed,
    one_of,
    positive_int,
    row_sums,
    validate_counts,
)

logger = logging.getLogger("scvi").getChild("diffusion")

# per guidance mode, chosen from the guidance-strength curves in docs/benchmarks.md
DEFAULT_GUIDANCE_SCALES = {"classifier": 4.0, "classifier_free": 1.5}
# classifier-free guidance reaches held-out combinations of conditions and keeps single
# conditions realistic on data of thousands of cells, where classifier gradients push latents
# off the data (docs/benchmarks.md, "Conditioning"); the paper's setup keeps its classifiers
DEFAULT_GUIDANCE = {"scvi": "classifier_free", "mlp": "classifier"}
DEFAULT_CONDITION_DROPOUT = 0.25
DEFAULT_GENE_LIKELIHOOD = "poisson"
GENE_LIKELIHOODS = ("poisson", "nb", "zinb")
DISPERSIONS = ("gene", "gene-batch", "gene-cell")
DEFAULT_N_LATENT = {"scvi": 10, "mlp": 128}
# the paper's setup samples with its own ancestral DDPM over all T steps
DEFAULT_SAMPLER = {"scvi": "dpmpp_2m", "mlp": "ddpm"}
# chosen from the fidelity-against-steps curve of benchmarks/speed.py
DEFAULT_STEPS = {"dpmpp_2m": 20, "ddim": 50}
DEFAULT_EMA_DECAY = 0.999
# optimiser steps of the latent stages, and the passes over the cells that cap them on tiny data
LATENT_DEFAULTS = {"diffusion": (4_000, 10_000), "classifier": (3_000, 500)}
# the denoiser's optimiser: Adam's usual epsilon (as in diffusion models generally) instead of
# scvi-tools' 0.01, which for the small gradients of the noise-prediction loss damps every
# update; with it 4,000 steps are as faithful as 12,000 were (benchmarks/step_budget.py)
LATENT_PLAN_DEFAULTS = {"diffusion": {"lr": 1e-3, "eps": 1e-8}, "classifier": {"lr": 1e-3}}
OUTPUTS = ("counts", "normalized")
STAGES = ("vae", "diffusion", "classifier")
UNTRAINED_VAE_MESSAGE = (
    "The VAE is not trained yet; call `model.train()` (or `model.train(stages=['vae'])`) first."
)
# attribute of ScDiffusionModule trained by each stage
STAGE_MODULES = {"vae": "autoencoder", "diffusion": "diffusion", "classifier": "guidance"}
ENCODING_VALUES_PER_BATCH = 2**23
NORMALIZED_TARGET_SUM = 1e4


def _n_accelerators() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def _n_processes(accelerator, devices, trainer_kwargs: Mapping) -> int:
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
        n_devices = lightning_devices if lightning_devices > 0 else max(1, _n_accelerators())
    n_nodes = int(trainer_kwargs.get("num_nodes", 1))
    if strategy is None and n_devices * n_nodes == 1:
        return 1
    return max(1, n_devices * n_nodes)


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Fix torch's random state for a block, without touching the caller's."""
    if seed is None:
        yield
        return
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


class ScDiffusion(VAEMixin, BaseModelClass):
    """Generate realistic single cells with latent diffusion and guidance.

    A reimplementation of scDiffusion :cite:p:`Luo2024`: scVI's variational autoencoder
    (Poisson likelihood on raw counts by default) maps cells to a latent space, a DDPM learns the
    distribution of the standardised latents, and guidance steers generation toward the
    requested conditions: by default the denoiser takes the registered conditions itself
    (classifier-free guidance); with ``guidance="classifier"``, as in the paper, one classifier
    per condition, trained on noisy latents, adds its gradient.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`~scvi_diffusion.ScDiffusion.setup_anndata`.
    n_latent
        Dimensionality of the latent space, where diffusion runs. Default: 10 with scVI's
        VAE, 128 with the paper's MLP autoencoder.
    n_hidden
        Hidden units of the VAE's encoder and decoder.
    n_layers
        Hidden layers of the VAE's encoder and decoder.
    dropout_rate
        VAE dropout.
    denoiser_width
        Width of the denoiser's first level (the next are half and a quarter). Default:
        ``max(256, 16 * n_latent)``.
    guidance_horizon
        Guidance classifiers are trained on, and guide, timesteps ``t < guidance_horizon``.
    n_timesteps
        Diffusion steps ``T`` of the linear noise schedule.
    beta_start, beta_end
        First and last beta of the linear noise schedule.
    autoencoder
        ``"scvi"`` (default): scVI's VAE on raw counts.
        ``"mlp"``: the scDiffusion paper's original design, a deterministic MLP autoencoder on
        normalize_total + log1p expression (L2-normalised 128-d latent, MSE loss), sampled by
        default with the paper's 1000-step ancestral DDPM; its counts are Poisson draws at the
        library size of a training cell. ``n_hidden``, ``n_layers``, ``dropout_rate`` and the
        batch key apply to ``"scvi"`` only.
    gene_likelihood
        Count likelihood of scVI's decoder, which generated counts are drawn from. Poisson is
        the default: with it the latent carries all biological variation, and counts drawn
        from it are as hard to tell from held-out real cells as other real cells are; negative
        binomial samples are over-dispersed and easily spotted (``docs/benchmarks.md``).
    dispersion
        Negative binomial dispersion: per gene, per gene and batch, or per gene and cell
        (decoded from the latent).
    guidance
        How conditions steer generation. Default: ``"classifier_free"``, or ``"classifier"``
        with ``autoencoder="mlp"`` (the paper's setup).
        ``"classifier_free"``: the denoiser takes one learned embedding per
        condition, each replaced by a null embedding with probability ``condition_dropout`` in
        training; sampling combines the unconditional and the per-condition predictions
        (compositional guidance, as in CFGen). No classifier stage is trained. It reaches
        combinations of conditions never seen together in training, and its cells are harder
        to tell from held-out real cells on data of thousands of cells.
        ``"classifier"`` (the paper's): an unconditional denoiser, and one classifier per
        condition trained on noisy latents whose log-probability gradients are added while
        sampling.
    condition_dropout
        Probability of dropping each condition while training a ``"classifier_free"``
        denoiser.
    autoencoder_kwargs
        Further options of scVI's :class:`~scvi.module.VAE` (``autoencoder="scvi"`` only), such
        as ``{"use_layer_norm": "both", "use_batch_norm": "none"}``. Set by
        :meth:`from_scvi_model` to the pretrained model's own.

    Examples
    --------
    >>> import scvi_diffusion
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> scvi_diffusion.ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    >>> model = scvi_diffusion.ScDiffusion(adata)
    >>> model.train()  # doctest: +SKIP
    >>> synthetic = model.generate(n=500, cell_type="CD14+ Monocyte")  # doctest: +SKIP
    """

    _module_cls = ScDiffusionModule
    _training_plan_cls = VAEStageTrainingPlan
    _latent_training_plan_cls = LatentStageTrainingPlan
    _data_splitter_cls = DataSplitter
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: ad.AnnData,
        n_latent: int | None = None,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        denoiser_width: int | None = None,
        guidance_horizon: int = 500,
        n_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        autoencoder: Literal["scvi", "mlp"] = "scvi",
        gene_likelihood: Literal["poisson", "nb", "zinb"] = DEFAULT_GENE_LIKELIHOOD,
        dispersion: Literal["gene", "gene-batch", "gene-cell"] = "gene",
        guidance: Literal["classifier", "classifier_free"] | None = None,
        condition_dropout: float = DEFAULT_CONDITION_DROPOUT,
        autoencoder_kwargs: dict | None = None,
    ):
        super().__init__(adata)
        one_of("autoencoder", autoencoder, AUTOENCODERS)
        guidance = DEFAULT_GUIDANCE[autoencoder] if guidance is None else guidance
        for name, value, valid in (
            ("guidance", guidance, GUIDANCE_MODES),
            ("gene_likelihood", gene_likelihood, GENE_LIKELIHOODS),
            ("dispersion", dispersion, DISPERSIONS),
        ):
            one_of(name, value, valid)
        condition_dropout = check_number("condition_dropout", condition_dropout, 0.0, 1.0)
        dropout_rate = check_number("dropout_rate", dropout_rate, 0.0, 1.0, low_open=False)
        beta_start = check_number("beta_start", beta_start, 0.0, 1.0)
        beta_end = check_number("beta_end", beta_end, 0.0, 1.0)
        for name, value in (
            ("n_hidden", n_hidden),
            ("n_layers", n_layers),
            ("guidance_horizon", guidance_horizon),
            ("n_timesteps", n_timesteps),
        ):
            positive_int(name, value, allow_none=False)
        positive_int("denoiser_width", denoiser_width)
        n_latent = positive_int("n_latent", n_latent) or DEFAULT_N_LATENT[autoencoder]
        autoencoder_kwargs = check_autoencoder_kwargs(autoencoder_kwargs)
        if autoencoder_kwargs and autoencoder != "scvi":
            raise ValueError("`autoencoder_kwargs` apply to autoencoder='scvi' only.")
        if autoencoder == "mlp" and self.summary_stats.n_batch > 1:
            warnings.warn(
                "The 'mlp' autoencoder ignores the registered batch key; generated cells still "
                "take the batch label of a training cell.",
                UserWarning,
                stacklevel=2,
            )
        keys = self.condition_keys
        denoiser_dims = (
            None
            if denoiser_width is None
            else (
                denoiser_width,
                max(denoiser_width // 2, n_latent),
                max(denoiser_width // 4, n_latent),
            )
        )
        # kept to rebuild a stage's initial weights (see _reinitialize_if_not_finite)
        self._module_kwargs = dict(
            n_input=self.summary_stats.n_vars,
            n_batch=self.summary_stats.n_batch,
            n_classes=[len(self._categories(k)) for k in keys],
            condition_registry_keys=[condition_registry_key(k) for k in keys],
            autoencoder=autoencoder,
            gene_likelihood=gene_likelihood,
            dispersion=dispersion,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            denoiser_hidden_dims=denoiser_dims,
            guidance_horizon=guidance_horizon,
            n_timesteps=n_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            guidance=guidance,
            condition_dropout=float(condition_dropout),
            autoencoder_kwargs=autoencoder_kwargs,
        )
        self.module = self._module_cls(**self._module_kwargs)
        described = {
            "scvi": f"scVI autoencoder ({gene_likelihood} likelihood)",
            "mlp": "MLP autoencoder on log-normalised expression (scDiffusion paper)",
        }[autoencoder]
        self._model_summary_string = (
            f"ScDiffusion: {described}, n_latent={n_latent} + latent DDPM (T={n_timesteps}) + "
            f"{guidance.replace('_', '-')} guidance on {keys or 'no conditions'}."
        )
        self.init_params_ = self._get_init_params(locals())
        self._auxiliary_guidance: dict[str, tuple[ConditionClassifiersModule, pd.Index]] = {}
        self._reference_table: pd.DataFrame | None = None
        self.stage_seconds_: dict[str, float] = {}
        # stages whose weights are trained and current (saved with the model)
        self.trained_stages_: list[str] = []
        # the VAE came from a trained scVI model (from_scvi_model): train() leaves it as it is
        self.pretrained_autoencoder_ = False

    # ------------------------------------------------------------------ setup

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: ad.AnnData,
        layer: str | None = None,
        cell_type_key: str | None = None,
        tissue_key: str | None = None,
        condition_keys: Sequence[str] | None = None,
        batch_key: str | None = None,
        **kwargs,
    ) -> None:
        """%(summary)s.

        Counts are checked (non-negative integers, finite) before anything is registered, and
        every condition becomes a categorical field. With no keys the model is unconditional.

        Parameters
        ----------
        %(param_adata)s
        %(param_layer)s
        cell_type_key
            Obs column with cell types; a condition, also reachable as ``cell_type=``.
        tissue_key
            Obs column with tissues; a condition, also reachable as ``tissue=``.
        condition_keys
            Further categorical obs columns to condition on.
        %(param_batch_key)s
            The autoencoder removes batch effects; generated cells take the batch of a
            training cell with the same conditions.
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by scvi-tools
            when it transfers a registration to new data).

        Returns
        -------
        None
            ``adata`` is registered in place (categorical condition columns, and the
            registration's entry in ``adata.uns``); its counts are not changed.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", condition_keys=["phase"])
        >>> model = ScDiffusion(adata)
        >>> model.condition_keys
        ['cell_type', 'phase']

        Raw counts in a layer, with batches:

        >>> adata.layers["counts"] = adata.X.copy()
        >>> adata.obs["batch"] = "run1"
        >>> ScDiffusion.setup_anndata(
        ...     adata, layer="counts", cell_type_key="cell_type", batch_key="batch"
        ... )
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        for name, value in (
            ("layer", layer),
            ("cell_type_key", cell_type_key),
            ("tissue_key", tissue_key),
            ("batch_key", batch_key),
        ):
            check_key(name, value)
        if not (
            condition_keys is None
            or isinstance(condition_keys, str)
            or (
                isinstance(condition_keys, Sequence)
                and all(isinstance(k, str) for k in condition_keys)
            )
        ):
            raise TypeError(
                f"`condition_keys` must be a column name or a list of them, got "
                f"{condition_keys!r}."
            )
        keys = cls._condition_keys_from_args(cell_type_key, tissue_key, condition_keys)
        if not kwargs.get("source_registry"):
            validate_counts(adata, layer)
            for key in [*keys, *([] if batch_key is None else [batch_key])]:
                if key not in adata.obs:
                    raise ValueError(
                        f"{key!r} is not a column of adata.obs; available columns: "
                        f"{list(adata.obs.columns)}."
                    )
                missing = int(adata.obs[key].isna().sum())
                if missing:
                    raise ValueError(
                        f"adata.obs[{key!r}] has {missing} missing values; fill or drop those "
                        "cells before setup_anndata."
                    )
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, None),
            *[CategoricalObsField(condition_registry_key(k), k) for k in keys],
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def from_scvi_model(
        cls,
        scvi_model,
        adata: ad.AnnData | None = None,
        *,
        cell_type_key: str | None = None,
        tissue_key: str | None = None,
        condition_keys: Sequence[str] | None = None,
        **model_kwargs,
    ) -> ScDiffusion:
        """Start from a trained scVI model: its VAE becomes the autoencoder, as it is.

        Only the latent stages are left to train (the denoiser and, with classifier guidance,
        the classifiers): :meth:`train` skips the VAE, which takes minutes off training and
        keeps the latent space the scVI model shares with other tools, for example a model
        from scvi-hub. The VAE's architecture, likelihood, layer and batch key are the scVI
        model's.

        Parameters
        ----------
        scvi_model
            A trained :class:`scvi.model.SCVI` without covariates or size factors, with a
            ``"poisson"``, ``"nb"`` or ``"zinb"`` likelihood.
        adata
            Cells to train the latent stages on, with the scVI model's genes in its order and
            its batch categories. Default: the scVI model's AnnData.
        cell_type_key, tissue_key, condition_keys
            Conditions to register, as in :meth:`setup_anndata`. If none is given and
            ``adata`` is already registered with :meth:`setup_anndata`, that registration is
            used; otherwise the model is unconditional.
        **model_kwargs
            Further :class:`ScDiffusion` arguments, such as ``guidance`` or
            ``denoiser_width``; not the VAE's (``n_latent``, ``n_hidden``, ``n_layers``,
            ``dropout_rate``, ``gene_likelihood``, ``dispersion``, ``autoencoder_kwargs``),
            which come from the scVI model.

        Returns
        -------
        ScDiffusion
            A model whose VAE is trained (``trained_stages_ == ["vae"]``) and whose history
            holds the scVI model's curves under ``vae_``.

        Examples
        --------
        >>> import scvi
        >>> import scvi_diffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> scvi.model.SCVI.setup_anndata(adata)
        >>> vae = scvi.model.SCVI(adata, gene_likelihood="poisson")
        >>> vae.train()  # doctest: +SKIP
        >>> model = scvi_diffusion.ScDiffusion.from_scvi_model(
        ...     vae, adata, cell_type_key="cell_type"
        ... )  # doctest: +SKIP
        >>> model.train()  # the denoiser and the classifiers only  # doctest: +SKIP
        >>> synthetic = model.generate(n=500, cell_type="CD14+ Monocyte")  # doctest: +SKIP
        """
        pretrained = read_scvi_model(scvi_model)
        taken = sorted(
            set(model_kwargs) & {*ARCHITECTURE_ARGS, "autoencoder", "autoencoder_kwargs"}
        )
        if taken:
            raise TypeError(
                f"{taken} come from the scVI model and cannot be given to from_scvi_model."
            )
        adata = scvi_model.adata if adata is None else adata
        if adata is None:
            raise ValueError("The scVI model has no AnnData; pass the cells to train on.")
        if not isinstance(adata, ad.AnnData):
            raise TypeError(f"`adata` must be an AnnData, got {type(adata).__name__}.")
        cls._check_genes(pretrained.var_names.to_numpy(), adata)
        check_batches(adata, pretrained)
        try:
            registered = cls._get_most_recent_anndata_manager(adata)
        except ValueError:  # a copy of a registered AnnData: register it anew
            registered = None
        if cell_type_key is None and tissue_key is None and not condition_keys and registered:
            setup = registered._get_setup_method_args()[_SETUP_ARGS_KEY]
            for key, value in (("layer", pretrained.layer), ("batch_key", pretrained.batch_key)):
                if setup.get(key) != value:
                    raise ValueError(
                        f"adata is registered with {key}={setup.get(key)!r}, but the scVI "
                        f"model uses {key}={value!r}; pass the conditions to from_scvi_model "
                        "to register it anew."
                    )
        else:
            cls.setup_anndata(
                adata,
                layer=pretrained.layer,
                batch_key=pretrained.batch_key,
                cell_type_key=cell_type_key,
                tissue_key=tissue_key,
                condition_keys=condition_keys,
            )
        model = cls(adata, autoencoder="scvi", **pretrained.model_kwargs, **model_kwargs)
        try:
            model.module.autoencoder.load_state_dict(pretrained.state_dict)
        except RuntimeError as error:
            raise ValueError(
                f"The scVI model's weights do not fit the VAE rebuilt from its arguments: {error}"
            ) from None
        # a trained model is in eval mode: encoding the cells before the latent stages must not
        # update BatchNorm's running statistics (train() computes the latent standardisation)
        model.module.eval()
        model.trained_stages_ = ["vae"]
        model.pretrained_autoencoder_ = True
        model.history_ = pretrained.history
        model._model_summary_string += " Autoencoder: a pretrained scVI model."
        return model

    @staticmethod
    def _condition_keys_from_args(cell_type_key, tissue_key, condition_keys) -> list[str]:
        keys = [k for k in (cell_type_key, tissue_key) if k is not None]
        if isinstance(condition_keys, str):
            condition_keys = [condition_keys]
        for key in condition_keys or []:
            if key not in keys:
                keys.append(key)
        return keys

    @property
    def guidance(self) -> str:
        """Guidance mode: ``"classifier"`` or ``"classifier_free"``.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", condition_keys=["phase"])
        >>> ScDiffusion(adata, guidance="classifier_free").guidance
        'classifier_free'
        """
        return self.module.guidance_mode

    @property
    def _setup_args(self) -> dict:
        return self.registry_[_SETUP_ARGS_KEY]

    @property
    def condition_keys(self) -> list[str]:
        """Obs columns the model is conditioned on, in registration order.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", condition_keys=["phase"])
        >>> ScDiffusion(adata).condition_keys
        ['cell_type', 'phase']
        """
        args = self._setup_args
        return self._condition_keys_from_args(
            args.get("cell_type_key"), args.get("tissue_key"), args.get("condition_keys")
        )

    @property
    def condition_roles(self) -> dict[str, str]:
        """Role names (``cell_type``, ``tissue``) mapped to their registered obs columns.

        A role is also a keyword of :meth:`generate` (``cell_type=...``, ``tissue=...``).

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", condition_keys=["phase"])
        >>> ScDiffusion(adata).condition_roles
        {'cell_type': 'cell_type'}
        """
        args = self._setup_args
        return {
            role: args[f"{role}_key"]
            for role in ("cell_type", "tissue")
            if args.get(f"{role}_key") is not None
        }

    def _categories(self, key: str) -> pd.Index:
        mapping = self.adata_manager.get_state_registry(
            condition_registry_key(key)
        ).categorical_mapping
        return pd.Index(mapping)

    def _condition_space(self) -> ConditionSpace:
        registered = {k: self._categories(k) for k in self.condition_keys}
        batch_key = self._setup_args.get("batch_key")
        extra = {}
        for column in self.adata.obs.columns:
            series = self.adata.obs[column]
            if column in registered or column == batch_key or column.startswith("_scvi"):
                continue
            if isinstance(series.dtype, pd.CategoricalDtype):
                extra[column] = pd.Index(series.cat.categories)
            elif series.dtype == object or pd.api.types.is_bool_dtype(series):
                extra[column] = pd.Index(pd.unique(series.dropna()))
        return ConditionSpace(registered, self.condition_roles, extra)

    # ---------------------------------------------------------------- training

    def _run_stage(
        self,
        stage: str,
        training_plan,
        data_splitter,
        max_epochs: int,
        callbacks: Sequence = (),
        max_steps: int | None = None,
        progress_bar: bool = True,
        **runner_kwargs,
    ):
        """Train one stage with scvi-tools' runner; return its history under the stage prefix.

        ``max_steps`` (the latent stages) makes the stage a step budget, shown by its progress
        bar in steps. A NaN or infinite loss stops the stage with a
        :class:`NonFiniteLossError`; a Ctrl+C raises KeyboardInterrupt (Lightning turns it into
        SystemExit and leaves Ctrl+C ignored, which would disable it in the rest of a Jupyter
        session).
        """
        budget = f"{max_steps} steps" if max_steps is not None else f"{max_epochs} epochs"
        logger.debug(f"ScDiffusion training stage '{stage}': {budget}.")
        started = time.perf_counter()
        self.is_trained_ = False
        self.history_ = None
        # scvi-tools' runner leaves the module in eval mode after a stage; Lightning keeps it so
        training_plan.module.train()
        # scvi-tools' Trainer appends its own callbacks to the list it gets: a fresh list per
        # stage keeps the caller's list, and the next stage's, untouched
        callbacks = [*callbacks, StopOnNonFiniteLoss(stage)]
        if progress_bar:
            unit = "epoch" if max_steps is None else "step"
            callbacks.append(StageProgressBar(stage, unit))
        if max_steps is not None:
            runner_kwargs["max_steps"] = max_steps
        runner_kwargs.pop("simple_progress_bar", None)
        in_main_thread = threading.current_thread() is threading.main_thread()
        sigint_handler = signal.getsignal(signal.SIGINT) if in_main_thread else None
        try:
            with quiet_lightning(), threads_for_idle_cores() as threads:
                logger.debug(f"Stage '{stage}' runs with {threads} torch threads.")
                runner = self._train_runner_cls(
                    self,
                    training_plan=training_plan,
                    data_splitter=data_splitter,
                    max_epochs=max_epochs,
                    callbacks=callbacks,
                    enable_progress_bar=progress_bar,
                    # the stage's own bar (above) instead of scvi-tools' bar over epochs
                    simple_progress_bar=False,
                    **runner_kwargs,
                )
                runner()
        except SystemExit as error:
            if isinstance(error.__context__, KeyboardInterrupt):
                raise KeyboardInterrupt(f"Training interrupted in stage {stage!r}.") from None
            raise
        except NonFiniteLossError:
            raise
        except Exception as error:
            if not _all_finite(training_plan.module):
                raise NonFiniteLossError(stage, "the weights") from error
            raise
        finally:
            if in_main_thread and sigint_handler is not None:
                signal.signal(signal.SIGINT, sigint_handler)
        self.stage_seconds_ = {**self.stage_seconds_, stage: time.perf_counter() - started}
        return {f"{stage}_{key}": value for key, value in (self.history_ or {}).items()}

    def _latent_data_manager(self, latents: np.ndarray, obs: pd.DataFrame) -> AnnDataManager:
        """Register standardised latents and conditions as a small in-memory AnnData."""
        latent_adata = ad.AnnData(X=latents.astype(np.float32), obs=obs)
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, None, is_count_data=False),
            *[CategoricalObsField(condition_registry_key(k), k) for k in obs.columns],
        ]
        manager = AnnDataManager(fields=fields)
        with warnings.catch_warnings():
            # small categories are expected (rare cell types) and already reported at setup
            warnings.simplefilter("ignore", UserWarning)
            manager.register_fields(latent_adata)
        return manager

    def _training_conditions(self, keys: Sequence[str]) -> pd.DataFrame:
        """Registered conditions of the training cells, with the training categories."""
        return pd.DataFrame(
            {k: pd.Categorical(self.adata.obs[k], categories=self._categories(k)) for k in keys},
            index=self.adata.obs_names,
        )

    @property
    def _encoding_batch_size(self) -> int:
        """Cells encoded at once: each minibatch is densified, so at most ~8M values."""
        return int(min(4096, max(128, ENCODING_VALUES_PER_BATCH // self.adata.n_vars)))

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
        latent_batch_size: int = 256,
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
            Optimiser steps of the denoiser. Default: 4,000, whatever the number of cells (at
            most 10,000 passes over tiny data).
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
            Minibatch size of the latent stages.
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

        Training is deterministic on CPU: with the same ``scvi.settings.seed``, data and
        machine (and thread count), the weights are identical.

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
        max_epochs = positive_int("max_epochs", max_epochs)
        vae_epochs = positive_int("vae_epochs", vae_epochs)
        latent_budgets = {}
        for stage, steps, epochs in (
            ("diffusion", diffusion_steps, diffusion_epochs),
            ("classifier", classifier_steps, classifier_epochs),
        ):
            steps = positive_int(f"{stage}_steps", steps)
            epochs = positive_int(f"{stage}_epochs", epochs)
            if steps is not None and epochs is not None:
                raise ValueError(
                    f"Give `{stage}_steps` or `{stage}_epochs`, not both (one epoch is one pass "
                    "over the cells)."
                )
            latent_budgets[stage] = (steps, epochs)
        batch_size = positive_int("batch_size", batch_size, allow_none=False)
        latent_batch_size = positive_int("latent_batch_size", latent_batch_size, allow_none=False)
        if ema_decay is not None:
            ema_decay = check_number("ema_decay", ema_decay, 0.0, 1.0)
        progress_bar = check_bool("progress_bar", progress_bar)
        if "enable_progress_bar" in trainer_kwargs:
            # scvi-tools' name for it
            progress_bar = check_bool(
                "enable_progress_bar", trainer_kwargs.pop("enable_progress_bar")
            )
        train_size, validation_size = self._check_split(train_size, validation_size)
        stages = self._stages_to_train(stages)
        n_processes = _n_processes(accelerator, devices, trainer_kwargs)

        vae_epochs = vae_epochs or get_max_epochs_heuristic(self.adata.n_obs)
        if max_epochs is not None:
            vae_epochs = min(vae_epochs, max_epochs)
        per_pass = steps_per_pass(self._n_train(train_size), latent_batch_size, n_processes)
        budgets = {
            stage: latent_step_budget(steps, epochs, per_pass, max_epochs, *LATENT_DEFAULTS[stage])
            for stage, (steps, epochs) in latent_budgets.items()
        }
        callbacks = trainer_kwargs.pop("callbacks", None) or []
        runner_kwargs = {
            "accelerator": accelerator,
            "devices": devices,
            "progress_bar": progress_bar,
            **trainer_kwargs,
        }
        split_kwargs = {"train_size": train_size, "validation_size": validation_size}
        split_kwargs.update(datasplitter_kwargs or {})
        plan_kwargs = {
            "vae": vae_plan_kwargs or {},
            "diffusion": {**LATENT_PLAN_DEFAULTS["diffusion"], **(diffusion_plan_kwargs or {})},
            "classifier": {**LATENT_PLAN_DEFAULTS["classifier"], **(classifier_plan_kwargs or {})},
        }
        stage_callbacks = {
            "vae": callbacks,
            "diffusion": [
                *callbacks,
                *([] if ema_decay is None else [WarmedUpEMA(ema_decay)]),
            ],
            "classifier": callbacks,
        }

        trained = [s for s in self.trained_stages_ if s not in stages and "vae" not in stages]
        # a latent stage that stays trained needs the latent standardisation it was trained in;
        # otherwise (a new VAE, a pretrained scVI one, or all latent stages retrained) compute it
        standardize_anew = not any(s != "vae" for s in trained)
        history = self._history_without(stages)
        latent_manager = None
        if "vae" in stages:
            self._auxiliary_guidance = {}
            self._reference_table = None
        for stage in stages:
            self.trained_stages_ = list(trained)
            try:
                self._reinitialize_if_not_finite(stage)
                module = getattr(self.module, STAGE_MODULES[stage])
                if stage == "vae":
                    # each process of data parallel training loads its own share of every epoch
                    vae_split = {"distributed_sampler": n_processes > 1, **split_kwargs}
                    splitter = self._data_splitter_cls(
                        self.adata_manager,
                        batch_size=batch_size,
                        **self._without_one_cell_batches(vae_split, batch_size),
                    )
                    plan = self._training_plan_cls(module, **plan_kwargs[stage])
                    stage_history = self._run_stage(
                        stage,
                        plan,
                        splitter,
                        vae_epochs,
                        callbacks=stage_callbacks[stage],
                        **runner_kwargs,
                    )
                else:
                    if latent_manager is None:
                        latent_manager = self._latent_training_data(standardize_anew)
                    stage_history = self._run_latent_stage(
                        stage,
                        module,
                        latent_manager,
                        budgets[stage],
                        latent_batch_size,
                        plan_kwargs[stage],
                        split_kwargs,
                        callbacks=stage_callbacks[stage],
                        **runner_kwargs,
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

    def _run_latent_stage(
        self,
        stage: str,
        module: torch.nn.Module,
        latent_manager: AnnDataManager,
        budget: StepBudget,
        batch_size: int,
        plan_kwargs: Mapping,
        split_kwargs: Mapping,
        **runner_kwargs,
    ) -> dict:
        """Train a latent stage (the denoiser or guidance classifiers) for its step budget."""
        splitter = LatentDataSplitter(latent_manager, budget, batch_size, **split_kwargs)
        plan = self._latent_training_plan_cls(module, **plan_kwargs)
        return self._run_stage(
            stage, plan, splitter, budget.epochs, max_steps=budget.steps, **runner_kwargs
        )

    def _reinitialize_if_not_finite(self, stage: str) -> None:
        """Give a stage back its initial weights if they are NaN or infinite (left by a failed
        run), since training from them cannot recover; buffers (the latent standardisation)
        are kept."""
        module = getattr(self.module, STAGE_MODULES[stage])
        if _all_finite(module):
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

    def _check_split(self, train_size, validation_size) -> tuple[float, float | None]:
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
        n_train = self._n_train(train_size)
        if n_train < 2:
            raise ValueError(
                f"Training needs at least 2 cells; {self.adata.n_obs} cells with train_size="
                f"{train_size} give {n_train}."
            )
        return train_size, validation_size

    def _n_train(self, train_size: float) -> int:
        """Training cells for ``train_size``, as scvi-tools' DataSplitter counts them."""
        return math.ceil(train_size * self.adata.n_obs)

    def _without_one_cell_batches(self, split_kwargs: dict, batch_size: int) -> dict:
        """The VAE's BatchNorm cannot train on a minibatch of one cell: when the training set
        would end with one, drop that last (shuffled, so each epoch another) cell."""
        n_train = self._n_train(split_kwargs["train_size"])
        if "drop_last" in split_kwargs or n_train % batch_size != 1:
            return split_kwargs
        return {**split_kwargs, "drop_last": True}

    @property
    def _all_stages(self) -> list[str]:
        """This model's training stages, in the order they run."""
        if self.condition_keys and self.guidance == "classifier":
            return list(STAGES)
        return [s for s in STAGES if s != "classifier"]

    def _untrained_stages(self) -> list[str]:
        return [s for s in self._all_stages if s not in self.trained_stages_]

    def _stages_to_train(self, stages) -> list[str]:
        """Validated ``stages`` of :meth:`train`, in running order."""
        valid = self._all_stages
        if stages is None:
            return [s for s in valid if not (s == "vae" and self.pretrained_autoencoder_)]
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
        if "vae" not in ordered and "vae" not in self.trained_stages_:
            raise ValueError(
                f"The latent stages {ordered} need a trained VAE; train it first: "
                "`model.train()` or `model.train(stages=['vae', ...])`."
            )
        stale = [s for s in self.trained_stages_ if s != "vae" and s not in ordered]
        if "vae" in ordered and stale:
            warnings.warn(
                f"Retraining the VAE changes the latent space: the stages {stale} must be "
                f"retrained before generating (`model.train(stages={stale})`).",
                UserWarning,
                stacklevel=3,
            )
        return ordered

    def _history_without(self, stages: Sequence[str]) -> dict:
        """The training history, less the curves of ``stages`` (about to be retrained)."""
        if "vae" in stages:
            return {}
        auxiliary = tuple(f"classifier_{key}_" for key in self._auxiliary_guidance)
        return {
            key: value
            for key, value in (self.history_ or {}).items()
            if not any(key.startswith(f"{s}_") for s in stages) or key.startswith(auxiliary)
        }

    def _latent_training_data(self, standardize_anew: bool) -> AnnDataManager:
        """Standardised latents and conditions of the training cells, registered for training.

        With ``standardize_anew=False`` the standardisation is kept, so retraining one latent
        stage keeps the latent space the other stage was trained in.
        """
        latents = torch.as_tensor(
            self.get_latent_representation(batch_size=self._encoding_batch_size)
        )
        diffusion = self.module.diffusion
        if standardize_anew:
            diffusion.set_standardization(latents.to(diffusion.latent_loc))
        standardized = diffusion.standardize(latents.to(self.device)).cpu().numpy()
        keys = self.condition_keys
        return self._latent_data_manager(standardized, self._training_conditions(keys))

    def _train_auxiliary_classifier(
        self, key: str, categories: pd.Index, progress_bar: bool = True
    ) -> ConditionClassifiersModule:
        """Guidance classifier for an obs column that was not registered, trained on demand."""
        logger.warning(
            f"{key!r} is not a registered condition; training a guidance classifier for it now. "
            f"Register it with `setup_anndata(..., condition_keys=[{key!r}])` to train it with "
            "the model and save it."
        )
        guidance = self.module.guidance
        module = ConditionClassifiersModule(
            self.module.n_latent,
            [len(categories)],
            [condition_registry_key(key)],
            horizon=guidance.horizon,
            n_timesteps=guidance.schedule.n_timesteps,
        )
        module.schedule = guidance.schedule
        labels = pd.Categorical(self.adata.obs[key], categories=categories)
        keep = np.flatnonzero(~pd.isna(labels))
        latents = torch.as_tensor(
            self.get_latent_representation(indices=keep, batch_size=self._encoding_batch_size)
        )
        standardized = self.module.diffusion.standardize(latents.to(self.device)).cpu().numpy()
        obs = pd.DataFrame({key: labels[keep]}, index=self.adata.obs_names[keep])
        manager = self._latent_data_manager(standardized, obs)
        budget = latent_step_budget(
            None, None, steps_per_pass(len(keep), 256), None, *LATENT_DEFAULTS["classifier"]
        )
        history, trained_module = self.history_, self.module
        try:
            # the runner trains `model.module`'s device placement; swap the classifier in
            self.module = module
            stage_history = self._run_latent_stage(
                f"classifier_{key}",
                module,
                manager,
                budget,
                256,
                LATENT_PLAN_DEFAULTS["classifier"],
                {},
                progress_bar=progress_bar,
            )
        finally:
            self.module = trained_module
            self.is_trained_ = True
            self.history_ = {**(history or {})}
        self.history_.update(stage_history)
        module.to(self.device).eval()
        return module

    # -------------------------------------------------------------- generation

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

    def _reference(self) -> pd.DataFrame:
        """Library size, batch and registered conditions of every training cell."""
        if self._reference_table is None:
            counts = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
            library = row_sums(counts)
            batch = np.asarray(
                self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)
            ).ravel()
            table = self._training_conditions(self.condition_keys)
            table["_library"] = np.maximum(library, 1.0)
            table["_batch"] = batch.astype(np.int64)
            self._reference_table = table.reset_index(drop=True)
        return self._reference_table

    def _guidance_scales(
        self, guidance_scale, space: ConditionSpace, keys: Sequence[str]
    ) -> dict[str, float]:
        def check(name, value):
            if (
                isinstance(value, bool)
                or not isinstance(value, Real)
                or not np.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"Guidance scale for {name!r} must be a non-negative finite number, "
                    f"got {value!r}."
                )
            return float(value)

        defaults = {k: self._default_guidance_scale(k) for k in keys}
        if guidance_scale is None:
            return defaults
        if isinstance(guidance_scale, Mapping):
            for name, value in guidance_scale.items():
                defaults[space.resolve_key(name)] = check(name, value)
            return defaults
        return {k: check("all conditions", guidance_scale) for k in keys}

    def _default_guidance_scale(self, key: str) -> float:
        """Default scale of a condition: its guidance mode's (on-demand ones use a classifier)."""
        if key in self.condition_keys:
            return DEFAULT_GUIDANCE_SCALES[self.guidance]
        return DEFAULT_GUIDANCE_SCALES["classifier"]

    @torch.inference_mode(False)
    def generate(
        self,
        n: int | None = None,
        cell_type: str | None = None,
        tissue: str | None = None,
        conditions: Mapping[str, object] | pd.DataFrame | None = None,
        *,
        interpolate: Mapping[str, tuple[str, str]] | None = None,
        n_points: int = 11,
        start_time: int = 600,
        guidance_scale: float | Mapping[str, float] | None = None,
        sampler: Literal["dpmpp_2m", "ddim", "ddpm"] | None = None,
        n_steps: int | None = None,
        output: Literal["counts", "normalized"] = "counts",
        batch_size: int = 2048,
        seed: int | None = None,
        progress_bar: bool = True,
        out: str | os.PathLike | None = None,
    ) -> ad.AnnData:
        """Generate synthetic cells.

        Conditions not requested are drawn, cell by cell, from training cells that share the
        requested ones (so ``generate(n)`` follows the training composition), and every
        registered condition guides the sampler. Each generated cell takes its library size
        (and batch) from such a training cell, so counts come at the observed depth.

        Parameters
        ----------
        n
            Number of cells. Default: one per row of a ``conditions`` DataFrame, otherwise 1000.
        cell_type
            Cell type to generate (needs ``cell_type_key`` at setup).
        tissue
            Tissue to generate (needs ``tissue_key`` at setup).
        conditions
            A dict from obs column (or role name ``cell_type``/``tissue``) to a value or one
            value per cell, or a DataFrame with one row per cell to generate (row order kept).
            Obs columns of the training AnnData that were not registered are accepted too: a
            guidance classifier is then trained for them on demand (with a warning).
        interpolate
            ``{condition: (source, target)}``: Gradient Interpolation. Real training cells of
            ``source`` are encoded, noised to ``start_time`` and denoised with guidance weight
            ``1 - w`` toward ``source`` and ``w`` toward ``target``, for ``w`` on ``n_points``
            values from 0 to 1. ``obs['interpolation_weight']`` holds ``w``.
        n_points
            Number of interpolation weights.
        start_time
            Timestep to which the source cells are noised for interpolation.
        guidance_scale
            Guidance scale: one number for all conditions, or a dict per condition (unlisted
            ones keep the default). 0 disables guidance. Default: 1.5 with classifier-free
            guidance, where 1 is the plain conditional model and larger values sharpen the
            conditions; 4 with classifier guidance.
        sampler
            ``"dpmpp_2m"`` (DPM-Solver++(2M): deterministic, second order, timesteps evenly
            spaced in log-SNR), ``"ddim"`` (deterministic, first order) or ``"ddpm"``
            (ancestral; with ``n_steps=1000`` the paper's sampler). Default: ``"dpmpp_2m"``,
            or ``"ddpm"`` with ``autoencoder="mlp"``.
        n_steps
            Number of sampler steps (at most ``T``). Default: 20 for ``"dpmpp_2m"`` (as
            faithful as the 1000-step DDPM on held-out cells, about 30 times faster; see
            ``docs/scaling.md``), 50 for ``"ddim"``, ``T`` for ``"ddpm"``.
        output
            ``"counts"``: counts drawn from the decoder's likelihood (sparse).
            ``"normalized"``: expected expression normalised to 10,000 counts per cell (dense,
            not log-transformed).
        batch_size
            Cells sampled at once.
        seed
            Random seed; the same seed gives the same cells, also after save/load.
        progress_bar
            Show a progress bar.
        out
            Path of an ``.h5ad`` file to stream the cells to: each batch of ``batch_size``
            cells is written as soon as it is generated, so memory holds one batch, not the
            whole matrix. The file appears only once complete.

        Returns
        -------
        anndata.AnnData
            Integer counts (sparse CSR) with the training ``var_names``; ``obs`` with one
            categorical column per registered condition (the generated categories, in the
            training order) and the batch; the generated latents in ``obsm['X_latent']``;
            the generation parameters in ``uns['scdiffusion']``. With ``out``, the AnnData
            is backed by the file (``X`` stays on disk; load it with ``.to_memory()``).

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
        >>> model = ScDiffusion(adata)
        >>> model.train()  # doctest: +SKIP
        >>> monocytes = model.generate(n=500, cell_type="CD14+ Monocyte", seed=0)  # doctest: +SKIP

        Several conditions at once, one cell per row of a table, or in the training cells'
        composition:

        >>> b_cells = {"cell_type": "CD19+ B", "phase": "S"}
        >>> model.generate(n=200, conditions=b_cells)  # doctest: +SKIP
        >>> model.generate(conditions=adata.obs[["cell_type"]])  # doctest: +SKIP
        >>> model.generate(n=1000)  # doctest: +SKIP

        A trajectory between two cell types, and a million cells streamed to disk:

        >>> model.generate(
        ...     n=550, interpolate={"cell_type": ("CD34+", "CD14+ Monocyte")}, n_points=11
        ... )  # doctest: +SKIP
        >>> model.generate(n=1_000_000, out="synthetic.h5ad")  # doctest: +SKIP
        """
        self._check_trained()
        if sampler is None:
            sampler = DEFAULT_SAMPLER[self.module.autoencoder_kind]
        sampler = one_of("sampler", sampler, SAMPLERS)
        n_timesteps = self.module.schedule.n_timesteps
        if n_steps is None:
            n_steps = DEFAULT_STEPS.get(sampler, n_timesteps)
        output = one_of("output", output, OUTPUTS)
        n_steps = positive_int("n_steps", n_steps, allow_none=False)
        if n_steps > n_timesteps:
            raise ValueError(f"`n_steps` must be at most T={n_timesteps}, got {n_steps}.")
        batch_size = positive_int("batch_size", batch_size, allow_none=False)
        seed = check_seed(seed)
        progress_bar = check_bool("progress_bar", progress_bar)
        out = validate_out(out)
        n_points, start_time = self._check_interpolation_arguments(n_points, start_time)

        space = self._condition_space()
        requested = parse_requests(
            space, n, {"cell_type": cell_type, "tissue": tissue}, conditions
        )
        interpolation = self._parse_interpolation(
            interpolate, space, requested, n_points, start_time
        )
        rng = np.random.default_rng(seed)
        reference = self._reference()
        registered = self.condition_keys
        extra_keys = [k for k in requested.columns if k not in registered]
        training = reference[registered].copy()
        for key in extra_keys:
            training[key] = pd.Categorical(
                self.adata.obs[key].to_numpy(), categories=space.extra[key]
            )

        x_start = None
        if interpolation is None:
            hint = (
                " Classifier-free guidance composes conditions and generates unseen "
                "combinations more faithfully: ScDiffusion(adata, guidance='classifier_free')."
                if self.guidance == "classifier"
                else ""
            )
            ref_idx = draw_reference_cells(requested, training, rng, unseen_hint=hint)
            timesteps = self.module.schedule.sampling_timesteps(
                n_steps, spacing=SAMPLER_SPACING[sampler]
            )
            weights_w = None
        else:
            key, source, target, grid, start = interpolation
            n_cells = requested.shape[0]
            weights_w = grid[(np.arange(n_cells) * len(grid)) // n_cells]
            fixed = requested
            start_idx = draw_reference_cells(
                fixed.assign(
                    **{
                        key: pd.Categorical(
                            [source] * n_cells, categories=space.categories_of(key)
                        )
                    }
                ),
                training,
                rng,
            )
            target_idx = draw_reference_cells(
                fixed.assign(
                    **{
                        key: pd.Categorical(
                            [target] * n_cells, categories=space.categories_of(key)
                        )
                    }
                ),
                training,
                rng,
            )
            ref_idx = np.where(rng.random(n_cells) < weights_w, target_idx, start_idx)
            unique, inverse = np.unique(start_idx, return_inverse=True)
            latents = self.get_latent_representation(
                indices=unique, batch_size=self._encoding_batch_size
            )[inverse]
            x_start = self.module.diffusion.standardize(torch.as_tensor(latents).to(self.device))
            timesteps = self.module.schedule.sampling_timesteps(
                n_steps, start_time=start, spacing=SAMPLER_SPACING[sampler]
            )

        # complete assignment: requested values, the rest from the reference cells
        assignment = pd.DataFrame(index=pd.RangeIndex(requested.shape[0]))
        for key in [*registered, *extra_keys]:
            if key in requested.columns:
                assignment[key] = requested[key].to_numpy()
            else:
                assignment[key] = training[key].to_numpy()[ref_idx]
            assignment[key] = pd.Categorical(assignment[key], categories=space.categories_of(key))

        keys_guided = [*registered, *extra_keys]
        weights = {}
        for key in keys_guided:
            codes = assignment[key].cat.codes.to_numpy()
            matrix = np.zeros((len(codes), len(space.categories_of(key))), dtype=np.float32)
            if interpolation is not None and key == interpolation[0]:
                categories = space.categories_of(key)
                matrix[:, categories.get_loc(interpolation[1])] = 1.0 - weights_w
                matrix[:, categories.get_loc(interpolation[2])] += weights_w
            else:
                matrix[np.arange(len(codes)), codes] = 1.0
            weights[key] = matrix
        scales = self._guidance_scales(guidance_scale, space, keys_guided)

        # registered conditions guide through the denoiser (classifier-free) or their trained
        # classifiers; unregistered ones always through a classifier trained on demand
        free_keys = registered if self.guidance == "classifier_free" else []
        classifier_keys = [k for k in keys_guided if k not in free_keys]
        classifiers = []
        for key in classifier_keys:
            if key in registered:
                classifiers.append(self.module.guidance.classifiers[registered.index(key)])
                continue
            if key not in self._auxiliary_guidance:
                module = self._train_auxiliary_classifier(key, space.extra[key], progress_bar)
                self._auxiliary_guidance[key] = (module, space.extra[key])
            classifiers.append(self._auxiliary_guidance[key][0].classifiers[0])

        obs = assignment.copy()
        batch_key = self._setup_args.get("batch_key")
        if batch_key is not None:
            batch_categories = self.adata_manager.get_state_registry(
                REGISTRY_KEYS.BATCH_KEY
            ).categorical_mapping
            obs[batch_key] = pd.Categorical.from_codes(
                reference["_batch"].to_numpy()[ref_idx], categories=batch_categories
            )
        params = {
            "guidance": self.guidance,
            "sampler": sampler,
            "n_steps": len(timesteps),
            "guidance_scale": {k: float(v) for k, v in scales.items()},
            "output": output,
            "library_size": "drawn from training cells with the same conditions",
        }
        if seed is not None:
            params["seed"] = int(seed)
        if interpolation is not None:
            key, source, target, grid, start = interpolation
            obs[key] = pd.Categorical([None] * obs.shape[0], categories=space.categories_of(key))
            obs[INTERPOLATION_WEIGHT_KEY] = weights_w.astype(np.float64)
            obs["interpolation_source"] = pd.Categorical([source] * obs.shape[0])
            obs["interpolation_target"] = pd.Categorical([target] * obs.shape[0])
            params["interpolation"] = {
                "condition": key,
                "source": str(source),
                "target": str(target),
                "n_points": len(grid),
                "start_time": int(start),
            }
        # categories without generated cells trip scanpy (rank_genes_groups needs cells in
        # every group); anndata.concat unions the categories with the real cells' anyway
        for column in obs.select_dtypes("category"):
            obs[column] = obs[column].cat.remove_unused_categories()
        obs.index = pd.Index([f"synthetic_{i}" for i in range(obs.shape[0])])
        var = pd.DataFrame(index=self.adata.var_names.copy())

        batches = self._sample_batches(
            n_cells=assignment.shape[0],
            timesteps=timesteps,
            sampler=sampler,
            classifier_terms=[
                (c, weights[k], scales[k])
                for c, k in zip(classifiers, classifier_keys, strict=True)
            ],
            free_terms=[(weights[k], scales[k]) for k in free_keys],
            library=reference["_library"].to_numpy()[ref_idx],
            batch_index=reference["_batch"].to_numpy()[ref_idx],
            output=output,
            batch_size=batch_size,
            seed=seed,
            x_start=x_start,
            progress_bar=progress_bar,
        )
        if out is not None:
            skeleton = ad.AnnData(obs=obs, var=var, uns={PARAMS_UNS_KEY: params})
            return write_h5ad_in_batches(
                out, skeleton, batches, LATENT_OBSM_KEY, self.module.n_latent
            )
        latents, blocks = zip(*batches, strict=True)
        values = sparse.vstack(blocks, format="csr") if output == "counts" else np.vstack(blocks)
        result = ad.AnnData(X=values, obs=obs, var=var)
        result.obsm[LATENT_OBSM_KEY] = np.vstack(latents)
        result.uns[PARAMS_UNS_KEY] = params
        return result

    def _parse_interpolation(self, interpolate, space, requested, n_points, start_time):
        if interpolate is None:
            return None
        if not isinstance(interpolate, Mapping) or len(interpolate) != 1:
            raise ValueError(
                "`interpolate` must be a dict with one condition, e.g. "
                "{'cell_type': ('CD34+', 'CD14+ Monocyte')}."
            )
        ((name, pair),) = interpolate.items()
        key = space.resolve_key(name)
        if key not in space.categories:
            raise ValueError(
                f"Interpolation needs a registered condition; {key!r} is not one. Registered: "
                f"{list(space.categories)}."
            )
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(
                f"`interpolate[{name!r}]` must be a (source, target) pair, got {pair!r}."
            )
        if key in requested.columns:
            raise ValueError(
                f"{key!r} is both interpolated and fixed in `conditions`; give it once."
            )
        source, target = (space.validate_values(key, [v])[0] for v in pair)
        return key, source, target, np.linspace(0.0, 1.0, n_points), start_time

    def _check_interpolation_arguments(self, n_points, start_time) -> tuple[int, int]:
        n_points = positive_int("n_points", n_points, allow_none=False)
        if n_points < 2:
            raise ValueError(f"`n_points` must be at least 2, got {n_points}.")
        if isinstance(start_time, bool) or not isinstance(start_time, Integral):
            raise TypeError(f"`start_time` must be an integer, got {start_time!r}.")
        n_timesteps = self.module.schedule.n_timesteps
        if not 0 < start_time < n_timesteps:
            raise ValueError(f"`start_time` must be in [1, {n_timesteps - 1}], got {start_time}.")
        return n_points, int(start_time)

    def _sample_batches(
        self,
        n_cells,
        timesteps,
        sampler,
        classifier_terms,
        free_terms,
        library,
        batch_index,
        output,
        batch_size,
        seed,
        x_start,
        progress_bar,
    ):
        """Run the sampler batch by batch and decode; yields each batch's latents and values.

        ``classifier_terms`` are ``(classifier, target weights, scale)`` triples for classifier
        guidance; ``free_terms`` are ``(target weights, scale)`` pairs, one per condition of a
        classifier-free denoiser.
        """
        module = self.module
        module.eval()
        for clf, _, _ in classifier_terms:
            clf.eval()
        device = self.device
        schedule = module.schedule
        diffusion = module.diffusion
        n_latent = module.n_latent
        n_batches = math.ceil(n_cells / batch_size)
        with (
            _seeded(seed, device),
            tqdm(
                total=n_batches * len(timesteps),
                desc="Generating",
                unit="step",
                disable=not progress_bar,
                leave=False,
            ) as bar,
        ):
            for start in range(0, n_cells, batch_size):
                stop = min(start + batch_size, n_cells)
                rows = slice(start, stop)
                if x_start is None:
                    x = torch.randn(stop - start, n_latent, device=device)
                else:
                    t0 = torch.full((stop - start,), timesteps[0], device=device, dtype=torch.long)
                    x = schedule.q_sample(x_start[rows], t0)
                guidance = ClassifierGuidance(
                    [clf for clf, _, _ in classifier_terms],
                    [torch.as_tensor(w[rows], device=device) for _, w, _ in classifier_terms],
                    [scale for _, _, scale in classifier_terms],
                    module.guidance.horizon,
                )
                epsilon_fn = diffusion.denoiser
                if free_terms:
                    epsilon_fn = ClassifierFreeGuidance(
                        diffusion.denoiser,
                        diffusion.denoiser.null_labels,
                        [torch.as_tensor(w[rows], device=device) for w, _ in free_terms],
                        [scale for _, scale in free_terms],
                    )
                x = run_sampler(
                    sampler,
                    epsilon_fn,
                    schedule,
                    x,
                    timesteps,
                    guidance,
                    callback=lambda: bar.update(1),
                )
                z = diffusion.unstandardize(x)
                counts, fractions = module.decode(
                    z,
                    torch.as_tensor(library[rows], dtype=torch.float32, device=device),
                    torch.as_tensor(batch_index[rows], device=device),
                )
                if output == "counts":
                    block = to_csr(sample_counts(counts))
                else:
                    block = (fractions * NORMALIZED_TARGET_SUM).cpu().numpy().astype(np.float32)
                yield z.detach().cpu().numpy().astype(np.float32), block

    # ------------------------------------------------------------------ saving

    def save(
        self,
        dir_path: str | os.PathLike,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        save_kwargs: dict | None = None,
        **anndata_write_kwargs,
    ):
        """Save the model (and optionally its AnnData) to a folder.

        The files are written to a temporary folder beside ``dir_path`` and moved into place
        only once complete, so an interrupted save never leaves a half-written model, and
        ``overwrite=True`` keeps the previous model until the new one is written. ``model.pt``
        holds only tensors and plain values: :meth:`load` reads it without running code.

        Parameters
        ----------
        dir_path
            Folder to save to (created if needed).
        prefix
            Prefix of the saved file names.
        overwrite
            Replace a model already saved in ``dir_path``; other files there are kept.
        save_anndata
            Also save the training AnnData (``adata.h5ad``), so ``load`` needs no AnnData.
        save_kwargs
            Keyword arguments for :func:`torch.save`.
        **anndata_write_kwargs
            Keyword arguments for :meth:`anndata.AnnData.write_h5ad`.

        Returns
        -------
        None
            ``dir_path`` holds ``model.pt`` (and ``adata.h5ad`` with ``save_anndata=True``).

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
        >>> model = ScDiffusion(adata)
        >>> model.train()  # doctest: +SKIP
        >>> model.save("pbmc_model/", overwrite=True, save_anndata=True)  # doctest: +SKIP
        >>> model = ScDiffusion.load("pbmc_model/")  # doctest: +SKIP
        """
        folder, prefix = self._model_folder(dir_path, prefix)
        attributes = {
            name: value for name, value in self._get_user_attributes() if name[-1] == "_"
        }
        var_names = np.asarray(self.adata.var_names.astype(str), dtype=object)

        def write(folder: Path) -> list[str]:
            written = []
            if save_anndata:
                adata_name = f"{prefix}{SAVE_KEYS.ADATA_FNAME}"
                self.adata.write_h5ad(folder / adata_name, **anndata_write_kwargs)
                written.append(adata_name)
            model_name = f"{prefix}{SAVE_KEYS.MODEL_FNAME}"
            write_model_file(
                folder / model_name,
                self.module.state_dict(),
                var_names,
                attributes,
                **(save_kwargs or {}),
            )
            # the model file last: an existing folder gets the new model only once complete
            return [*written, model_name]

        save_atomically(folder, overwrite, write)

    @staticmethod
    def _model_folder(dir_path, prefix) -> tuple[Path, str]:
        """The folder of a saved model and its file-name prefix, type-checked."""
        if not isinstance(dir_path, (str, os.PathLike)):
            raise TypeError(f"`dir_path` must be a folder path, got {type(dir_path).__name__}.")
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string or None, got {type(prefix).__name__}.")
        return Path(dir_path), prefix or ""

    @classmethod
    def load_registry(cls, dir_path: str | os.PathLike, prefix: str | None = None) -> dict:
        """Return the registry saved with a model, read without running code.

        Parameters
        ----------
        dir_path
            Folder of the saved model.
        prefix
            Prefix of the saved file names.

        Returns
        -------
        dict
            scvi-tools' registry: the setup arguments, the registered fields and their
            categories, and the model class that saved it.

        Examples
        --------
        >>> from scvi_diffusion import ScDiffusion
        >>> registry = ScDiffusion.load_registry("pbmc_model/")  # doctest: +SKIP
        >>> registry["setup_args"]["cell_type_key"]  # doctest: +SKIP
        'cell_type'
        """
        folder, prefix = cls._model_folder(dir_path, prefix)
        _, _, attr_dict = read_model_file(folder / f"{prefix}{SAVE_KEYS.MODEL_FNAME}")
        return attr_dict["registry_"]

    @classmethod
    def view_setup_args(cls, dir_path: str | os.PathLike, prefix: str | None = None) -> None:
        """Print the arguments a saved model was set up with (read without running code).

        Parameters
        ----------
        dir_path
            Folder of the saved model.
        prefix
            Prefix of the saved file names.

        Examples
        --------
        >>> from scvi_diffusion import ScDiffusion
        >>> ScDiffusion.view_setup_args("pbmc_model/")  # doctest: +SKIP
        """
        AnnDataManager.view_setup_method_args(cls.load_registry(dir_path, prefix))

    @classmethod
    @devices_dsp.dedent
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata: ad.AnnData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
    ) -> ScDiffusion:
        """Load a saved model, without running any code from the model file.

        Parameters
        ----------
        dir_path
            Folder of the saved model.
        adata
            AnnData with the training genes, in the same order, and the registered obs
            columns (it is registered like the training data). Default: the AnnData saved with
            the model (``save(..., save_anndata=True)``).
        %(param_accelerator)s
        %(param_device)s
        prefix
            Prefix of the saved file names.

        Returns
        -------
        ScDiffusion
            The model, on the chosen device, in evaluation mode.

        Raises
        ------
        FileNotFoundError
            No model in ``dir_path``.
        ValueError
            The model file is truncated or corrupted, holds pickled Python objects (which
            could run code; it is refused), was saved by another model class, or its genes
            differ from ``adata``'s.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> model = ScDiffusion.load("pbmc_model/", adata=adata)  # doctest: +SKIP
        >>> model = ScDiffusion.load("pbmc_model/", accelerator="gpu")  # doctest: +SKIP
        >>> cells = model.generate(n=100, cell_type="CD19+ B", seed=0)  # doctest: +SKIP
        """
        dir_path, prefix = cls._model_folder(dir_path, prefix)
        if adata is not None and not isinstance(adata, ad.AnnData):
            raise TypeError(f"`adata` must be an AnnData or None, got {type(adata).__name__}.")
        model_path = dir_path / f"{prefix}{SAVE_KEYS.MODEL_FNAME}"
        state_dict, var_names, attr_dict = read_model_file(model_path)
        registry = attr_dict.pop("registry_", None) or {}
        saved_by = registry.get(_MODEL_NAME_KEY)
        if saved_by != cls.__name__:
            raise ModelFileError(
                f"{str(model_path)!r} holds a {saved_by} model, not a {cls.__name__}; load it "
                f"with {saved_by}.load."
            )
        if adata is None:
            adata_path = dir_path / f"{prefix}{SAVE_KEYS.ADATA_FNAME}"
            if not adata_path.is_file():
                raise ValueError(
                    f"No AnnData was saved with the model in {str(dir_path)!r}; pass the "
                    "training AnnData: `ScDiffusion.load(path, adata)` (or save with "
                    "`save_anndata=True`)."
                )
            adata = ad.read_h5ad(adata_path)
        cls._check_genes(var_names, adata)
        _, _, torch_device = parse_device_args(
            accelerator=accelerator,
            devices=device,
            return_device="torch",
            validate_single_device=True,
        )
        cls.setup_anndata(adata, source_registry=registry, **registry[_SETUP_ARGS_KEY])
        init_params = attr_dict.pop("init_params_")
        kwargs = {k: v for group in init_params["kwargs"].values() for k, v in group.items()}
        model = cls(adata, **init_params["non_kwargs"], **kwargs)
        for name, value in attr_dict.items():
            setattr(model, name, value)
        model.module.on_load(model)
        try:
            model.module.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ModelFileError(
                f"The weights in {str(model_path)!r} do not fit the model its parameters "
                f"describe ({str(error).splitlines()[0]}); the file may come from another "
                "version of scvi-diffusion."
            ) from None
        model.to_device(torch_device)
        model.module.eval()
        return model

    @staticmethod
    def _check_genes(var_names: np.ndarray, adata: ad.AnnData) -> None:
        given = np.asarray(adata.var_names.astype(str))
        saved = np.asarray(var_names).astype(str)
        if np.array_equal(saved, given):
            return
        saved = pd.Index(saved)
        missing = saved.difference(given)
        extra = pd.Index(given).difference(saved)
        raise ValueError(
            f"The AnnData's genes differ from the {len(saved)} genes the model was "
            f"trained on ({len(missing)} missing, e.g. {list(missing[:5])}; {len(extra)} "
            f"unexpected, e.g. {list(extra[:5])}; or a different order). Subset and order "
            "it as `adata[:, model_var_names]`."
        )
