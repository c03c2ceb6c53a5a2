"""What a model's registration says of its conditions: columns, roles, categories, values."""

from __future__ import annotations

import pandas as pd

from .._constants import ROLE_KEYS, condition_registry_key, continuous_registry_key
from .._scvi_internals import SETUP_ARGS_KEY
from ..conditions import ValueRange, condition_keys_from_args


class RegisteredConditionsMixin:
    """The registered conditions of a model, read from its setup arguments and registry."""

    @property
    def _setup_args(self) -> dict:
        return self.registry_[SETUP_ARGS_KEY]

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
        return condition_keys_from_args(
            args.get("cell_type_key"), args.get("tissue_key"), args.get("condition_keys")
        )

    @property
    def continuous_condition_keys(self) -> list[str]:
        """Numeric obs columns the model is conditioned on as values, in registration order.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> adata.obs["dose"] = [0.0, 0.5, 1.0, 2.0] * (adata.n_obs // 4)
        >>> ScDiffusion.setup_anndata(
        ...     adata, cell_type_key="cell_type", continuous_condition_keys=["dose"]
        ... )
        >>> ScDiffusion(adata).continuous_condition_keys
        ['dose']
        """
        keys = self._setup_args.get("continuous_condition_keys")
        return [keys] if isinstance(keys, str) else list(keys or [])

    def _value_range(self, key: str) -> ValueRange:
        """Training statistics of a continuous condition."""
        state = self.adata_manager.get_state_registry(continuous_registry_key(key))
        return ValueRange(state["mean"], state["sd"], state["minimum"], state["maximum"])

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
            role: args[f"{role}_key"] for role in ROLE_KEYS if args.get(f"{role}_key") is not None
        }

    def _categories(self, key: str) -> pd.Index:
        mapping = self.adata_manager.get_state_registry(
            condition_registry_key(key)
        ).categorical_mapping
        return pd.Index(mapping)
