"""All fidelity metrics at once, overall and per condition, beside the real-vs-real floor."""

from __future__ import annotations

import anndata as ad
import pandas as pd

from ._floor import _attrs, _check_inputs, _conditions, _floor_pair, _groups, _hold_out
from ._pairs import _compare
from ._space import _between, _project


def evaluate(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    condition_key: str | None = None,
    reference: ad.AnnData | None = None,
    n_top_genes: int = 2000,
    n_comps: int = 30,
    random_state: int = 0,
) -> pd.DataFrame:
    """Fidelity of synthetic cells: every metric, overall and per condition, beside its floor.

    A seeded half of the real cells (stratified by ``condition_key``) fits the
    :func:`shared_space` and the condition classifier; the other, held-out half is what the
    synthetic cells are compared with. Cells a PCA was fit on spread wider in it than new
    cells, so comparing them with projected cells would penalise even a perfect generator.

    Rows per group:

    - ``mean_spearman``, ``mean_pearson``, ``variance_spearman``, ``variance_pearson``: see
      :func:`mean_expression_correlation`, :func:`variance_correlation`;
    - ``mmd`` (:func:`mmd_rbf`, bandwidths from the held-out real cells, in ``attrs``), ``w2``
      (:func:`wasserstein2`), ``knn_auc`` and ``rf_auc`` (:func:`real_vs_synthetic_auc`) and
      ``ilisi`` (:func:`ilisi`, scaled), all on PCA coordinates;
    - ``conditional_accuracy`` (with ``condition_key``): in group ``"all"`` the macro average
      as in :func:`conditional_accuracy`, in a condition's group the fraction of its synthetic
      cells predicted as that condition;
    - the count checks of :func:`count_checks`.

    Group ``"all"`` holds all compared cells, each condition's group those of that condition on
    both sides. A metric is nan where either side has fewer than 4 cells.

    The ``"floor"`` column (:func:`floor`) holds the same metrics with real cells in place of
    the synthetic ones: ``reference`` if given, otherwise the held-out half is split in two.
    W2, the AUCs and iLISI depend on the sizes of the two sides, so compare them at equal
    sizes: a ``reference`` with as many cells as ``synthetic`` gives a matched floor.

    Parameters
    ----------
    real : anndata.AnnData
        Real cells, raw counts in ``X``; at least 8 (16 without ``reference``).
    synthetic : anndata.AnnData
        Synthetic cells, raw counts, with (at least) the real genes in any order.
    condition_key : str, optional
        Obs column of both (and of ``reference``) with the condition.
    reference : anndata.AnnData, optional
        Other real cells for the floor, e.g. a test set.
    n_top_genes, n_comps : int, default 2000 and 30
        See :func:`shared_space`.
    random_state : int, default 0
        Seed of the splits, subsampling and classifiers.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``group``, ``metric``) with float columns ``"synthetic"`` and ``"floor"``.
        ``attrs``: ``mmd_bandwidths``, ``n_real``, ``n_synthetic``, ``n_fit`` and
        ``n_held_out`` (the real cells that fit the space and that are compared),
        ``floor_source`` (``"reference"`` or ``"halves"``) and ``floor_sizes``.

    Raises
    ------
    ValueError
        Too few cells, ``synthetic`` or ``reference`` lacks genes of ``real``, or
        ``condition_key`` is not a column of their obs.

    See Also
    --------
    stratified_split : The training and held-out test cells.
    matched_sample : A ``reference`` the size and composition of the synthetic cells.
    scvi_diffusion.pl.metrics_summary : Bar chart of the headline metrics.

    Examples
    --------
    Hold out test cells and train on the rest; monocytes and B cells of the bundled PBMCs
    keep the example quick:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> adata = adata[adata.obs["cell_type"].isin(["CD14+ Monocyte", "CD19+ B"])].copy()
    >>> train, test = metrics.stratified_split(adata, "cell_type", test_size=0.4)
    >>> from scvi_diffusion import ScDiffusion
    >>> ScDiffusion.setup_anndata(train, cell_type_key="cell_type")  # doctest: +SKIP
    >>> model = ScDiffusion(train)  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> synthetic = model.generate(conditions=test.obs[["cell_type"]])  # doctest: +SKIP

    Here real training cells in the test cells' composition stand in for the generated ones,
    so the synthetic column should sit at the floor:

    >>> synthetic = metrics.matched_sample(train, test, "cell_type")
    >>> frame = metrics.evaluate(test, synthetic, condition_key="cell_type")
    >>> frame.loc["all"].loc[["knn_auc", "ilisi", "conditional_accuracy"]].round(2)
    ... # doctest: +NORMALIZE_WHITESPACE
                          synthetic  floor
    metric
    knn_auc                    0.45   0.46
    ilisi                      0.99   0.94
    conditional_accuracy       1.00   1.00
    >>> sorted(frame.index.unique("group"))
    ['CD14+ Monocyte', 'CD19+ B', 'all']
    >>> frame.attrs["n_fit"], frame.attrs["n_held_out"]
    (45, 45)
    """
    _check_inputs(real, reference, synthetic)
    labels = _conditions(condition_key, real=real, synthetic=synthetic, reference=reference)
    held = _hold_out(real, labels["real"], n_top_genes, n_comps, random_state)
    pair = _between(held.space, held.cells, _project(held.space, synthetic, "synthetic"))
    floor_pair, first, second = _floor_pair(held, reference, labels["reference"], random_state)
    groups = _groups(labels["real"], labels["synthetic"], labels["reference"])
    shared = {"groups": groups, "bandwidths": held.bandwidths, "random_state": random_state}
    frame = pd.DataFrame(
        {
            "synthetic": _compare(
                pair, held.labels, labels["synthetic"], held.classifier, **shared
            ),
            "floor": _compare(floor_pair, first, second, held.classifier, **shared),
        }
    )
    frame.attrs.update(
        n_real=real.n_obs, n_synthetic=synthetic.n_obs, **_attrs(held, floor_pair, reference)
    )
    return frame
