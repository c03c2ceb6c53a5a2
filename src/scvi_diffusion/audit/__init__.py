"""The privacy audit's logic, on plain inputs: the holdout and stand-in cells, the per-cell
membership scores from the model's networks, and the audit's table and verdicts.

``ScDiffusion.audit`` and ``ScDiffusion.get_membership_scores`` (``model/_audit_mixin.py``)
check their arguments, gather what these functions need from the model and call them; the
distance checks they read are in :mod:`scvi_diffusion.metrics` (``metrics/_privacy.py``).
"""

from ._holdout import checked_holdout, counts_of, stand_in_cells
from ._scores import denoiser_losses, latent_distances, own_labels, reconstruction_losses
from ._table import (
    AUDIT_COLUMNS,
    CELLS,
    MEMBERSHIP_SCORES,
    MODEL,
    audit_report,
    audit_rows,
    audit_table,
    either_direction,
)

__all__ = [
    "AUDIT_COLUMNS",
    "CELLS",
    "MEMBERSHIP_SCORES",
    "MODEL",
    "audit_report",
    "audit_rows",
    "audit_table",
    "checked_holdout",
    "counts_of",
    "denoiser_losses",
    "either_direction",
    "latent_distances",
    "own_labels",
    "reconstruction_losses",
    "stand_in_cells",
]
