"""The audit's table: its columns, the membership attacks it runs and what each check
concerns, the rows built from the distance checks and the membership scores (per cell and per
donor), and the table with its limits and verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._constants import AUDIT_LIMITS
from ..metrics._privacy import membership_inference

AUDIT_COLUMNS = ["value", "reference", "limit", "passed", "concerns", "n_train", "n_holdout"]
MEMBERSHIP_SCORES = {
    "denoiser": "denoiser_loss",
    "reconstruction": "reconstruction_loss",
    "encoder": "latent_distance",
}
"""The audit's membership attacks and the per-cell score each reads."""
CELLS, MODEL = "synthetic cells", "model"
"""What a check concerns: sharing the synthetic cells, or sharing the model file (which can
also generate cells, so every check concerns it)."""


def either_direction(
    train_losses: np.ndarray,
    holdout_losses: np.ndarray,
    train_groups: np.ndarray | None,
    holdout_groups: np.ndarray | None,
) -> tuple[dict, bool]:
    """The membership attack on per-cell losses in the direction that tells the sides apart.

    Which direction is better: "lower loss: training cell" (the usual one) or the reverse. A
    model can also give its training cells *higher* losses than new cells (an encoder that
    spreads its training cells wider than new ones does so for the denoiser's loss); an
    attacker who knows a few training cells learns which way, so both count.

    Parameters
    ----------
    train_losses, holdout_losses
        Per-cell scores of the training and the holdout cells.
    train_groups, holdout_groups
        Each cell's donor, to attack donors (their mean scores) instead of cells; or None.

    Returns
    -------
    tuple of dict and bool
        :func:`~scvi_diffusion.metrics.membership_inference`'s result in the better direction,
        and True where that is lower scores on training cells.
    """
    lower = membership_inference(-train_losses, -holdout_losses, train_groups, holdout_groups)
    if lower["auc"] >= 0.5:
        return lower, True
    return membership_inference(train_losses, holdout_losses, train_groups, holdout_groups), False


def audit_rows(
    distances: dict[str, float],
    members: pd.DataFrame,
    others: pd.DataFrame,
    n_cells: tuple[int, int],
    donors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, tuple], dict[str, str]]:
    """The audit's rows: the distance checks, then each membership attack.

    Each attack reads its score per cell, then (with ``donors``) per donor.

    Parameters
    ----------
    distances
        :func:`~scvi_diffusion.metrics.privacy_scores` of the synthetic cells.
    members, others
        Membership scores (one column per :data:`MEMBERSHIP_SCORES` value) of the training
        and the holdout cells.
    n_cells
        Training and holdout cells.
    donors
        Each training cell's and each holdout cell's donor, for the per-donor attacks; or None.

    Returns
    -------
    tuple of dict
        The rows for :func:`audit_table`, by check; and for each attack, whether training
        cells had the ``"lower"`` or ``"higher"`` scores.
    """
    rows = {
        "closest_record_share": (
            distances["closest_record_share"],
            distances["expected_closest_record_share"],
            distances["expected_closest_record_share"] + AUDIT_LIMITS["closest_record_share"],
            CELLS,
            *n_cells,
        ),
        "memorized_fraction": (
            distances["memorized_fraction"],
            distances["holdout_memorized_fraction"],
            distances["holdout_memorized_fraction"] + AUDIT_LIMITS["memorized_fraction"],
            CELLS,
            *n_cells,
        ),
    }
    groups = [(None, None, "")]
    if donors is not None:
        groups.append((*donors, "_by_donor"))
    directions = {}
    for name, score in MEMBERSHIP_SCORES.items():
        for train_groups, holdout_groups, suffix in groups:
            attack, lower = either_direction(
                members[score].to_numpy(), others[score].to_numpy(), train_groups, holdout_groups
            )
            directions[f"{name}{suffix}"] = "lower" if lower else "higher"
            sizes = (attack["n_train"], attack["n_holdout"])
            rows[f"{name}_membership_auc{suffix}"] = (
                attack["auc"],
                0.5,
                AUDIT_LIMITS["membership_auc"],
                MODEL,
                *sizes,
            )
            rows[f"{name}_membership_tpr_at_1pct_fpr{suffix}"] = (
                attack["tpr_at_1pct_fpr"],
                0.01,
                np.nan,
                MODEL,
                *sizes,
            )
    return rows, directions


def audit_table(rows: dict[str, tuple]) -> pd.DataFrame:
    """The audit's rows as a table, with ``passed`` and the verdicts in ``attrs``.

    Parameters
    ----------
    rows
        By check: value, reference, limit (nan: none), concerns (:data:`CELLS` or
        :data:`MODEL`), n_train and n_holdout.

    Returns
    -------
    pandas.DataFrame
        The :data:`AUDIT_COLUMNS`, one row per check; ``passed`` where the value is at most
        the limit (NA without a limit); ``attrs["verdict"]``: for each concern, ``"passed"``
        or ``"failed: "`` and the failed checks that concern it.
    """
    table = pd.DataFrame.from_dict(
        rows,
        orient="index",
        columns=["value", "reference", "limit", "concerns", "n_train", "n_holdout"],
    )
    table.index.name = "check"
    limited = table["limit"].notna()
    passed = pd.array([pd.NA] * len(table), dtype="boolean")
    passed[limited.to_numpy()] = (table["value"] <= table["limit"])[limited].to_numpy()
    table["passed"] = passed
    table = table[AUDIT_COLUMNS]
    failed = limited & ~table["passed"].fillna(True)
    concerns = {CELLS: (table["concerns"] == CELLS).to_numpy(), MODEL: np.ones(len(table), bool)}
    verdict = {}
    for concern, checks in concerns.items():
        names = table.index[failed.to_numpy() & checks]
        verdict[concern] = "passed" if names.empty else "failed: " + ", ".join(names)
    table.attrs["verdict"] = verdict
    return table


def audit_report(
    distances: dict[str, float],
    members: pd.DataFrame,
    others: pd.DataFrame,
    n_cells: tuple[int, int],
    donors: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The audit's table from the distance checks and the membership scores.

    Parameters
    ----------
    distances
        :func:`~scvi_diffusion.metrics.privacy_scores` of the synthetic cells.
    members, others
        Membership scores of the training and the holdout cells.
    n_cells
        Training and holdout cells.
    donors
        Each training cell's and each holdout cell's donor, for the per-donor attacks; or None.

    Returns
    -------
    pandas.DataFrame
        :func:`audit_table` of :func:`audit_rows`, with ``attrs["training_cells_loss"]``: for
        each attack, whether training cells had the ``"lower"`` or ``"higher"`` scores.
    """
    rows, directions = audit_rows(distances, members, others, n_cells, donors)
    table = audit_table(rows)
    table.attrs["training_cells_loss"] = directions
    return table
