"""A one-figure summary of :func:`scvi_diffusion.metrics.evaluate`."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..metrics import verdicts
from ..metrics._evaluate import BETTER, DIRECTION_WORDS, WITHIN, WORSE
from ..metrics._pairs import DIRECTIONS, HEADLINE_METRICS

SUMMARY_METRICS = {metric: DIRECTION_WORDS[DIRECTIONS[metric]] for metric in HEADLINE_METRICS}

_MMD_FOOTNOTE = (
    "mmd is an unbiased estimate of MMD²: about 0, and often below 0, when the two sets of "
    "cells are indistinguishable."
)


def _verdict_colour(verdict: str) -> str:
    if verdict.startswith(WORSE):
        return "tab:red"
    return "tab:green" if verdict in (WITHIN, BETTER) else "dimgrey"


def metrics_summary(
    frame: pd.DataFrame, group: str = "all", save: str | None = None, title: str | None = None
):
    """Bar chart of the headline fidelity metrics, synthetic cells beside the real floor.

    One panel per metric of :func:`~scvi_diffusion.metrics.verdicts`: the synthetic value and
    the floor (real vs real cells) as bars, each value under its bar, the floor's spread as a
    grey band and error bar, and the verdict below (green: within the spread or better, red:
    worse). A footnote says why ``mmd`` may be below 0.

    Parameters
    ----------
    frame : pandas.DataFrame
        The output of :func:`~scvi_diffusion.metrics.evaluate`.
    group : str, default "all"
        Which group of ``frame`` to show: ``"all"`` or one condition value (a condition's
        group has no spread, so its verdicts are "not assessed").
    save : str, optional
        Path of a PNG to write.
    title : str, optional
        Title of the figure; default ``"Synthetic vs real cells (GROUP); floor = real vs
        real"``.

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

    See Also
    --------
    scvi_diffusion.metrics.verdicts : The same figures as a table.

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
    >>> fig.axes[2].get_xlabel().replace("\\n", " ")  # the verdict, in lines
    "within the floor's spread"
    >>> fig.get_suptitle()
    'Synthetic vs real cells (all); floor = real vs real'

    With ``condition_key``, each condition has its own group:

    >>> frame = metrics.evaluate(test, synthetic, condition_key="cell_type")  # doctest: +SKIP
    >>> fig = scvi_diffusion.pl.metrics_summary(frame, group="CD19+ B")  # doctest: +SKIP
    """
    table = verdicts(frame, group)
    names = list(table.index)
    fig, axes = plt.subplots(
        1, len(names), figsize=(2.1 * len(names), 4.2), layout="constrained", squeeze=False
    )
    for ax, metric in zip(axes[0], names, strict=True):
        row = table.loc[metric]
        values = [float(row["synthetic"]), float(row["floor"])]
        ax.bar([0, 1], values, color=["tab:orange", "tab:grey"], width=0.6, zorder=2)
        low, high = float(row["floor_low"]), float(row["floor_high"])
        if np.isfinite([low, high]).all():
            ax.axhspan(low, high, color="tab:grey", alpha=0.2, lw=0, zorder=1)
            middle, half = (low + high) / 2, (high - low) / 2
            ax.errorbar(1, middle, yerr=half, fmt="none", ecolor="black", capsize=4, zorder=3)
        if DIRECTIONS[metric] == "chance":
            ax.axhline(0.5, color="black", lw=0.8, ls=":")
        ax.axhline(0, color="black", lw=0.6)
        # Values under the bars, not on them: they can never overlap a bar, band or error bar.
        synthetic, floor = values
        ax.set_xticks([0, 1], [f"synthetic\n{synthetic:.3g}", f"floor\n{floor:.3g}"], fontsize=8)
        ax.margins(y=0.1)
        name = "mmd (unbiased MMD²)" if metric == "mmd" else metric
        ax.set_title(f"{name}\n({SUMMARY_METRICS.get(metric, '')})", fontsize=9)
        verdict = str(row["verdict"])
        ax.set_xlabel(
            textwrap.fill(verdict, 22), color=_verdict_colour(verdict), fontsize=8, weight="bold"
        )
    spread = np.isfinite(table[["floor_low", "floor_high"]].to_numpy(dtype=float)).any()
    notes = [
        "Grey band and error bar: the floor's spread (95% of real-vs-real re-draws)."
        if spread
        else "No spread of the floor here (only group 'all' has one, with n_repeats > 0)."
    ]
    if "mmd" in names:
        notes.append(_MMD_FOOTNOTE)
    fig.supxlabel(" ".join(notes), fontsize=8)
    fig.suptitle(title or f"Synthetic vs real cells ({group}); floor = real vs real")
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig
