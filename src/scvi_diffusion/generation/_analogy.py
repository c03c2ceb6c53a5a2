"""Cells of a combination never seen in training, by analogy with other groups.

A patient's cells under a drug that no treated cell of that patient showed the model: the
denoiser knows the patient's own combination (its control cells) and, in other patients, both
the control and the treated combination. The change is then taken from those groups, where
it was seen: each cell is denoised by the joint model of its own combination plus the mean
change the requested conditions make in the other groups (``J(own) + s * mean_g [J(g,
target) - J(g, own)]``, an analogy: the patient is to its treated self as the other patients
are to theirs). Composing the conditions one by one instead confounds the change with the
groups that happen to carry it: there, "treated" also means "another patient".

New cells of such a combination are generated the same way from its nearest seen neighbour
(the patient's control combination), with the conditions that stay sharpened as joint
guidance sharpens them, since no source cell gives them their identity
(:func:`plan_new_cell_analogy`).
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
    """``scale / n_groups of the cell`` for each group a cell uses, ``scale - 1`` for each
    sharpening pair of a new cell (the own combination, and it without one kept condition),
    0 for padding, ``(n_groups, n_cells)``."""

    def rows(self, rows: np.ndarray) -> Analogy:
        """The analogy of the cells at ``rows``, padded to the most pairs any of them uses
        (as if planned for them alone: padding pairs cost denoiser passes)."""
        coefficients = self.coefficients[:, rows]
        used = np.flatnonzero((coefficients != 0).any(axis=1))
        n_pairs = max(1, int(used[-1]) + 1) if used.size else 1
        return Analogy(
            self.cells[rows],
            self.base[rows],
            self.target[:n_pairs, rows],
            self.source[:n_pairs, rows],
            coefficients[:n_pairs],
        )


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
    """Which counterfactuals to guide by analogy, and with which groups.

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
    own_codes, target_codes = (combinations.codes(frame) for frame in (own, target))
    return _plan(own_codes, target_codes, combinations, scales, sharpen_kept=False)


def plan_new_cell_analogy(
    target: pd.DataFrame, combinations: TrainingCombinations, scales: Mapping[str, float]
) -> Analogy | None:
    """Which new cells to generate by analogy, from which seen neighbour, with which groups.

    A cell asked for a combination with fewer than :data:`JOINT_GUIDANCE_MIN_CELLS` training
    cells is generated from its nearest seen one: the requested combination with one
    condition changed, the one whose change the most groups show (then the best-covered
    one). Unlike a counterfactual, which takes its identity from its source cell, a new cell
    has only the guidance to give it the conditions that stay: each is sharpened given the
    neighbour (``(s_k - 1) * (J(own) - J(own without k))``, as joint guidance does).

    Parameters
    ----------
    target
        Each cell's requested value of every denoiser condition.
    combinations
        The training cells' combinations of the denoiser's conditions.
    scales
        Guidance scale of every condition.

    Returns
    -------
    Analogy or None
        None when no cell qualifies (every requested combination seen, or none with a seen
        neighbour whose change another group shows).
    """
    target_codes = combinations.codes(target)
    # one search per distinct combination: generate() may ask for millions of cells
    unique, inverse = np.unique(target_codes, axis=0, return_inverse=True)
    neighbours = [_seen_neighbour(tuple(row), combinations) for row in unique.tolist()]
    if all(neighbour is None for neighbour in neighbours):
        return None
    own_unique = np.array(
        [row if n is None else n for row, n in zip(unique.tolist(), neighbours, strict=True)],
        dtype=target_codes.dtype,
    )
    own_codes = own_unique[inverse.ravel()]
    return _plan(own_codes, target_codes, combinations, scales, sharpen_kept=True)


def _seen_neighbour(target: tuple, combinations: TrainingCombinations) -> tuple | None:
    """The seen combination one condition away from an unseen ``target`` whose change to it
    the most groups show (ties: the most training cells, then the first condition and value);
    None if ``target`` is seen, incomplete or has no such neighbour."""
    seen, counts = combinations.seen, combinations.counts
    if target in seen or min(target) < 0:
        return None
    best, best_rank = None, None
    for k, key in enumerate(combinations.keys):
        for value in range(len(combinations.categories[key])):
            own = (*target[:k], value, *target[k + 1 :])
            if value == target[k] or own not in seen:
                continue
            rank = (len(_groups(own, target, seen, counts)), counts[own])
            if rank[0] > 0 and (best_rank is None or rank > best_rank):
                best, best_rank = own, rank
    return best


def _plan(
    own_codes: np.ndarray,
    target_codes: np.ndarray,
    combinations: TrainingCombinations,
    scales: Mapping[str, float],
    sharpen_kept: bool,
) -> Analogy | None:
    """The analogy of cells with condition codes ``own_codes`` asked for ``target_codes``:
    each cell's (requested, own) pairs of labels and their coefficients, padded to one
    count of pairs; with ``sharpen_kept``, the unchanged conditions' sharpening terms too."""
    keys, counts, seen = combinations.keys, combinations.counts, combinations.seen
    n_cells = len(own_codes)
    changes = {
        pair: _groups(*pair, seen, counts)
        for pair in set(zip(map(tuple, own_codes), map(tuple, target_codes), strict=True))
    }
    pairs: list[list[tuple[tuple, tuple, float]]] = []
    for own, target in zip(map(tuple, own_codes), map(tuple, target_codes), strict=True):
        groups = changes[(own, target)]
        if not groups:
            pairs.append([])
            continue
        changed = [key for key, a, b in zip(keys, own, target, strict=True) if a != b]
        scale = float(np.mean([scales[key] for key in changed]))
        cell = [(to, back, scale / len(groups)) for to, back in groups]
        if sharpen_kept:
            cell += _sharpening(own, combinations, scales, changed)
        pairs.append(cell)
    cells = np.array([bool(cell) for cell in pairs])
    if not cells.any():
        return None
    n_pairs = max(len(cell) for cell in pairs)
    target_labels = np.repeat(own_codes[None], n_pairs, axis=0)
    source_labels = target_labels.copy()
    coefficients = np.zeros((n_pairs, n_cells), dtype=np.float32)
    for i, cell in enumerate(pairs):
        for j, (to, back, coefficient) in enumerate(cell):
            target_labels[j, i], source_labels[j, i] = to, back
            coefficients[j, i] = coefficient
    return Analogy(cells, own_codes, target_labels, source_labels, coefficients)


def _sharpening(
    own: tuple,
    combinations: TrainingCombinations,
    scales: Mapping[str, float],
    changed: Sequence[str],
) -> list[tuple[tuple, tuple, float]]:
    """Joint guidance's sharpening of each unchanged condition given ``own``: pairs (own,
    own with that condition dropped to the denoiser's null label) at ``scale - 1``."""
    terms = []
    for k, key in enumerate(combinations.keys):
        if key in changed or scales[key] == 1.0:
            continue
        dropped = list(own)
        dropped[k] = len(combinations.categories[key])  # the denoiser's null label
        terms.append((own, tuple(dropped), scales[key] - 1.0))
    return terms


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
