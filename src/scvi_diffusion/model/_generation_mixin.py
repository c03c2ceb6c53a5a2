"""Generation: ``generate`` wires the steps of the generation sub-package, in order."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Literal

import anndata as ad
import pandas as pd
import torch
from scvi import REGISTRY_KEYS
from torch import nn

from ..conditions import ConditionSpace
from ..generation import (
    GenerationPlan,
    RequestContext,
    TrainedModel,
    assemble,
    check_request,
    decode,
    plan_counterfactuals,
    plan_new_cells,
    reaching_start_time,
    sample,
)


class GenerationMixin:
    """``generate``: new cells by condition, along trajectories, as counterfactuals of real
    cells, in memory or streamed.

    Read as a diffusers pipeline: check the request, plan every cell (a
    :class:`~scvi_diffusion.generation.GenerationPlan`, including which guidance classifiers
    must be trained on demand), find the counterfactuals' start time, then run the plan batch
    by batch, decode it and assemble the AnnData (see :mod:`scvi_diffusion.generation`).
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
        # 1. check the request: every user error before anything slow
        request = check_request(
            self._request_context(),
            n=n,
            cell_type=cell_type,
            tissue=tissue,
            conditions=conditions,
            source=source,
            interpolate=interpolate,
            n_points=n_points,
            start_time=start_time,
            keep_source_counts=keep_source_counts,
            guidance_scale=guidance_scale,
            sampler=sampler,
            n_steps=n_steps,
            output=output,
            batch_size=batch_size,
            seed=seed,
            progress_bar=progress_bar,
            out=out,
            condition_values=condition_values,
        )
        trained = self._trained_model()
        # 2. plan the cells: conditions, reference cells, guidance, start latents
        plan_cells = plan_counterfactuals if request.counterfactual else plan_new_cells
        plan = plan_cells(request, trained)
        # 3. the guidance classifiers the plan needs, trained on demand
        classifiers = self._guidance_classifiers(plan, request.progress_bar)
        # 4. counterfactuals without a start time: the lowest that reaches the conditions
        if request.counterfactual and request.start_time is None:
            plan = reaching_start_time(trained, plan, classifiers)
        # 5. the denoising loop and 6. decoding, batch by batch
        batches = decode(trained, plan, sample(trained, plan, classifiers, request.progress_bar))
        # 7. the output, in memory or streamed
        return assemble(trained, plan, batches, request.out)

    def _request_context(self) -> RequestContext:
        """What checking a ``generate`` request needs to know of this model."""
        return RequestContext(
            [*self.condition_keys, *self.continuous_condition_keys],
            list(inspect.signature(self.generate).parameters),
            self.module.autoencoder_kind,
            self.module.schedule.n_timesteps,
        )

    def _trained_model(self) -> TrainedModel:
        """What the generation steps need of this trained model."""
        batch_key = self._setup_args.get("batch_key")
        record = {}
        if self._module_kwargs["autoencoder"] == "scvi":
            record["gene_likelihood"] = self._module_kwargs["gene_likelihood"]
        if self.gene_likelihood_choice_ is not None:
            record["gene_likelihood_choice"] = dict(self.gene_likelihood_choice_)
        return TrainedModel(
            module=self.module,
            device=self.device,
            guidance=self.guidance,
            condition_keys=tuple(self.condition_keys),
            continuous_keys=tuple(self.continuous_condition_keys),
            space=self._condition_space(),
            cells=self._training_cells(),
            training_obs=self.adata.obs,
            batch_key=batch_key,
            batch_categories=None if batch_key is None else self._batch_categories(),
            layer=self._setup_args.get("layer"),
            var_names=self.adata.var_names,
            trained_on_demand=frozenset(self._auxiliary_guidance),
            record=record,
        )

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

    def _batch_categories(self) -> pd.Index:
        """The training batches, in the order of their codes."""
        return pd.Index(
            self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping
        )

    def _guidance_classifiers(
        self, plan: GenerationPlan, progress_bar: bool
    ) -> dict[str, nn.Module]:
        """The guidance classifier of every condition the plan guides by one: trained with
        the model, or on demand now for the obs columns that were not registered."""
        for key, categories in plan.guidance.classifiers_to_train.items():
            if key not in self._auxiliary_guidance:
                classifier = self._train_auxiliary_classifier(key, categories, progress_bar)
                self._auxiliary_guidance[key] = (classifier, categories)
        return {
            term.key: self._guidance_classifier(term.key)
            for term in plan.guidance.classifier_terms
        }

    def _guidance_classifier(self, key: str) -> nn.Module:
        """The guidance classifier of a condition: trained with the model, or on demand."""
        if key in self.condition_keys:
            return self.module.guidance.classifiers[self.condition_keys.index(key)]
        return self._auxiliary_guidance[key][0].classifiers[0]
