"""Names shared by the model, the module and the training stages."""

from __future__ import annotations

CONDITION_REGISTRY_PREFIX = "condition_"
"""Registry keys of condition fields are this prefix followed by the obs column name."""

ROLE_KEYS = ("cell_type", "tissue")
"""Role names accepted as aliases for the registered obs columns."""

STAGES = ("vae", "diffusion", "classifier")
"""Training stages, in order; also the prefixes of ``model.history`` keys."""

LATENT_OBSM_KEY = "X_latent"
PARAMS_UNS_KEY = "scdiffusion"
INTERPOLATION_WEIGHT_KEY = "interpolation_weight"


def condition_registry_key(obs_key: str) -> str:
    """Registry key of the categorical field that holds ``adata.obs[obs_key]``."""
    return f"{CONDITION_REGISTRY_PREFIX}{obs_key}"
