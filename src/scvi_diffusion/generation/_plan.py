"""The generation plan: every decision of one ``generate`` call, made before any sampling.

A plan holds one row per cell to generate: its conditions (the output's ``obs``), the library
size and batch its counts are decoded at, its guidance (targets, scales, and which kind:
joint, by analogy or compositional), and where it starts (noise, a training cell noised part
way, or a real cell inverted to the start time). The planning steps (``_new_cells``,
``_counterfactuals``) build it; the later steps only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from ..diffusion import SAMPLER_SPACING
from ._analogy import Analogy
from ._request import SamplingSettings
from ._trajectories import Interpolation, ValueSweep


@dataclass(frozen=True)
class GuidanceTerm:
    """One condition's guidance: its target weights (one row per cell; for a continuous
    condition, each cell's standardised value) and scale."""

    key: str
    weights: np.ndarray
    scale: float

    def rows(self, rows: np.ndarray) -> GuidanceTerm:
        """The term for the cells at ``rows``."""
        return replace(self, weights=self.weights[rows])


@dataclass(frozen=True)
class GuidancePlan:
    """How the plan's cells are guided.

    ``denoiser_terms`` guide through a classifier-free denoiser (in the order of its label
    columns), ``classifier_terms`` through guidance classifiers, of which
    ``classifiers_to_train`` (unregistered obs columns) must be trained on demand first.
    """

    scales: dict[str, float]
    """The scale of every guided condition."""
    denoiser_terms: list[GuidanceTerm]
    classifier_terms: list[GuidanceTerm] = field(default_factory=list)
    classifiers_to_train: dict[str, pd.Index] = field(default_factory=dict)
    joint_cells: np.ndarray | None = None
    """Cells whose classifier-free guidance is joint, not compositional (see
    :class:`~scvi_diffusion.diffusion.ClassifierFreeGuidance`): those whose combination of
    conditions the denoiser was trained on; None: none of them."""
    analogy: Analogy | None = None
    """Cells of combinations never seen in training, guided by analogy with other groups
    (see :mod:`~scvi_diffusion.generation._analogy`); they take precedence over
    ``joint_cells``."""

    def rows(self, rows: np.ndarray) -> GuidancePlan:
        """The guidance of the cells at ``rows``."""
        return replace(
            self,
            denoiser_terms=[term.rows(rows) for term in self.denoiser_terms],
            classifier_terms=[term.rows(rows) for term in self.classifier_terms],
            joint_cells=None if self.joint_cells is None else self.joint_cells[rows],
            analogy=None if self.analogy is None else self.analogy.rows(rows),
        )


@dataclass(frozen=True)
class CounterfactualRecord:
    """What ``uns['scdiffusion']['counterfactual']`` says of counterfactuals, but their start
    time, which may be searched for after planning."""

    changed: list[str]
    kept: list[str]
    start: str
    """How the source cells reach the start time."""
    counts: str | None
    """Where the counts come from (None for normalised output)."""
    start_time_search: dict | None = None

    def as_dict(self, start_time: int) -> dict:
        """The record, with the start time."""
        record = {
            "changed": list(self.changed),
            "kept": list(self.kept),
            "start_time": int(start_time),
            "start": self.start,
        }
        if self.counts is not None:
            record["counts"] = self.counts
        if self.start_time_search is not None:
            record["start_time_search"] = self.start_time_search
        return record


@dataclass(frozen=True)
class GenerationPlan:
    """Everything one ``generate`` call runs, one row of ``obs`` per generated cell."""

    settings: SamplingSettings
    obs: pd.DataFrame
    """The generated cells' conditions (and batch, and interpolation weights)."""
    library: np.ndarray
    """Library size of each cell, from its reference cell (counterfactuals: its source
    cell)."""
    batch_index: np.ndarray
    """Batch code of each cell, from its reference cell (counterfactuals: its source cell)."""
    guidance: GuidancePlan
    start_time: int | None = None
    """Timestep sampling starts from (None: ``T - 1``, new cells from noise)."""
    start_latents: torch.Tensor | None = None
    """Standardised latents of the real cells that interpolation or counterfactuals start
    from."""
    inversion: GuidancePlan | None = None
    """How start latents reach the start time: None noises them (interpolation); a plan
    inverts them with DDIM under its denoiser terms, the source cells' own conditions
    (counterfactuals; none with classifier guidance, whose denoiser is unconditional)."""
    source_counts: sparse.csr_matrix | None = None
    """Counterfactuals: the source cells' counts, which the output counts are coupled to
    (see :func:`~scvi_diffusion.module._count_sampling.coupled_counts`); None draws counts
    afresh from the decoder."""
    trajectory: Interpolation | ValueSweep | None = None
    counterfactual: CounterfactualRecord | None = None

    @property
    def n_cells(self) -> int:
        """Number of cells to generate."""
        return self.obs.shape[0]

    def timesteps(self, schedule) -> list[int]:
        """The sampler's timesteps under ``schedule``, from the plan's start time down."""
        return schedule.sampling_timesteps(
            self.settings.n_steps,
            start_time=self.start_time,
            spacing=SAMPLER_SPACING[self.settings.sampler],
        )

    def rows(self, rows: np.ndarray) -> GenerationPlan:
        """The plan of the cells at ``rows`` (in that order)."""
        index = torch.as_tensor(rows)
        return replace(
            self,
            obs=self.obs.iloc[rows],
            library=self.library[rows],
            batch_index=self.batch_index[rows],
            guidance=self.guidance.rows(rows),
            start_latents=None if self.start_latents is None else self.start_latents[index],
            inversion=None if self.inversion is None else self.inversion.rows(rows),
            source_counts=None if self.source_counts is None else self.source_counts[rows],
        )
