"""Reading a trained scvi-tools SCVI model, whose VAE becomes ScDiffusion's autoencoder."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import anndata as ad
import pandas as pd
import torch
from scvi import REGISTRY_KEYS
from scvi.module import VAE

from .._constants import DISPERSIONS, GENE_LIKELIHOODS
from .._scvi_internals import SETUP_ARGS_KEY
from .._validation import check_genes
from ._model_file import to_plain

# set by ScDiffusion itself (from its own arguments and registration)
_SET_BY_MODEL = {
    "n_input",
    "n_batch",
    "n_labels",
    "n_hidden",
    "n_latent",
    "n_layers",
    "dropout_rate",
    "gene_likelihood",
    "dispersion",
}
# would need data ScDiffusion does not register: covariates, size factors, library priors
_NEEDS_OTHER_DATA = {
    "n_continuous_cov",
    "n_cats_per_cov",
    "use_size_factor_key",
    "use_observed_lib_size",
    "library_log_means",
    "library_log_vars",
}
AUTOENCODER_OPTIONS = tuple(
    name
    for name in inspect.signature(VAE.__init__).parameters
    if name not in {"self", *_SET_BY_MODEL, *_NEEDS_OTHER_DATA}
)
"""Keyword arguments of scVI's VAE that ``ScDiffusion(autoencoder_kwargs=...)`` accepts."""

ARCHITECTURE_ARGS = (
    "n_latent",
    "n_hidden",
    "n_layers",
    "dropout_rate",
    "gene_likelihood",
    "dispersion",
)
"""ScDiffusion arguments that :meth:`ScDiffusion.from_scvi_model` takes from the scVI model."""


def _storable(value) -> bool:
    """Whether a model file can store ``value`` and load it safely (no code objects)."""
    try:
        to_plain(value)
    except TypeError:
        return False
    return True


def check_autoencoder_kwargs(autoencoder_kwargs) -> dict:
    """Valid ``autoencoder_kwargs``: known VAE options with plain values."""
    if autoencoder_kwargs is None:
        return {}
    if not isinstance(autoencoder_kwargs, dict):
        raise TypeError(
            f"`autoencoder_kwargs` must be a dict of scVI VAE options, got "
            f"{type(autoencoder_kwargs).__name__}."
        )
    unknown = sorted(set(autoencoder_kwargs) - set(AUTOENCODER_OPTIONS))
    if unknown:
        raise ValueError(
            f"`autoencoder_kwargs` has options ScDiffusion cannot pass to scVI's VAE: {unknown}; "
            f"valid options: {list(AUTOENCODER_OPTIONS)}."
        )
    not_plain = sorted(k for k, v in autoencoder_kwargs.items() if not _storable(v))
    if not_plain:
        raise ValueError(
            f"`autoencoder_kwargs` {not_plain} hold Python objects (such as functions) that a "
            "model file cannot store safely; only tensors, NumPy arrays, numbers, strings, "
            "booleans, None, and lists and dicts of them are supported."
        )
    return dict(autoencoder_kwargs)


@dataclass(frozen=True)
class PretrainedAutoencoder:
    """What ScDiffusion needs from a trained SCVI model."""

    model_kwargs: dict
    """ScDiffusion constructor arguments: the VAE's architecture and likelihood."""
    layer: str | None
    batch_key: str | None
    var_names: pd.Index
    batch_categories: pd.Index | None
    state_dict: dict[str, torch.Tensor]
    history: dict


def _unsupported(what: str) -> ValueError:
    return ValueError(
        f"This scVI model {what}, which ScDiffusion's autoencoder does not support; train an "
        "SCVI model without it, or let ScDiffusion train its own VAE (`ScDiffusion(adata)`)."
    )


