"""The privacy audit: do a model and its synthetic cells give away the training cells?"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from .._constants import (
    AUDIT_LIMITS,
    MEMBERSHIP_NOISE_DRAWS,
    MEMBERSHIP_TIMESTEP_SHARES,
)
from .._scvi_internals import forget_transferred_registration
from .._seeding import seeded
from .._validation import check_seed, positive_int
from ..metrics._privacy import membership_inference, privacy_scores
from ._training_cells_mixin import quiet_transfer

logger = logging.getLogger("scvi").getChild("diffusion")

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


class PrivacyAuditMixin:
    """Membership scores of cells under the trained model, and the audit that reads them
    beside the distances of synthetic cells to training and holdout cells."""

    @torch.inference_mode()
    def get_membership_scores(
        self,
        adata: ad.AnnData | None = None,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Per-cell scores of the trained model, which a membership attack reads.

        A model that fits its training cells themselves, not only their distribution, scores
        them apart from new cells of the same kind: lower losses, or latents placed
        differently; compare the two with
        :func:`~scvi_diffusion.metrics.membership_inference` (as :meth:`audit` does).

        - ``denoiser_loss``: the denoiser's noise-prediction error on the cell's latent (its
          encoding, standardised) under the cell's own conditions (categories it was not
          trained on and missing values: not given), averaged over 8 noises at each of
          timesteps ``T/20``, ``T/10`` and ``3T/20``, where memorisation shows most.
        - ``reconstruction_loss``: the autoencoder's reconstruction loss of the cell's
          counts, per count (scVI's negative log-likelihood over the library size; the
          ``"mlp"`` autoencoder's mean squared error per gene).
        - ``latent_distance``: how far the encoder places the cell from the centre of the
          training cells' latents, in their standard deviations (the norm of the standardised
          latent). An autoencoder fit to few cells spreads them wider than new cells, which it
          places nearer the centre.

        Parameters
        ----------
        adata
            Cells to score, with the training genes and the registered obs columns (the
            batch with training batches only). Default: the training cells.
        batch_size
            Cells scored at once. Default: as many as are encoded at once.
        seed
            Seed of the noises; the same seed scores a cell alike in every call.

        Returns
        -------
        pandas.DataFrame
            ``denoiser_loss``, ``reconstruction_loss`` and ``latent_distance``, one row per
            cell (its obs name).

        Raises
        ------
        ValueError
            The model is not trained, ``adata`` lacks training genes or a registered column,
            or has batches the model was not trained on.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion, metrics
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> train, holdout = metrics.stratified_split(adata, "cell_type", test_size=0.5)
        >>> ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
        >>> model = ScDiffusion(train)
        >>> model.train()  # doctest: +SKIP
        >>> members = model.get_membership_scores()  # doctest: +SKIP
        >>> others = model.get_membership_scores(holdout)  # doctest: +SKIP
        >>> metrics.membership_inference(
        ...     -members["denoiser_loss"], -others["denoiser_loss"]
        ... )  # doctest: +SKIP
        """
        self._check_trained()
        seed = check_seed(seed)
        batch_size = positive_int("batch_size", batch_size) or self._encoding_batch_size
        cells = self.adata if adata is None else self._stand_in(adata)
        try:
            latents = self._standardized_latents(adata=None if adata is None else cells)
            own_obs = (self.adata if adata is None else adata).obs
            return pd.DataFrame(
                {
                    "denoiser_loss": self._denoiser_losses(latents, own_obs, batch_size, seed),
                    "reconstruction_loss": self._reconstruction_losses(cells, batch_size, seed),
                    "latent_distance": latents.norm(dim=1).cpu().numpy().astype(np.float64),
                },
                index=own_obs.index.copy(),
            )
        finally:
            if adata is not None:
                forget_transferred_registration(self, cells)

    def audit(
        self,
        holdout: ad.AnnData,
        synthetic: ad.AnnData | None = None,
        donor_key: str | None = None,
        n_top_genes: int = 2000,
        n_comps: int = 30,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> pd.DataFrame:
        """Whether synthetic cells and the model give away the training cells.

        Compares the training cells with ``holdout``, real cells of the same kind the model
        never saw (a share of the data set aside before training), by five checks:

        - ``closest_record_share`` (:func:`~scvi_diffusion.metrics.closest_record_share`):
          the share of synthetic cells nearer a training cell than any holdout cell, in a
          PCA of the real cells. Without copying it is ``n_train / (n_train + n_holdout)``
          (the ``reference``; 0.5 for equal halves); the limit is 0.05 above it.
        - ``memorized_fraction`` (:func:`~scvi_diffusion.metrics.memorized_fraction`): the
          share of synthetic cells whose nearest training cell is under a third of the
          distance to the second nearest, against the holdout cells' own share (the
          ``reference``), with a limit 0.01 above it.
        - ``denoiser_membership_auc``, ``reconstruction_membership_auc`` and
          ``encoder_membership_auc`` (:func:`~scvi_diffusion.metrics.membership_inference` of
          the ``denoiser_loss``, ``reconstruction_loss`` and ``latent_distance`` of
          :meth:`get_membership_scores`): how well each per-cell score tells training cells
          from holdout cells (ROC-AUC; 0.5 is chance, the limit 0.6), beside the true-positive
          rate at 1% false positives (rows ``*_tpr_at_1pct_fpr``, no limit: 0.01 is chance).
          Each attack reads its score in the direction that separates the sides better, lower
          or higher on training cells (``attrs["training_cells_loss"]`` says which): a model
          whose losses are higher on its training cells gives them away as well.
          These attacks need the model itself, as anyone who receives the model file has it.

        With ``donor_key``, the membership attacks are repeated per donor (rows
        ``*_by_donor``: each donor's mean loss, training donors against holdout donors), the
        unit a per-donor data release protects; with few donors on a side the AUC moves in
        large steps, so read it with ``n_train`` and ``n_holdout``.

        Parameters
        ----------
        holdout
            Real cells the model was not trained on, with raw counts as the training cells
            have them (``X`` or the registered layer), the training genes and the registered
            obs columns (batches: training batches only). At least 4 cells.
        synthetic
            Synthetic cells to check (raw counts in ``X``, the training genes). Default: as
            many new cells as the model has training cells, in their composition
            (:meth:`generate` with ``seed``).
        donor_key
            Obs column with the donor (or sample) of each cell, in the training cells and
            ``holdout``; a donor must be on one side only.
        n_top_genes, n_comps
            Highly variable genes and principal components of the space the distances are
            measured in (:func:`~scvi_diffusion.metrics.shared_space`, fit on training and
            holdout cells together).
        seed
            Seed of the generated cells and of the membership scores' noises.
        progress_bar
            Show the progress bar of the generation.

        Returns
        -------
        pandas.DataFrame
            One row per check: ``value``, ``reference`` (its value when nothing is given
            away), ``limit`` (nan: no limit), ``passed`` (nullable boolean), ``concerns``
            (``"synthetic cells"`` for the distance checks, ``"model"`` for the membership
            attacks), ``n_train`` and ``n_holdout`` (cells, or donors).
            ``attrs["verdict"]`` says, for sharing the synthetic cells (the distance checks)
            and for sharing the model (every check: a model also generates cells),
            ``"passed"`` when each of those checks with a limit passed, else ``"failed: "``
            and the failed checks: ``{"synthetic cells": ..., "model": ...}``.
            ``attrs["training_cells_loss"]``: for each attack, whether training cells had the
            ``"lower"`` or ``"higher"`` scores (losses; for the encoder, latent distances).

        Raises
        ------
        ValueError
            The model is not trained; ``holdout`` shares cells (obs names) with the training
            cells, lacks training genes or registered columns, has unseen batches or too few
            cells; ``donor_key`` is missing from either side or a donor is on both.

        Notes
        -----
        A passed audit says that these checks found no sign of copying: synthetic cells are
        no nearer the training cells than new real cells are, and the model's losses do not
        single out its training cells. It is not a guarantee: stronger attacks exist, rare
        cell types (a donor's unique cells) can be given away by what they are rather than by
        being copied, and per-cell checks cannot promise anything for a donor with few cells.
        Only differentially private training gives a guarantee.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion, metrics
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> train, holdout = metrics.stratified_split(adata, "cell_type", test_size=0.5)
        >>> ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
        >>> model = ScDiffusion(train)
        >>> model.train()  # doctest: +SKIP
        >>> report = model.audit(holdout)  # doctest: +SKIP
        >>> report.attrs["verdict"]["synthetic cells"]  # doctest: +SKIP
        'passed'
        """
        self._check_trained()
        seed = check_seed(seed)
        holdout = self._checked_holdout(holdout, donor_key)
        if synthetic is None:
            synthetic = self.generate(n=self.adata.n_obs, seed=seed, progress_bar=progress_bar)
        elif not isinstance(synthetic, ad.AnnData):
            raise TypeError(f"`synthetic` must be an AnnData, got {type(synthetic).__name__}.")
        train_counts = self._counts_of(self.adata)
        holdout_counts = self._counts_of(holdout)
        distances = privacy_scores(
            train_counts, holdout_counts, synthetic, n_top_genes=n_top_genes, n_comps=n_comps
        )
        n_train, n_holdout = train_counts.n_obs, holdout_counts.n_obs
        rows = {
            "closest_record_share": (
                distances["closest_record_share"],
                distances["expected_closest_record_share"],
                distances["expected_closest_record_share"] + AUDIT_LIMITS["closest_record_share"],
                CELLS,
                n_train,
                n_holdout,
            ),
            "memorized_fraction": (
                distances["memorized_fraction"],
                distances["holdout_memorized_fraction"],
                distances["holdout_memorized_fraction"] + AUDIT_LIMITS["memorized_fraction"],
                CELLS,
                n_train,
                n_holdout,
            ),
        }
        members = self.get_membership_scores(seed=seed)
        others = self.get_membership_scores(holdout, seed=seed)
        groups = [(None, None, "")]
        if donor_key is not None:
            groups.append((self.adata.obs[donor_key], holdout.obs[donor_key], "_by_donor"))
        directions = {}
        for name, score in MEMBERSHIP_SCORES.items():
            for train_groups, holdout_groups, suffix in groups:
                attack, lower = _either_direction(
                    members[score].to_numpy(),
                    others[score].to_numpy(),
                    None if train_groups is None else train_groups.to_numpy(),
                    None if holdout_groups is None else holdout_groups.to_numpy(),
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
        table = audit_table(rows)
        table.attrs["training_cells_loss"] = directions
        return table

    # -- helpers ---------------------------------------------------------------------------

    def _checked_holdout(self, holdout, donor_key: str | None) -> ad.AnnData:
        """``holdout`` restricted to the training genes, after checking it can be audited."""
        if not isinstance(holdout, ad.AnnData):
            raise TypeError(f"`holdout` must be an AnnData, got {type(holdout).__name__}.")
        genes = self.adata.var_names
        missing = genes.difference(holdout.var_names)
        if len(missing):
            raise ValueError(
                f"`holdout` lacks {len(missing)} training genes (e.g. {list(missing[:3])}); "
                "give it the genes the model was trained on."
            )
        if holdout.n_obs < 4:
            raise ValueError(f"`holdout` needs at least 4 cells, got {holdout.n_obs}.")
        shared = self.adata.obs_names.intersection(holdout.obs_names)
        if len(shared):
            raise ValueError(
                f"`holdout` shares {len(shared)} cells with the training cells (e.g. "
                f"{list(shared[:3])}): holdout cells must be cells the model never saw. If "
                "they are other cells with the same names, rename them."
            )
        if donor_key is not None:
            for name, cells in (("the training cells", self.adata), ("`holdout`", holdout)):
                if donor_key not in cells.obs:
                    raise ValueError(f"`donor_key` {donor_key!r} is not a column of {name}' obs.")
            both = set(self.adata.obs[donor_key].astype(str)) & set(
                holdout.obs[donor_key].astype(str)
            )
            if both:
                raise ValueError(
                    f"Donors {sorted(both)[:5]} are in both the training cells and `holdout`; "
                    "for a donor-level audit hold out whole donors."
                )
        return holdout[:, genes] if not holdout.var_names.equals(genes) else holdout

    def _counts_of(self, cells: ad.AnnData) -> ad.AnnData:
        """The registered counts (``X`` or the layer) of ``cells`` as a bare AnnData."""
        layer = self._setup_args.get("layer")
        counts = cells.X if layer is None else cells.layers[layer]
        return ad.AnnData(
            counts,
            obs=pd.DataFrame(index=cells.obs_names.copy()),
            var=pd.DataFrame(index=cells.var_names.copy()),
        )

    def _stand_in(self, adata: ad.AnnData) -> ad.AnnData:
        """``adata``'s counts and batches (checked), with placeholder conditions, registered
        like the training cells: only the autoencoder reads what is registered here, and
        its own conditions (unseen categories included) reach the denoiser separately."""
        genes = self.adata.var_names
        missing = genes.difference(adata.var_names)
        if len(missing):
            raise ValueError(
                f"`adata` lacks {len(missing)} training genes (e.g. {list(missing[:3])})."
            )
        keys = [*self.condition_keys, *self.continuous_condition_keys]
        batch_key = self._setup_args.get("batch_key")
        absent = [k for k in [*keys, *([batch_key] if batch_key else [])] if k not in adata.obs]
        if absent:
            raise ValueError(
                f"`adata.obs` lacks the registered columns {absent}; the model reads each "
                "cell's conditions from them (missing values are allowed)."
            )
        obs = pd.DataFrame(index=adata.obs_names.copy())
        reference = self.adata.obs
        if batch_key:
            unseen = set(adata.obs[batch_key].astype(str)) - set(reference[batch_key].astype(str))
            if unseen:
                raise ValueError(
                    f"Batches {sorted(unseen)[:5]} of `adata.obs[{batch_key!r}]` were not in "
                    "training; the autoencoder can only encode cells of training batches."
                )
            obs[batch_key] = pd.Categorical(
                adata.obs[batch_key].astype(str),
                categories=reference[batch_key].astype(str).unique(),
            )
        for key in self.condition_keys:
            obs[key] = pd.Categorical([self._categories(key)[0]] * adata.n_obs)
        for key in self.continuous_condition_keys:
            obs[key] = float(self._value_range(key).mean)
        stand_in = self._counts_of(adata[:, genes])
        stand_in.obs = obs
        layer = self._setup_args.get("layer")
        if layer is not None:
            stand_in.layers[layer] = stand_in.X
        with quiet_transfer():
            return self._validate_anndata(stand_in)

    def _own_labels(self, obs: pd.DataFrame) -> torch.Tensor | None:
        """The denoiser's labels for cells' own conditions (unknown or missing: not given)."""
        diffusion = self.module.diffusion
        if not diffusion.is_conditional:
            return None
        null = diffusion.denoiser.null_labels.cpu()
        columns = []
        for i, key in enumerate(self.condition_keys):
            codes = pd.Categorical(obs[key], categories=self._categories(key)).codes
            codes = np.where(codes < 0, null[i].item(), codes)
            columns.append(torch.as_tensor(codes, dtype=null.dtype))
        for key in self.continuous_condition_keys:
            values = pd.to_numeric(obs[key], errors="coerce").to_numpy(dtype=np.float64)
            columns.append(
                torch.as_tensor(self._value_range(key).standardize(values), dtype=null.dtype)
            )
        return torch.stack(columns, dim=1)

    def _denoiser_losses(
        self, latents: torch.Tensor, obs: pd.DataFrame, batch_size: int, seed: int
    ) -> np.ndarray:
        """Each cell's denoising loss at the membership timesteps (see
        :meth:`get_membership_scores`), from its standardised latent and its own conditions."""
        diffusion = self.module.diffusion
        labels = self._own_labels(obs)
        n_timesteps = diffusion.schedule.n_timesteps
        timesteps = [round(share * n_timesteps) for share in MEMBERSHIP_TIMESTEP_SHARES]
        was_training = diffusion.training
        diffusion.eval()
        losses = []
        try:
            for start in range(0, latents.shape[0], batch_size):
                rows = slice(start, start + batch_size)
                # one generator per batch, seeded by its first cell: the same cells, batched
                # alike, get the same noises in every call
                generator = torch.Generator().manual_seed(seed + start)
                batch_labels = None if labels is None else labels[rows].to(self.device)
                losses.append(
                    diffusion.per_cell_loss(
                        latents[rows], batch_labels, timesteps, MEMBERSHIP_NOISE_DRAWS, generator
                    ).cpu()
                )
        finally:
            diffusion.train(was_training)
        return torch.cat(losses).numpy().astype(np.float64)

    def _reconstruction_losses(self, cells: ad.AnnData, batch_size: int, seed: int) -> np.ndarray:
        """Each cell's reconstruction loss per count (scVI) or per gene (MLP)."""
        autoencoder = self.module.autoencoder
        loader = self._make_data_loader(adata=cells, batch_size=batch_size)
        was_training = autoencoder.training
        autoencoder.eval()
        losses = []
        try:
            with seeded(seed, self.device):
                for tensors in loader:
                    _, _, loss = autoencoder(tensors, compute_loss=True)
                    per_cell = loss.reconstruction_loss["reconstruction_loss"]
                    if self.module.autoencoder_kind == "scvi":
                        library = tensors[REGISTRY_KEYS.X_KEY].sum(dim=1).clamp_min(1.0)
                        per_cell = per_cell / library.to(per_cell)
                    losses.append(per_cell.detach().cpu())
        finally:
            autoencoder.train(was_training)
        return torch.cat(losses).numpy().astype(np.float64)


def _either_direction(
    train_losses: np.ndarray, holdout_losses: np.ndarray, train_groups, holdout_groups
) -> tuple[dict, bool]:
    """The membership attack on per-cell losses in the direction that tells the sides apart
    better, and whether that is "lower loss: training cell" (the usual one).

    A model can also give its training cells *higher* losses than new cells (an encoder that
    spreads its training cells wider than new ones does so for the denoiser's loss); an
    attacker who knows a few training cells learns which way, so both count.
    """
    lower = membership_inference(-train_losses, -holdout_losses, train_groups, holdout_groups)
    if lower["auc"] >= 0.5:
        return lower, True
    return membership_inference(train_losses, holdout_losses, train_groups, holdout_groups), False


def audit_table(rows: dict[str, tuple]) -> pd.DataFrame:
    """The audit's rows (value, reference, limit, concerns, n_train, n_holdout) as a table,
    with ``passed`` and the verdicts in ``attrs``."""
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
