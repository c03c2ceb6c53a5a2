"""Generation: ``generate`` checks its inputs, plans the cells, then runs the plan."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import warnings
from collections.abc import Mapping
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS
from torch import nn

from .._constants import (
    COUNTERFACTUAL_START_TIMES,
    DEFAULT_GUIDANCE_SCALES,
    DEFAULT_INTERPOLATION_START_TIME,
    INTERPOLATION_WEIGHT_KEY,
    SOURCE_CELL_KEY,
    START_TIME_PROBE_CELLS,
    START_TIME_REACHED,
)
from .._validation import check_bool
from ..diffusion import SAMPLER_SPACING
from ._analogy import (
    Analogy,
    TrainingCombinations,
    guided_counts,
    plan_analogy,
    plan_new_cell_analogy,
)
from ._conditions import ConditionSpace, draw_reference_cells, parse_requests
from ._continuous import matched_on_nearest_values
from ._counterfactual import (
    check_counterfactual_arguments,
    counterfactual_record,
    counterfactual_sampler,
    inversion_terms,
    latent_progress,
    own_conditions,
    probe_request,
    probe_rows,
    source_cells,
)
from ._generation_plan import (
    GenerationPlan,
    GuidanceTerm,
    Interpolation,
    SamplingSettings,
    ValueSweep,
    check_interpolation_arguments,
    check_sampling_arguments,
    check_start_time,
    complete_assignment,
    counterfactual_names,
    draw_interpolation_cells,
    generation_token,
    guidance_scales,
    output_obs,
    parse_interpolation,
    synthetic_names,
    target_weights,
)
from ._pipeline import assemble, sample_plan
from ._streaming import validate_out


class GenerationMixin:
    """``generate``: new cells by condition, along trajectories, in memory or streamed.

    Read as a diffusers pipeline: check the inputs, build a :class:`GenerationPlan` (every
    decision, including which guidance classifiers must be trained on demand), then run it
    batch by batch and assemble the AnnData.
    """

    @torch.inference_mode(False)
    def generate(
        self,
        n: int | None = None,
        cell_type: str | None = None,
        tissue: str | None = None,
        conditions: Mapping[str, object] | pd.DataFrame | None = None,
        *,
        source: ad.AnnData | None = None,
        interpolate: Mapping[str, tuple[str, str]] | None = None,
        n_points: int = 11,
        start_time: int | None = None,
        keep_source_counts: bool = True,
        guidance_scale: float | Mapping[str, float] | None = None,
        sampler: Literal["dpmpp_2m", "ddim", "ddpm"] | None = None,
        n_steps: int | None = None,
        output: Literal["counts", "normalized"] = "counts",
        batch_size: int = 2048,
        seed: int | None = None,
        progress_bar: bool = True,
        out: str | os.PathLike | None = None,
        **condition_values: object,
    ) -> ad.AnnData:
        """Generate synthetic cells.

        Conditions not requested are drawn, cell by cell, from training cells that share the
        requested ones (so ``generate(n)`` follows the training composition), and every
        registered condition guides the sampler. Each generated cell takes its library size
        (and batch) from such a training cell, so counts come at the observed depth. With
        ``source``, the cells are counterfactuals of given real cells instead: each keeps
        everything of its source cell that was not requested.

        Parameters
        ----------
        n
            Number of cells. Default: one per row of a ``conditions`` DataFrame, otherwise 1000.
        cell_type
            Cell type to generate (needs ``cell_type_key`` at setup).
        tissue
            Tissue to generate (needs ``tissue_key`` at setup).
        conditions
            A dict from obs column (or role name ``cell_type``/``tissue``) to a value or one
            value per cell, or a DataFrame with one row per cell to generate (row order kept).
            Obs columns of the training AnnData that were not registered are accepted too: a
            guidance classifier is then trained for them on demand (with a warning).
            With ``source``: the conditions to change, one value for all source cells or one
            per source cell. A continuous condition takes numbers, measured or not (outside
            the training range with a warning); its cells take their library sizes from
            training cells at the training value nearest the requested one.
        source
            Counterfactuals: an AnnData of real cells with the training genes (training cells
            or new ones, registered or not; it is not changed). Each cell is encoded, taken
            to ``start_time`` by DDIM inversion (under its own conditions with classifier-free
            guidance; with the unconditional denoiser with classifier guidance), and denoised
            under the requested conditions: one output cell per source cell, in order, with
            ``obs['source_cell']`` naming it. Registered conditions not requested, the batch
            and the library size are kept from the source cell, so its obs needs those
            columns, with values the model knows; see also ``keep_source_counts``.
        interpolate
            ``{condition: (source, target)}``: Gradient Interpolation. Real training cells of
            ``source`` are encoded, noised to ``start_time`` and denoised with guidance weight
            ``1 - w`` toward ``source`` and ``w`` toward ``target``, for ``w`` on ``n_points``
            values from 0 to 1. ``obs['interpolation_weight']`` holds ``w``. For a
            continuous condition, ``(from, to)`` are values and the value itself is swept:
            new cells from noise at ``from + w * (to - from)``, the value in ``obs`` beside
            ``w`` (``start_time`` does not apply).
        n_points
            Number of interpolation weights.
        start_time
            Timestep (of ``T = 1000``) the real cells are taken to before they are denoised.
            Interpolation noises them to it (default 600). Counterfactuals invert them to it:
            lower keeps more of each cell's state, higher gives the new conditions more room
            (and, past the right amount, exaggerates them). Default for counterfactuals: the
            lowest of 100, 200, 300, 400, 600 and 800 at which they reach the requested
            conditions by the model's own account (their mean latent moves 80% as far as new
            cells of those conditions differ from new cells of the source cells' own ones),
            found on at most 1,000 of the source cells and recorded in
            ``uns['scdiffusion']['counterfactual']`` (``docs/benchmarks.md``, "Real
            perturbations").
        keep_source_counts
            Counterfactuals with ``output="counts"`` (ignored otherwise): each cell's counts
            are its source cell's, moved by the change the model predicts (counts thinned
            where expression falls, added where it rises), so genes that do not change keep
            their observed counts and each cell its own noise. False draws the counts afresh
            from the decoder, as for new cells.
        guidance_scale
            Guidance scale: one number for all conditions, or a dict per condition (unlisted
            ones keep the default). 0 disables guidance. Default: 1.5 with classifier-free
            guidance, where 1 is the plain conditional model and larger values sharpen the
            conditions; 4 with classifier guidance. With classifier-free guidance of several
            conditions, a combination with at least 10 training cells is guided by the joint
            conditional model (which knows how the conditions interact: a drug's effect in
            this patient), others compose the conditions one by one; counterfactuals toward
            an unseen combination take the change from the groups that show it (the same
            drug in other patients), scaled by the changed conditions' scale.
        sampler
            ``"dpmpp_2m"`` (DPM-Solver++(2M): deterministic, second order, timesteps evenly
            spaced in log-SNR), ``"ddim"`` (deterministic, first order) or ``"ddpm"``
            (ancestral; with ``n_steps=1000`` the paper's sampler). Default: ``"dpmpp_2m"``,
            or ``"ddpm"`` with ``autoencoder="mlp"``, where counterfactuals use ``"ddim"``:
            the ancestral sampler's fresh noise at every step would undo their inversion.
        n_steps
            Number of sampler steps (at most ``T``). Default: 20 for ``"dpmpp_2m"`` (as
            faithful as the 1000-step DDPM on held-out cells, about 30 times faster; see
            ``docs/scaling.md``), 50 for ``"ddim"``, ``T`` for ``"ddpm"``.
        output
            ``"counts"``: counts drawn from the decoder's likelihood (sparse); for
            counterfactuals, by default, the source cells' counts moved by the predicted
            change (``keep_source_counts``).
            ``"normalized"``: expected expression normalised to 10,000 counts per cell (dense,
            not log-transformed).
        batch_size
            Cells sampled at once.
        seed
            Random seed; the same seed gives the same cells, also after save/load (under new
            names: each call names its cells apart).
        progress_bar
            Show a progress bar.
        out
            Path of an ``.h5ad`` file to stream the cells to: each batch of ``batch_size``
            cells is written as soon as it is generated, so memory holds one batch, not the
            whole matrix. The file appears only once complete.
        **condition_values
            Any registered condition by its obs column, as ``cell_type=`` and ``tissue=``:
            ``generate(n=500, condition="panobinostat", patient_id="PW034")`` after
            ``setup_anndata(adata, condition_keys=["condition", "patient_id"])``. A value,
            or one value per cell. Columns that were not registered, and names that are not
            Python identifiers or are parameters of ``generate``, go in ``conditions``.

        Returns
        -------
        anndata.AnnData
            Integer counts (sparse CSR) with the training ``var_names``; ``obs`` with one
            categorical column per registered condition (the generated categories, in the
            training order) and the batch (for counterfactuals also ``source_cell``, the
            source cell's name); ``obs_names`` unique to this call, so outputs of several
            calls concatenate without clashes: ``synthetic-{token}-{i}`` for new cells and
            ``{source cell}-cf-{token}`` for counterfactuals, where ``token`` is 8 random hex
            digits shared by the call's cells; the generated latents in ``obsm['X_latent']``;
            the generation parameters in ``uns['scdiffusion']``. With ``out``, the AnnData
            is backed by the file (``X`` stays on disk; load it with ``.to_memory()``).

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
        >>> model = ScDiffusion(adata)
        >>> model.train()  # doctest: +SKIP
        >>> monocytes = model.generate(n=500, cell_type="CD14+ Monocyte", seed=0)  # doctest: +SKIP

        Several conditions at once, one cell per row of a table, or in the training cells'
        composition:

        >>> b_cells = {"cell_type": "CD19+ B", "phase": "S"}
        >>> model.generate(n=200, conditions=b_cells)  # doctest: +SKIP
        >>> model.generate(conditions=adata.obs[["cell_type"]])  # doctest: +SKIP
        >>> model.generate(n=1000)  # doctest: +SKIP

        A trajectory between two cell types, and a million cells streamed to disk:

        >>> model.generate(
        ...     n=550, interpolate={"cell_type": ("CD34+", "CD14+ Monocyte")}, n_points=11
        ... )  # doctest: +SKIP
        >>> model.generate(n=1_000_000, out="synthetic.h5ad")  # doctest: +SKIP

        Counterfactuals: these cells in another state (every other condition, the batch and
        the library size kept from each cell); with a second factor registered, for example
        ``generate(source=control_cells, tissue="stimulated")``:

        >>> g1_cells = adata[adata.obs["phase"] == "G1"]
        >>> model.generate(source=g1_cells, conditions={"phase": "S"}, seed=0)  # doctest: +SKIP
        """
        self._check_trained()
        n_timesteps = self.module.schedule.n_timesteps
        if source is not None and sampler is None:
            sampler = counterfactual_sampler(self.module.autoencoder_kind)
        settings = check_sampling_arguments(
            sampler, n_steps, output, batch_size, seed, self.module.autoencoder_kind, n_timesteps
        )
        progress_bar = check_bool("progress_bar", progress_bar)
        out = validate_out(out)
        roles = {
            "cell_type": cell_type,
            "tissue": tissue,
            **self._keyword_conditions(condition_values),
        }
        keep_source_counts = check_bool("keep_source_counts", keep_source_counts)
        if source is not None:
            check_counterfactual_arguments(n, interpolate, source)
            request = (source, roles, conditions, guidance_scale)
            search = None
            if start_time is None:
                start_time, search = self._reaching_start_time(settings, *request)
            plan = self._plan_counterfactual(
                settings,
                *request[:3],
                check_start_time(start_time, n_timesteps),
                *request[3:],
                keep_source_counts,
            )
            if search is not None:
                plan.params["counterfactual"]["start_time_search"] = search
        else:
            start_time_given = start_time is not None
            if start_time is None:
                start_time = DEFAULT_INTERPOLATION_START_TIME
            n_points, start_time = check_interpolation_arguments(n_points, start_time, n_timesteps)
            plan = self._plan_generation(
                settings, n, roles, conditions, interpolate, n_points, start_time, guidance_scale
            )
            sweep = plan.params.get("interpolation", {})
            if start_time_given and sweep.get("kind") == "values":
                raise ValueError(
                    "`start_time` does not apply to a sweep of the continuous condition "
                    f"{sweep['condition']!r}: its cells are generated "
                    "from noise at each value. Leave `start_time` out (it sets where Gradient "
                    "Interpolation of a categorical condition starts)."
                )
        self._train_on_demand(plan, progress_bar)
        classifiers = [self._guidance_classifier(term.key) for term in plan.classifier_terms]
        batches = self._sample_batches(plan, classifiers, progress_bar)
        return assemble(plan, self.adata.var_names, batches, out, self.module.n_latent)

    def _keyword_conditions(self, values: dict[str, object]) -> dict[str, object]:
        """Conditions given to ``generate`` as keywords: each must be a registered condition
        (a TypeError, as Python's for an unknown keyword, names the valid ones otherwise)."""
        registered = [*self.condition_keys, *self.continuous_condition_keys]
        unknown = [name for name in values if name not in registered]
        if unknown:
            names = [*inspect.signature(self.generate).parameters, *registered]
            close = difflib.get_close_matches(unknown[0], names, n=1)
            raise TypeError(
                f"generate() got an unexpected keyword argument {unknown[0]!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + ": it is neither a parameter of generate() nor a registered condition. "
                "Registered conditions, "
                f"each usable as a keyword: {registered or 'none'}. Other obs columns go in "
                f"`conditions={{{unknown[0]!r}: ...}}` (a guidance classifier is then trained "
                "for them on demand), or register them with "
                "`ScDiffusion.setup_anndata(..., condition_keys=[...])`."
            )
        return values

    def _plan_generation(
        self,
        settings: SamplingSettings,
        n,
        roles: dict,
        conditions,
        interpolate,
        n_points: int,
        start_time: int,
        guidance_scale,
    ) -> GenerationPlan:
        """The cells to generate: their conditions, reference cells, guidance and start."""
        space = self._condition_space()
        requested = parse_requests(space, n, roles, conditions)
        interpolation = parse_interpolation(interpolate, space, requested, n_points, start_time)
        sweep = None
        if isinstance(interpolation, ValueSweep):
            # a continuous sweep is new cells, each at its own value
            sweep, interpolation = interpolation, None
            requested = requested.assign(**{sweep.key: sweep.values(requested.shape[0])})
        rng = np.random.default_rng(settings.seed)
        reference = self._reference()
        registered = [*self.condition_keys, *self.continuous_condition_keys]
        keys = [*registered, *(k for k in requested.columns if k not in registered)]
        training = reference[registered].copy()
        for key in keys[len(registered) :]:
            training[key] = pd.Categorical(
                self.adata.obs[key].to_numpy(), categories=space.extra[key]
            )
        spacing = SAMPLER_SPACING[settings.sampler]
        schedule = self.module.schedule
        start_latents = None
        matched, matched_training = matched_on_nearest_values(
            requested, training, self.continuous_condition_keys, space.values
        )
        if interpolation is None:
            # past draw_reference_cells, this method, generate() and its decorator
            ref_idx = draw_reference_cells(
                matched, matched_training, rng, unseen_hint=self._unseen_hint(), stacklevel=5
            )
            timesteps = schedule.sampling_timesteps(settings.n_steps, spacing=spacing)
        else:
            ref_idx, start_idx = draw_interpolation_cells(
                interpolation, matched, matched_training, space, rng
            )
            unique, inverse = np.unique(start_idx, return_inverse=True)
            start_latents = self._standardized_latents(indices=unique)[inverse]
            timesteps = schedule.sampling_timesteps(
                settings.n_steps, start_time=interpolation.start_time, spacing=spacing
            )
        assignment = complete_assignment(requested, training, ref_idx, keys, space)
        scales, guidance = self._guidance(assignment, keys, space, interpolation, guidance_scale)
        analogy = None if interpolation is not None else self._new_cell_analogy(assignment, scales)
        obs = output_obs(
            assignment,
            self._batches_of(ref_idx),
            self._setup_args.get("batch_key"),
            interpolation,
            space,
            synthetic_names(len(ref_idx), generation_token()),
        )
        if sweep is not None:
            obs[INTERPOLATION_WEIGHT_KEY] = sweep.weights(obs.shape[0]).astype(np.float64)
        return GenerationPlan(
            settings=settings,
            obs=obs,
            params=self._generation_params(
                settings,
                len(timesteps),
                scales,
                sweep or interpolation,
                guidance["joint_cells"],
                analogy,
            ),
            timesteps=timesteps,
            library=reference["_library"].to_numpy()[ref_idx],
            batch_index=reference["_batch"].to_numpy()[ref_idx],
            start_latents=start_latents,
            analogy=analogy,
            **guidance,
        )

    def _guidance(
        self,
        assignment: pd.DataFrame,
        keys: list[str],
        space: ConditionSpace,
        interpolation: Interpolation | None,
        guidance_scale,
    ) -> tuple[dict[str, float], dict]:
        """Every condition's guidance scale, and the plan's guidance terms: registered
        conditions guide through the denoiser (classifier-free) or their trained classifiers;
        unregistered ones always through a classifier, trained on demand if not yet. Cells
        of a combination seen in training are guided by the joint conditional model
        (:meth:`_seen_combinations`)."""
        weights = target_weights(assignment, keys, space, interpolation)
        scales = guidance_scales(
            guidance_scale, space, {k: self._default_guidance_scale(k) for k in keys}
        )
        free = self._denoiser_keys
        terms = [GuidanceTerm(k, weights[k], scales[k]) for k in keys]
        return scales, {
            "denoiser_terms": sorted(
                (t for t in terms if t.key in free), key=lambda t: free.index(t.key)
            ),
            "classifier_terms": [t for t in terms if t.key not in free],
            "joint_cells": self._joint_cells(assignment, interpolation),
            "classifiers_to_train": {
                k: space.extra[k]
                for k in keys
                if k not in free
                and k not in self.condition_keys
                and k not in self._auxiliary_guidance
            },
        }

    def _joint_cells(
        self, assignment: pd.DataFrame, interpolation: Interpolation | None = None
    ) -> np.ndarray | None:
        """Cells guided by the joint conditional model: those of a seen combination of the
        categorical conditions (:meth:`_seen_combinations`), and with continuous conditions
        beside other conditions every cell the categorical ones do not place elsewhere: a
        value's effect may differ between them, which the joint model knows."""
        joint = self._seen_combinations(assignment, interpolation)
        if joint is None and self.continuous_condition_keys and len(self._denoiser_keys) > 1:
            joint = np.ones(assignment.shape[0], dtype=bool)
        return joint

    def _seen_combinations(
        self, assignment: pd.DataFrame, interpolation: Interpolation | None = None
    ) -> np.ndarray | None:
        """Cells whose combination of the denoiser's conditions has at least
        :data:`JOINT_GUIDANCE_MIN_CELLS` training cells (with interpolation, at both ends):
        the joint conditional model knows these combinations, and how their conditions
        interact; other cells compose the conditions one by one. None with fewer than two
        denoiser conditions, where both are the same."""
        combinations = self._training_combinations()
        if combinations is None:
            return None
        if interpolation is None or interpolation.key not in combinations.keys:
            return combinations.known(assignment)
        ends = [
            combinations.known(assignment.assign(**{interpolation.key: value}))
            for value in (interpolation.source, interpolation.target)
        ]
        return ends[0] & ends[1]

    def _analogy(
        self, own: pd.DataFrame, target: pd.DataFrame, scales: dict[str, float]
    ) -> Analogy | None:
        """Counterfactuals toward combinations the denoiser never saw, guided by analogy with
        the groups that show the change (:func:`plan_analogy`); None without classifier-free
        guidance of two conditions or more."""
        combinations = self._training_combinations()
        if combinations is None:
            return None
        return plan_analogy(own, target, combinations, scales)

    def _new_cell_analogy(
        self, assignment: pd.DataFrame, scales: dict[str, float]
    ) -> Analogy | None:
        """New cells of combinations the denoiser never saw, generated by analogy from their
        nearest seen combination (:func:`plan_new_cell_analogy`); None without
        classifier-free guidance of two conditions or more."""
        combinations = self._training_combinations()
        if combinations is None:
            return None
        return plan_new_cell_analogy(assignment[list(combinations.keys)], combinations, scales)

    def _training_combinations(self) -> TrainingCombinations | None:
        """The training cells' combinations of the denoiser's conditions, counted once per
        model (None with fewer than two denoiser conditions)."""
        keys = self._denoiser_conditions
        if len(keys) < 2:
            return None
        if self._combinations is None:
            self._combinations = TrainingCombinations.of(self._reference()[keys], keys)
        return self._combinations

    @property
    def _denoiser_conditions(self) -> list[str]:
        """The categorical conditions the denoiser itself takes (classifier-free guidance), in
        order."""
        return self.condition_keys if self.guidance == "classifier_free" else []

    @property
    def _denoiser_keys(self) -> list[str]:
        """Every condition the denoiser takes, in the order of its label columns: the
        categorical ones, then the continuous ones."""
        return [*self._denoiser_conditions, *self.continuous_condition_keys]

    def _plan_counterfactual(
        self,
        settings: SamplingSettings,
        source: ad.AnnData,
        roles: dict,
        conditions,
        start_time: int,
        guidance_scale,
        keep_source_counts: bool = True,
    ) -> GenerationPlan:
        """Counterfactuals of the source cells: the requested conditions changed; every other
        registered condition, the batch, the library size and (with counts output and
        ``keep_source_counts``) the counts kept from each cell, which is encoded and inverted
        before it is denoised under the new conditions."""
        space = self._condition_space()
        requested = parse_requests(space, source.n_obs, roles, conditions, per_source_cell=True)
        batch_key = self._setup_args.get("batch_key")
        layer = self._setup_args.get("layer")
        cells = source_cells(
            source,
            self.adata.var_names,
            layer,
            space,
            list(requested.columns),
            batch_key,
            None if batch_key is None else self._batch_categories(),
        )
        registered = [*self.condition_keys, *self.continuous_condition_keys]
        keys = [*registered, *(k for k in requested.columns if k not in registered)]
        assignment = pd.DataFrame(
            {k: (requested if k in requested.columns else cells.kept)[k] for k in keys}
        )
        start_latents = self._standardized_source_latents(
            cells.registrable(layer, batch_key, assignment[registered])
        )
        scales, guidance = self._guidance(assignment, keys, space, None, guidance_scale)
        names = counterfactual_names(cells.names, generation_token())
        obs = output_obs(assignment, cells.batch, batch_key, None, space, names)
        obs[SOURCE_CELL_KEY] = cells.names.astype(str).to_numpy()
        timesteps = self.module.schedule.sampling_timesteps(
            settings.n_steps, start_time=start_time, spacing=SAMPLER_SPACING[settings.sampler]
        )
        couple = keep_source_counts and settings.output == "counts"
        own = own_conditions(cells, assignment)
        analogy = self._analogy(own, assignment, scales)
        params = self._generation_params(
            settings, len(timesteps), scales, None, guidance["joint_cells"], analogy
        )
        params["library_size"] = "kept from the source cells"
        params["counterfactual"] = counterfactual_record(
            requested.columns,
            cells,
            batch_key,
            start_time,
            self.guidance,
            couple if settings.output == "counts" else None,
        )
        return GenerationPlan(
            settings=settings,
            obs=obs,
            params=params,
            timesteps=timesteps,
            library=cells.library,
            batch_index=cells.batch_codes,
            start_latents=start_latents,
            source_counts=cells.counts if couple else None,
            # classifier guidance has an unconditional denoiser: no terms, a plain inversion
            inversion_terms=inversion_terms(self._denoiser_keys, cells, assignment, space),
            inversion_joint_cells=self._joint_cells(own),
            analogy=analogy,
            **guidance,
        )

    def _train_on_demand(self, plan: GenerationPlan, progress_bar: bool) -> None:
        """Train the guidance classifiers that the plan needs and the model lacks."""
        for key, categories in plan.classifiers_to_train.items():
            if key not in self._auxiliary_guidance:
                classifier = self._train_auxiliary_classifier(key, categories, progress_bar)
                self._auxiliary_guidance[key] = (classifier, categories)

    def _reaching_start_time(
        self, settings: SamplingSettings, source: ad.AnnData, roles, conditions, guidance_scale
    ) -> tuple[int, dict]:
        """The lowest start time of :data:`COUNTERFACTUAL_START_TIMES` at which the
        counterfactuals reach the requested conditions, by the model's own account.

        On at most :data:`START_TIME_PROBE_CELLS` source cells (drawn with the seed), the
        model generates new cells for each cell's target conditions and for its own ones,
        with the same guidance (its own idea of the change), and counterfactuals at each
        start time in turn, and stops at the first whose mean latent moved from the source
        cells' at least :data:`START_TIME_REACHED` as far along the change as the new cells
        differ (:func:`latent_progress`); if none does, the one that goes furthest. With
        classifier guidance (whose denoiser knows no condition) the change is measured from
        the source cells' mean latent to the new target cells'. Deterministic under ``seed``
        (seed 0 without one). Returns the start time and what ``uns`` records of the search.
        """
        seed = 0 if settings.seed is None else settings.seed
        probe_settings = dataclasses.replace(settings, output="normalized", seed=seed)
        rows = probe_rows(source.n_obs, START_TIME_PROBE_CELLS, seed)
        probe = source if rows is None else source[rows]
        roles, conditions = (
            probe_request(value, rows, source.n_obs) for value in (roles, conditions)
        )

        with warnings.catch_warnings():
            # the final plan (all source cells) warns about the same request once
            warnings.simplefilter("ignore", UserWarning)
            plan = self._plan_counterfactual(
                probe_settings,
                probe,
                roles,
                conditions,
                COUNTERFACTUAL_START_TIMES[0],
                guidance_scale,
            )
        self._train_on_demand(plan, progress_bar=False)
        spacing = SAMPLER_SPACING[settings.sampler]

        def sampled(run: GenerationPlan, start_time: int | None) -> np.ndarray:
            """Latents of ``run``'s counterfactuals from ``start_time``; with None, of new
            cells of its conditions (from noise, with the same guidance)."""
            timesteps = self.module.schedule.sampling_timesteps(
                settings.n_steps, start_time=start_time, spacing=spacing
            )
            run = dataclasses.replace(run, timesteps=timesteps)
            if start_time is None:
                run = dataclasses.replace(run, start_latents=None, inversion_terms=None)
            classifiers = [self._guidance_classifier(t.key) for t in run.classifier_terms]
            batches = self._sample_batches(run, classifiers, progress_bar=False)
            return np.vstack([z for z, _ in batches])

        with torch.no_grad():
            origin = self.module.diffusion.unstandardize(plan.start_latents).cpu().numpy()
        target = sampled(plan, None)
        own = _own_plan(plan)
        start = origin if own is None else sampled(own, None)
        progress = {}
        for start_time in COUNTERFACTUAL_START_TIMES:
            moved = sampled(plan, start_time)
            progress[start_time] = latent_progress(origin, moved, target, start)
            if progress[start_time] >= START_TIME_REACHED:
                chosen = start_time
                break
        else:
            chosen = max(progress, key=progress.get)
        change = "the source cells'" if own is None else "new cells of their own conditions"
        return chosen, {
            "rule": (
                f"the lowest start time at which the counterfactuals' mean latent moves at least "
                f"{START_TIME_REACHED:g} as far as new cells of the requested conditions differ "
                f"from {change} ({probe.n_obs} source cells)"
            ),
            "progress": {str(k): round(float(v), 4) for k, v in progress.items()},
        }

    def _condition_space(self) -> ConditionSpace:
        """What generation can be conditioned on: the registered conditions, and the other
        categorical (or string, or boolean) obs columns, guided by classifiers on demand."""
        registered = {k: self._categories(k) for k in self.condition_keys}
        values = {k: self._value_range(k) for k in self.continuous_condition_keys}
        batch_key = self._setup_args.get("batch_key")
        extra = {}
        for column in self.adata.obs.columns:
            series = self.adata.obs[column]
            if (
                column in registered
                or column in values
                or column == batch_key
                or column.startswith("_scvi")
            ):
                continue
            if isinstance(series.dtype, pd.CategoricalDtype):
                extra[column] = pd.Index(series.cat.categories)
            elif series.dtype == object or pd.api.types.is_bool_dtype(series):
                extra[column] = pd.Index(pd.unique(series.dropna()))
        return ConditionSpace(registered, self.condition_roles, extra, values)

    def _generation_params(
        self,
        settings: SamplingSettings,
        n_steps: int,
        scales: dict,
        interpolation,
        joint_cells: np.ndarray | None = None,
        analogy: Analogy | None = None,
    ) -> dict:
        """What the output's ``uns['scdiffusion']`` records of the generation (with several
        denoiser conditions, how many cells each kind of guidance steered)."""
        params = {
            "guidance": self.guidance,
            "sampler": settings.sampler,
            "n_steps": n_steps,
            "guidance_scale": {k: float(v) for k, v in scales.items()},
            "output": settings.output,
            "library_size": "drawn from training cells with the same conditions",
        }
        if self._module_kwargs["autoencoder"] == "scvi":
            params["gene_likelihood"] = self._module_kwargs["gene_likelihood"]
        if self.gene_likelihood_choice_ is not None:
            params["gene_likelihood_choice"] = dict(self.gene_likelihood_choice_)
        if settings.seed is not None:
            params["seed"] = int(settings.seed)
        if interpolation is not None:
            params["interpolation"] = interpolation.params()
        if self.continuous_condition_keys:
            params["continuous_conditions"] = {
                k: self._value_range(k).record() for k in self.continuous_condition_keys
            }
            params["library_size"] = (
                "drawn from training cells with the same conditions and the training value "
                "nearest each requested value"
            )
        if len(self._denoiser_keys) > 1:
            params["guided"] = guided_counts(joint_cells, analogy)
        return params

    def _batch_categories(self) -> pd.Index:
        """The training batches, in the order of their codes."""
        return pd.Index(
            self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping
        )

    def _batches_of(self, reference_cells: np.ndarray) -> pd.Categorical | None:
        """The batch labels of reference cells (None without a batch key)."""
        if self._setup_args.get("batch_key") is None:
            return None
        codes = self._reference()["_batch"].to_numpy()[reference_cells]
        return pd.Categorical.from_codes(codes, categories=self._batch_categories())

    def _unseen_hint(self) -> str:
        """What the unseen-combination warning suggests, with classifier guidance."""
        if self.guidance != "classifier":
            return ""
        return (
            " Classifier-free guidance composes conditions and generates unseen "
            "combinations more faithfully: ScDiffusion(adata, guidance='classifier_free')."
        )

    def _default_guidance_scale(self, key: str) -> float:
        """Default scale of a condition: its guidance mode's (on-demand ones use a classifier)."""
        if key in self.condition_keys or key in self.continuous_condition_keys:
            return DEFAULT_GUIDANCE_SCALES[self.guidance]
        return DEFAULT_GUIDANCE_SCALES["classifier"]

    def _guidance_classifier(self, key: str) -> nn.Module:
        """The guidance classifier of a condition: trained with the model, or on demand."""
        if key in self.condition_keys:
            return self.module.guidance.classifiers[self.condition_keys.index(key)]
        return self._auxiliary_guidance[key][0].classifiers[0]

    def _sample_batches(self, plan: GenerationPlan, classifiers, progress_bar: bool):
        """Run the plan's sampling, batch by batch (see :func:`sample_plan`)."""
        return sample_plan(self.module, plan, classifiers, self.device, progress_bar)


def _own_plan(plan: GenerationPlan) -> GenerationPlan | None:
    """New cells of each counterfactual's own conditions, guided as ``plan`` guides its
    targets (the inversion's terms at the target terms' scales, joint where the own
    combination was seen); None with classifier guidance, whose inversion takes no
    condition."""
    if not plan.inversion_terms:
        return None
    scales = {term.key: term.scale for term in plan.denoiser_terms}
    terms = [dataclasses.replace(t, scale=scales[t.key]) for t in plan.inversion_terms]
    return dataclasses.replace(
        plan,
        denoiser_terms=terms,
        classifier_terms=[],
        joint_cells=plan.inversion_joint_cells,
        analogy=None,
    )
