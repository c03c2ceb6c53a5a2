"""Counterfactuals toward a combination never seen in training, by analogy with other groups.

A patient's cells under a drug that no treated cell of that patient showed the model: the
denoiser knows the patient's own combination (its control cells) and, in other patients, both
the control and the treated combination. The change is then taken from those groups, where
it was seen: each cell is denoised by the joint model of its own combination plus the mean
change the requested conditions make in the other groups (``J(own) + s * mean_g [J(g,
target) - J(g, own)]``, an analogy: the patient is to its treated self as the other patients
are to theirs). Composing the conditions one by one instead confounds the change with the
groups that happen to carry it: there, "treated" also means "another patient".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._constants import ANALOGY_MAX_GROUPS, JOINT_GUIDANCE_MIN_CELLS


@dataclass(frozen=True)
class Analogy:
    """The analogy guidance of a plan's cells (see :func:`plan_analogy`).

    Labels are the denoiser's condition codes, one column per denoiser condition.
    """

    cells: np.ndarray
    """Which cells are guided by analogy, ``(n_cells,)``."""
    base: np.ndarray
    """Each cell's own combination, ``(n_cells, n_conditions)``."""
    target: np.ndarray
    """The groups' combinations with the requested values, ``(n_groups, n_cells,
    n_conditions)``."""
    source: np.ndarray
    """The same groups with the cell's own values, ``(n_groups, n_cells, n_conditions)``."""
    coefficients: np.ndarray
    """``scale / n_groups of the cell`` for each group a cell uses, 0 for padding,
    ``(n_groups, n_cells)``."""


@dataclass(frozen=True)
class TrainingCombinations:
    """How many training cells each combination of the denoiser's conditions has, as tuples
    of condition codes (the denoiser's labels)."""

    keys: tuple[str, ...]
    categories: dict[str, pd.Index]
    counts: Counter

    @classmethod
    def of(cls, training: pd.DataFrame, keys: Sequence[str]) -> TrainingCombinations:
        """The combinations of ``training`` (categorical columns ``keys``)."""
        keys = tuple(keys)
        categories = {key: training[key].cat.categories for key in keys}
        combinations = cls(keys, categories, Counter())
        combinations.counts.update(map(tuple, combinations.codes(training).tolist()))
        return combinations

    @property
    def seen(self) -> set[tuple]:
        """The combinations with at least :data:`JOINT_GUIDANCE_MIN_CELLS` training cells and
        no missing value: those the joint conditional model knows."""
        return {c for c, n in self.counts.items() if n >= JOINT_GUIDANCE_MIN_CELLS and min(c) >= 0}

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Condition codes of each row of ``frame`` (-1 where missing or unknown)."""
        return np.stack(
            [
                pd.Categorical(frame[key].astype(object), categories=self.categories[key]).codes
                for key in self.keys
            ],
            axis=1,
        ).astype(np.int64)

    def known(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` are a seen combination."""
        seen = self.seen
        return np.array([row in seen for row in map(tuple, self.codes(frame).tolist())], bool)


def plan_analogy(
    own: pd.DataFrame,
    target: pd.DataFrame,
    combinations: TrainingCombinations,
    scales: Mapping[str, float],
) -> Analogy | None:
    """Which cells to guide by analogy, and with which groups.

    A cell qualifies when its own combination of the denoiser's conditions has at least
    :data:`JOINT_GUIDANCE_MIN_CELLS` training cells and its requested one has fewer, and
    some other group shows the change: a combination of the unchanged conditions seen
    (with as many cells) with both the cell's own and the requested values of the changed
    ones. Up to :data:`ANALOGY_MAX_GROUPS` such groups are used, those with the most cells
    first. The change is scaled by the mean guidance scale of the changed conditions.

    Parameters
    ----------
    own, target
        Each cell's own and requested values of every denoiser condition.
    combinations
        The training cells' combinations of the denoiser's conditions.
    scales
        Guidance scale of every condition.

    Returns
    -------
    Analogy or None
        None when no cell qualifies.
    """
    keys, counts, seen = combinations.keys, combinations.counts, combinations.seen
    own_codes, target_codes = (combinations.codes(frame) for frame in (own, target))
    n_cells = len(own_codes)
    plans: dict[tuple, list[tuple[tuple, tuple]]] = {}
    for pair in set(zip(map(tuple, own_codes), map(tuple, target_codes), strict=True)):
        plans[pair] = _groups(*pair, seen, counts)
    used = [plans[(tuple(o), tuple(t))] for o, t in zip(own_codes, target_codes, strict=True)]
    cells = np.array([bool(groups) for groups in used])
    if not cells.any():
        return None
    n_groups = max(len(groups) for groups in used)
    target_labels = np.repeat(own_codes[None], n_groups, axis=0)
    source_labels = target_labels.copy()
    coefficients = np.zeros((n_groups, n_cells), dtype=np.float32)
    for i, groups in enumerate(used):
        if not groups:
            continue
        changed = own_codes[i] != target_codes[i]
        scale = float(np.mean([scales[key] for key, c in zip(keys, changed, strict=True) if c]))
        for j, (to, back) in enumerate(groups):
            target_labels[j, i], source_labels[j, i] = to, back
            coefficients[j, i] = scale / len(groups)
    return Analogy(cells, own_codes, target_labels, source_labels, coefficients)


def _groups(own: tuple, target: tuple, seen: set, counts: Counter) -> list[tuple[tuple, tuple]]:
    """The groups that show the change from ``own`` to ``target``: pairs of seen
    combinations (requested values, own values), the best-covered first."""
    if own == target or own not in seen or target in seen or min(own) < 0 or min(target) < 0:
        return []
    changed = [k for k, (a, b) in enumerate(zip(own, target, strict=True)) if a != b]
    pairs = []
    for combination in seen:
        if combination == own or any(combination[k] != own[k] for k in changed):
            continue
        moved = list(combination)
        for k in changed:
            moved[k] = target[k]
        moved = tuple(moved)
        if moved in seen:
            pairs.append((min(counts[combination], counts[moved]), moved, combination))
    pairs.sort(key=lambda pair: (-pair[0], pair[1]))
    return [(moved, combination) for _, moved, combination in pairs[:ANALOGY_MAX_GROUPS]]


def guided_counts(joint_cells: np.ndarray | None, analogy: Analogy | None) -> dict[str, int]:
    """How many cells each kind of classifier-free guidance steers (``uns`` records it):
    ``"joint"`` (a combination seen in training), ``"analogy"`` (an unseen one, the change
    taken from groups that show it) and ``"compositional"`` (the conditions one by one)."""
    n_cells = 0 if joint_cells is None else len(joint_cells)
    joint = np.zeros(n_cells, bool) if joint_cells is None else joint_cells.copy()
    by_analogy = np.zeros(n_cells, bool) if analogy is None else analogy.cells
    joint &= ~by_analogy
    return {
        "joint": int(joint.sum()),
        "analogy": int(by_analogy.sum()),
        "compositional": int(n_cells - joint.sum() - by_analogy.sum()),
    }
