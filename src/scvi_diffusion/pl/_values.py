"""Generated cells along a continuous condition, beside the real cells."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def value_progress(
    progress: pd.DataFrame,
    value_key: str = "value",
    save: str | None = None,
    title: str | None = None,
):
    """Where cells generated at each value sit along the real cells' value.

    Against the value asked for: the synthetic cells' mean position per requested value (a
    line), the real cells' own positions at the measured values (points), and the diagonal
    where a cell sits exactly at the value asked for; the Spearman correlations in the legend.

    Parameters
    ----------
    progress : pandas.DataFrame
        The output of :func:`~scvi_diffusion.metrics.value_progress`.
    value_key : str, default "value"
        Name of the value on the axes.
    save : str, optional
        Path of a PNG to write.
    title : str, optional
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Raises
    ------
    TypeError
        ``progress`` is not the output of :func:`~scvi_diffusion.metrics.value_progress`.

    Examples
    --------
    >>> import numpy as np
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> monocyte = (adata.obs["cell_type"] == "CD14+ Monocyte").to_numpy()
    >>> adata.obs["dose"] = np.where(monocyte, 2.0, 0.0)
    >>> progress = metrics.value_progress(adata, adata[::3].copy(), "dose")
    >>> fig = scvi_diffusion.pl.value_progress(progress, "dose")
    >>> fig.axes[0].get_xlabel()
    'dose asked for'
    """
    columns = {"n_cells", "position", "real_position"}
    if not isinstance(progress, pd.DataFrame) or not columns <= set(progress.columns):
        raise TypeError(
            "`progress` must be the DataFrame that metrics.value_progress returns, with "
            f"columns {sorted(columns)}."
        )
    values = progress.index.to_numpy(dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    low, high = float(values.min()), float(values.max())
    ax.plot([low, high], [low, high], color="0.7", linestyle="--", label="at the value asked for")
    spearman = progress.attrs.get("spearman", np.nan)
    requested = progress["position"].notna().to_numpy()
    ax.plot(
        values[requested],
        progress["position"].to_numpy()[requested],
        marker="o",
        label=f"generated (Spearman {spearman:.2f})",
    )
    measured = progress["real_position"].notna().to_numpy()
    floor = progress.attrs.get("floor_spearman", np.nan)
    ax.scatter(
        values[measured],
        progress["real_position"].to_numpy()[measured],
        color="black",
        zorder=3,
        label=f"real cells (Spearman {floor:.2f})",
    )
    ax.set_xlabel(f"{value_key} asked for")
    ax.set_ylabel(f"{value_key} read from expression")
    ax.legend(frameon=False, fontsize="small")
    ax.set_title(title or f"Generated cells along {value_key}")
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig
