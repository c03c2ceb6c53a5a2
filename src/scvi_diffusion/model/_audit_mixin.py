"""The privacy audit's front on the model: ``get_membership_scores()`` and ``audit()`` check
their arguments, gather what the audit needs from the model (its registry, networks, latents
and the registration of new cells) and leave the work to :mod:`scvi_diffusion.audit`."""

from __future__ import annotations

import anndata as ad
import pandas as pd
import torch

from .._scvi_internals import forget_transferred_registration
from .._validation import check_seed, positive_int
from ..audit import (
    audit_report,
    checked_holdout,
    counts_of,
    denoiser_losses,
    latent_distances,
    own_labels,
    reconstruction_losses,
    stand_in_cells,
)
from ..metrics._privacy import privacy_scores
from ._training_cells_mixin import quiet_transfer


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
            labels = self._own_labels(own_obs)
            denoiser = denoiser_losses(self.module.diffusion, latents, labels, batch_size, seed)
            reconstruction = reconstruction_losses(
                self.module.autoencoder,
                self._make_data_loader(adata=cells, batch_size=batch_size),
                per_count=self.module.autoencoder_kind == "scvi",
                seed=seed,
                device=self.device,
            )
            return pd.DataFrame(
                {
                    "denoiser_loss": denoiser,
                    "reconstruction_loss": reconstruction,
                    "latent_distance": latent_distances(latents),
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
        holdout = checked_holdout(holdout, self.adata.var_names, self.adata.obs, donor_key)
        if synthetic is None:
            synthetic = self.generate(n=self.adata.n_obs, seed=seed, progress_bar=progress_bar)
        elif not isinstance(synthetic, ad.AnnData):
            raise TypeError(f"`synthetic` must be an AnnData, got {type(synthetic).__name__}.")
        layer = self._setup_args.get("layer")
        train_counts, holdout_counts = counts_of(self.adata, layer), counts_of(holdout, layer)
        distances = privacy_scores(
            train_counts, holdout_counts, synthetic, n_top_genes=n_top_genes, n_comps=n_comps
        )
        members = self.get_membership_scores(seed=seed)
        others = self.get_membership_scores(holdout, seed=seed)
        donors = None
        if donor_key is not None:
            donors = (self.adata.obs[donor_key].to_numpy(), holdout.obs[donor_key].to_numpy())
        n_cells = (train_counts.n_obs, holdout_counts.n_obs)
        return audit_report(distances, members, others, n_cells, donors)

    # -- what the audit reads from the model ------------------------------------------------

    def _condition_statistics(self) -> tuple[dict[str, pd.Index], dict]:
        """The training categories of each categorical condition and the training statistics
        (``ValueRange``) of each continuous one, in registration order."""
        categories = {key: self._categories(key) for key in self.condition_keys}
        value_ranges = {key: self._value_range(key) for key in self.continuous_condition_keys}
        return categories, value_ranges

    def _stand_in(self, adata: ad.AnnData) -> ad.AnnData:
        """``adata``'s counts and batches (checked), with placeholder conditions, registered
        like the training cells: only the autoencoder reads what is registered here, and
        its own conditions (unseen categories included) reach the denoiser separately."""
        categories, value_ranges = self._condition_statistics()
        stand_in = stand_in_cells(
            adata,
            self.adata.var_names,
            self.adata.obs,
            batch_key=self._setup_args.get("batch_key"),
            layer=self._setup_args.get("layer"),
            categories=categories,
            value_ranges=value_ranges,
        )
        with quiet_transfer():
            return self._validate_anndata(stand_in)

    def _own_labels(self, obs: pd.DataFrame) -> torch.Tensor | None:
        """The denoiser's labels for cells' own conditions (unknown or missing: not given)."""
        return own_labels(self.module.diffusion, obs, *self._condition_statistics())
