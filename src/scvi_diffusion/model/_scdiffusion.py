"""ScDiffusion: latent diffusion with guidance on scVI's latent space.

The class holds the model's configuration and conditions; its capabilities come from mixins:
staged training (``_training_mixin``), the training cells in latent space
(``_training_cells_mixin``), generation (``_generation_mixin``), the privacy audit
(``_audit_mixin``), safe persistence (``_persistence_mixin``) and what the registration
says of the conditions (``_registered_conditions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import anndata as ad
import pandas as pd
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, VAEMixin
from scvi.utils import setup_anndata_dsp

from .._constants import (
    DEFAULT_CONDITION_DROPOUT,
    DEFAULT_GENE_LIKELIHOOD,
    condition_registry_key,
    continuous_registry_key,
)
from .._scvi_internals import SETUP_ARGS_KEY
from .._validation import validate_counts
from ..conditions import (
    ContinuousObsField,
    check_condition_columns,
    check_continuous_columns,
    checked_continuous_keys,
    checked_setup_keys,
)
from ..generation import TrainingCombinations
from ..module import ConditionClassifiersModule, ScDiffusionModule
from ._architecture import resolved_architecture
from ._audit_mixin import PrivacyAuditMixin
from ._from_scvi import model_from_scvi
from ._generation_mixin import GenerationMixin
from ._persistence_mixin import SafeSaveLoadMixin
from ._registered_conditions import RegisteredConditionsMixin
from ._training_cells_mixin import TrainingCellsMixin
from ._training_mixin import StagedTrainingMixin


class ScDiffusion(
    GenerationMixin,
    PrivacyAuditMixin,
    StagedTrainingMixin,
    TrainingCellsMixin,
    SafeSaveLoadMixin,
    RegisteredConditionsMixin,
    VAEMixin,
    BaseModelClass,
):
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
        ``max(160, 16 * n_latent)`` (160 with the default latent).
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
        Count likelihood of scVI's decoder, which generated counts are drawn from.
        ``"auto"`` (default) picks it from the data when the model is built, at a cost of
        about a second: ``"zinb"`` where, among each cell's 15 nearest cells, zeros exceed
        what Poisson sampling gives by a median of at least 0.2 of the cells (full-length
        read counts such as Smart-seq2 score about 0.5), else ``"poisson"`` (UMI counts of
        droplet and plate protocols score under 0.1). The statistic and the rule are in
        ``model.gene_likelihood_choice_`` and in ``uns["scdiffusion"]`` of generated cells.
        ``"poisson"``: all biological variation lives in the latent; counts drawn from it are
        as hard to tell from held-out real UMI cells as other real cells are, down to each
        gene's variance and zeros. ``"nb"``: gets the zeros of deep UMI data slightly closer
        (CellBench), but on shallow droplet data its per-gene dispersion takes variation the
        latent should carry and its cells are easily spotted. ``"zinb"``: for read counts
        with dropouts; its draws are scaled to keep the library size
        (``docs/benchmarks.md``, "Realism over unlike data").
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
        gene_likelihood: Literal["auto", "poisson", "nb", "zinb"] = DEFAULT_GENE_LIKELIHOOD,
        dispersion: Literal["gene", "gene-batch", "gene-cell"] = "gene",
        guidance: Literal["classifier", "classifier_free"] | None = None,
        condition_dropout: float = DEFAULT_CONDITION_DROPOUT,
        autoencoder_kwargs: dict | None = None,
    ):
        arguments = {k: v for k, v in locals().items() if k not in ("self", "adata", "__class__")}
        super().__init__(adata)
        architecture, self.gene_likelihood_choice_ = resolved_architecture(
            arguments,
            lambda: self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY),
            self.summary_stats.n_batch,
            self.continuous_condition_keys,
        )
        keys, continuous = self.condition_keys, self.continuous_condition_keys
        # kept to rebuild a stage's initial weights (see _reinitialize_if_not_finite)
        self._module_kwargs = architecture.module_kwargs(
            n_input=self.summary_stats.n_vars,
            n_batch=self.summary_stats.n_batch,
            n_classes=[len(self._categories(k)) for k in keys],
            condition_registry_keys=[condition_registry_key(k) for k in keys],
            value_registry_keys=[continuous_registry_key(k) for k in continuous],
        )
        self.module = self._module_cls(**self._module_kwargs)
        self._model_summary_string = architecture.summary(
            keys + continuous, likelihood_from_data=self.gene_likelihood_choice_ is not None
        )
        # the resolved arguments (defaults filled in) are what a saved model is rebuilt from
        self.init_params_ = self._get_init_params(architecture.as_arguments())
        self._auxiliary_guidance: dict[str, tuple[ConditionClassifiersModule, pd.Index]] = {}
        self._reference_table: pd.DataFrame | None = None
        # the training cells' combinations of conditions, counted on first use
        self._combinations: TrainingCombinations | None = None
        self.stage_seconds_: dict[str, float] = {}
        # stages whose weights are trained and current (saved with the model)
        self.trained_stages_: list[str] = []
        # the VAE came from a trained scVI model (from_scvi_model): train() leaves it as it is
        self.pretrained_autoencoder_ = False

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
        continuous_condition_keys: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        """%(summary)s.

        Counts are checked (non-negative integers, finite) before anything is registered, and
        every condition becomes a categorical field (a continuous one a numeric field). With no
        keys the model is unconditional.

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
        continuous_condition_keys
            Numeric obs columns to condition on as values (time, dose, age): the denoiser
            learns each value, and in training sees each one jittered toward its measured
            neighbours (a quarter of the gap on each side), so cells can be generated at
            values between the measured ones (and, as a guess, beyond them). Finite, not
            constant; needs classifier-free guidance.
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by scvi-tools
            when it transfers a registration to new data).

        Returns
        -------
        None
            ``adata`` is registered in place (categorical condition columns, and the
            registration's entry in ``adata.uns``); its counts are not changed.
            Continuous conditions keep their training mean, standard deviation and range in
            the registration.

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
        if continuous_condition_keys is None:
            # recorded only when given, so registrations without them stay as they were
            del setup_method_args[SETUP_ARGS_KEY]["continuous_condition_keys"]
        keys = checked_setup_keys(layer, cell_type_key, tissue_key, condition_keys, batch_key)
        continuous = checked_continuous_keys(continuous_condition_keys, keys)
        if not kwargs.get("source_registry"):
            validate_counts(adata, layer)
            check_condition_columns(adata, [*keys, *([] if batch_key is None else [batch_key])])
            check_continuous_columns(adata.obs, continuous)
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, None),
            *[CategoricalObsField(condition_registry_key(k), k) for k in keys],
            *[ContinuousObsField(continuous_registry_key(k), k) for k in continuous],
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
        return model_from_scvi(
            cls, scvi_model, adata, cell_type_key, tissue_key, condition_keys, model_kwargs
        )

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