def read_scvi_model(scvi_model) -> PretrainedAutoencoder:
    """Architecture, registration and weights of a trained :class:`scvi.model.SCVI`, checked
    for what ScDiffusion's autoencoder supports."""
    from scvi.model import SCVI

    if not isinstance(scvi_model, SCVI):
        raise TypeError(
            f"`scvi_model` must be a trained scvi.model.SCVI, got {type(scvi_model).__name__}."
        )
    if not scvi_model.is_trained_:
        raise ValueError("The scVI model is not trained; call `scvi_model.train()` first.")
    if scvi_model.minified_data_type is not None:
        raise _unsupported("is minified (its AnnData holds no counts)")
    setup = scvi_model.registry_[SETUP_ARGS_KEY]
    for key, what in (
        ("categorical_covariate_keys", "has categorical covariates"),
        ("continuous_covariate_keys", "has continuous covariates"),
        ("size_factor_key", "uses a size factor key"),
    ):
        if setup.get(key):
            raise _unsupported(f"{what} ({key}={setup[key]!r})")
    params = dict(scvi_model.init_params_["non_kwargs"])
    extra = dict(scvi_model.init_params_["kwargs"].get("kwargs", {}))
    if params.get("gene_likelihood") not in GENE_LIKELIHOODS:
        raise _unsupported(
            f"uses gene_likelihood={params.get('gene_likelihood')!r} (supported: "
            f"{list(GENE_LIKELIHOODS)})"
        )
    if params.get("dispersion") not in DISPERSIONS:
        raise _unsupported(
            f"uses dispersion={params.get('dispersion')!r} (supported: {list(DISPERSIONS)})"
        )
    if not params.get("use_observed_lib_size", True):
        raise _unsupported("learns a library size prior (use_observed_lib_size=False)")
    autoencoder_kwargs = {"latent_distribution": params.get("latent_distribution", "normal")}
    autoencoder_kwargs.update(extra)
    check_autoencoder_kwargs(autoencoder_kwargs)
    # from the registry, which a model keeps also without its AnnData
    fields = scvi_model.registry_["field_registries"]
    batch_key = setup.get("batch_key")
    return PretrainedAutoencoder(
        model_kwargs={
            **{name: params[name] for name in ARCHITECTURE_ARGS},
            "autoencoder_kwargs": autoencoder_kwargs,
        },
        layer=setup.get("layer"),
        batch_key=batch_key,
        var_names=pd.Index(fields[REGISTRY_KEYS.X_KEY]["state_registry"]["column_names"]),
        batch_categories=(
            None
            if batch_key is None
            else pd.Index(fields[REGISTRY_KEYS.BATCH_KEY]["state_registry"]["categorical_mapping"])
        ),
        state_dict={
            name: value.detach().cpu().clone()
            for name, value in scvi_model.module.state_dict().items()
        },
        history={
            f"vae_{name}": curve.copy() for name, curve in (scvi_model.history_ or {}).items()
        },
    )


def check_batches(adata, pretrained: PretrainedAutoencoder) -> None:
    """The batch categories of ``adata`` must be the scVI model's, in its order, as its
    decoder's batch inputs are indexed by them."""
    if pretrained.batch_key is None:
        return
    if pretrained.batch_key not in adata.obs:
        raise ValueError(
            f"The scVI model's batch key {pretrained.batch_key!r} is not a column of adata.obs."
        )
    categories = pd.Index(pd.Categorical(adata.obs[pretrained.batch_key]).categories)
    if not categories.equals(pretrained.batch_categories):
        raise ValueError(
            f"adata.obs[{pretrained.batch_key!r}] has the batches {list(categories)}; the scVI "
            f"model was trained on {list(pretrained.batch_categories)}, in this order."
        )


def model_from_scvi(
    cls, scvi_model, adata, cell_type_key, tissue_key, condition_keys, model_kwargs: dict
):
    """``cls.from_scvi_model``: a ``cls`` model whose VAE is the trained scVI model's."""
    pretrained = read_scvi_model(scvi_model)
    taken = sorted(set(model_kwargs) & {*ARCHITECTURE_ARGS, "autoencoder", "autoencoder_kwargs"})
    if taken:
        raise TypeError(
            f"{taken} come from the scVI model and cannot be given to from_scvi_model."
        )
    adata = scvi_model.adata if adata is None else adata
    if adata is None:
        raise ValueError("The scVI model has no AnnData; pass the cells to train on.")
    if not isinstance(adata, ad.AnnData):
        raise TypeError(f"`adata` must be an AnnData, got {type(adata).__name__}.")
    check_genes(pretrained.var_names.to_numpy(), adata)
    check_batches(adata, pretrained)
    try:
        registered = cls._get_most_recent_anndata_manager(adata)
    except ValueError:  # a copy of a registered AnnData: register it anew
        registered = None
    if cell_type_key is None and tissue_key is None and not condition_keys and registered:
        setup = registered._get_setup_method_args()[SETUP_ARGS_KEY]
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
