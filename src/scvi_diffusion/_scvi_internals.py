"""The private scvi-tools names this package uses, in one place.

scvi-tools does not promise these across releases: an upgrade that moves one touches this file
only. Everything else imports scvi-tools' public API directly.
"""

from __future__ import annotations

from anndata import AnnData
from scvi.data._constants import _MODEL_NAME_KEY, _SCVI_UUID_KEY, _SETUP_ARGS_KEY
from scvi.model._utils import get_max_epochs_heuristic, parse_device_args, use_distributed_sampler
from scvi.model.base import BaseModelClass
from scvi.model.base._constants import SAVE_KEYS
from scvi.utils._docstrings import devices_dsp

MODEL_NAME_KEY = _MODEL_NAME_KEY
"""Registry key of the model class that registered (and saved) an AnnData."""
SETUP_ARGS_KEY = _SETUP_ARGS_KEY
"""Registry key of the arguments ``setup_anndata`` was called with."""


def forget_transferred_registration(model: BaseModelClass, adata: AnnData) -> None:
    """Drop the registration scvi-tools kept when it transferred ``model``'s setup to
    ``adata`` (for a method called with new data), so the model holds no reference to it.

    ``BaseModelClass.deregister_manager`` looks such registrations up in the class-wide store,
    where a transfer does not put them, and raises; they live in the model's own store.
    """
    uuid = adata.uns.get(_SCVI_UUID_KEY)
    model._per_instance_manager_store.get(model.id, {}).pop(uuid, None)


__all__ = [
    "MODEL_NAME_KEY",
    "SAVE_KEYS",
    "SETUP_ARGS_KEY",
    "devices_dsp",
    "forget_transferred_registration",
    "get_max_epochs_heuristic",
    "parse_device_args",
    "use_distributed_sampler",
]
