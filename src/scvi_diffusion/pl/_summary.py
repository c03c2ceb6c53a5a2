"""A one-figure summary of :func:`scvi_diffusion.metrics.evaluate`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# the headline metrics, each with the direction that is better
SUMMARY_METRICS = {
    "mmd": "lower is better",
    "w2": "lower is better",
    "knn_auc": "0.5 = indistinguishable",
    "rf_auc": "0.5 = indistinguishable",
    "ilisi": "higher is better",
    "conditional_accuracy": "higher is better",
    "mean_spearman": "higher is better",
    "library_size_ks": "lower is better",
}


def metrics_summary(frame: pd.DataFrame, group: str = "all", save: str | None = None):
    """Bar chart of the headline fidelity metrics, synthetic cells beside the real floor.

    Parameters
    ----------
    frame : pandas.DataFrame
        The output of :func:`~scvi_diffusion.metrics.evaluate`.
    group : str, default "all"
        Which group of ``frame`` to show: ``"all"`` or one condition value.
    save : str, optional
        Path of a PNG to write.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, one panel per metric.

    Raises
    ------
    TypeError
        ``frame`` is not a DataFrame with a (group, metric) index.
    ValueError
        ``group`` is not a group of ``frame``.

    Examples
    --------
    Monocytes and B cells of the bundled PBMCs; real training cells stand in for generated
    ones (``model.generate(conditions=test.obs[["cell_type"]])``):

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> adata = adata[adata.obs["cell_type"].isin(["CD14+ Monocyte", "CD19+ B"])].copy()
    >>> train, test = metrics.stratified_split(adata, "cell_type", test_size=0.4)
    >>> synthetic = metrics.matched_sample(train, test, "cell_type")
    >>> frame = metrics.evaluate(test, synthetic)
    >>> fig = scvi_diffusion.pl.metrics_summary(frame)
    >>> [ax.get_title().split()[0] for ax in fig.axes]
    ['mmd', 'w2', 'knn_auc', 'rf_auc', 'ilisi', 'mean_spearman', 'library_size_ks']

    With ``condition_key``, each condition has its own group:

    >>> frame = metrics.evaluate(test, synthetic, condition_key="cell_type")  # doctest: +SKIP
    >>> fig = scvi_diffusion.pl.metrics_summary(frame, group="CD19+ B")  # doctest: +SKIP
    """
    if (
        not isinstance(frame, pd.DataFrame)
        or not isinstance(frame.index, pd.MultiIndex)
        or not {"synthetic", "floor"} <= set(frame.columns)
    ):
        raise TypeError(
            "`frame` must be the DataFrame returned by `metrics.evaluate` (with 'synthetic' "
            "and 'floor' columns)."
        )
    groups = frame.index.get_level_values(0).unique()
    if group not in groups:
        raise ValueError(f"Unknown group {group!r}; choose one of {list(groups)}.")
    table = frame.loc[group]
    metrics = [m for m in SUMMARY_METRICS if m in table.index]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.1 * len(metrics), 3.4))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        values = table.loc[metric, ["synthetic", "floor"]].to_numpy(dtype=float)
        ax.bar([0, 1], values, color=["tab:orange", "tab:grey"], width=0.7)
        ax.set_xticks([0, 1], ["synthetic", "floor"], rotation=30)
        ax.set_title(f"{metric}\n({SUMMARY_METRICS[metric]})", fontsize=9)
        for x, value in enumerate(values):
            if np.isfinite(value):
                ax.annotate(f"{value:.3g}", (x, value), ha="center", va="bottom", fontsize=8)
        if metric in ("knn_auc", "rf_auc"):
            ax.axhline(0.5, color="black", lw=0.8, ls=":")
    fig.suptitle(f"Fidelity against held-out real cells ({group}); floor = real vs real")
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig
