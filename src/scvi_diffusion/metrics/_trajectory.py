"""Whether a Gradient Interpolation is a trajectory: progress from one state to another."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from ._classifiers import _fit_condition_classifier, _labels
from ._expression import _spearman
from ._space import SharedSpace, shared_space

WEIGHT_KEY = "interpolation_weight"


def _spearman_over_grid(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman over the grid points with a finite value (DPT is inf off the root's graph)."""
    finite = np.isfinite(y)
    if finite.sum() < 3:
        return float("nan")
    return _spearman(x[finite], y[finite])


def _pseudotime(space: SharedSpace, root: int, n_neighbors: int) -> np.ndarray:
    """Diffusion pseudotime of real and synthetic cells together, rooted at a real cell."""
    joint = ad.AnnData(
        X=np.zeros((space.n_real + space.n_synthetic, 1), dtype=np.float32),
        obsm={"X_pca": np.vstack([space.real_pca, space.synthetic_pca]).astype(np.float32)},
    )
    sc.pp.neighbors(joint, n_neighbors=n_neighbors, use_rep="X_pca", random_state=0)
    sc.tl.diffmap(joint, random_state=0)
    joint.uns["iroot"] = int(root)
    sc.tl.dpt(joint)
    return joint.obs["dpt_pseudotime"].to_numpy()


def _states(trajectory: ad.AnnData, source: str | None, target: str | None) -> dict[str, str]:
    """The source and the target: as given, else as recorded in the trajectory's obs."""
    states = {}
    for name, value in (("source", source), ("target", target)):
        if value is None:
            column = f"interpolation_{name}"
            if column not in trajectory.obs:
                raise ValueError(f"Give `{name}=`: the trajectory has no obs[{column!r}].")
            value = str(trajectory.obs[column].iloc[0])
        states[name] = value
    return states


def _check_real_cells_have(labels: np.ndarray, states: dict[str, str], condition_key: str) -> None:
    """A ValueError unless some real cells have the source and some the target."""
    for name, value in states.items():
        if not np.any(labels == value):
            raise ValueError(
                f"No real cell has {condition_key}={value!r} (the {name}); valid values: "
                f"{sorted(set(labels))}."
            )


def _scaled_pseudotime(
    space: SharedSpace,
    is_source: np.ndarray,
    is_target: np.ndarray,
    source_centroid: np.ndarray,
    n_neighbors: int,
) -> np.ndarray:
    """The generated cells' diffusion pseudotime, rooted at the real source cell nearest the
    source centroid, in units of the real target cells' mean (unscaled where no real target
    cell has a finite pseudotime, or their mean is 0)."""
    source_rows = np.flatnonzero(is_source)
    distances = np.linalg.norm(space.real_pca[source_rows] - source_centroid, axis=1)
    root = source_rows[np.argmin(distances)]
    times = _pseudotime(space, root, n_neighbors)
    target_times = times[: space.n_real][is_target]
    target_times = target_times[np.isfinite(target_times)]
    scale = target_times.mean() if target_times.size and target_times.mean() > 0 else 1.0
    return times[space.n_real :] / scale


def _table_by_weight(
    columns: dict[str, np.ndarray], weights: np.ndarray, states: dict[str, str]
) -> pd.DataFrame:
    """Each column's mean per interpolation weight, with ``n_cells``; ``attrs`` with each
    column's Spearman correlation with the weight, and the two states."""
    frame = pd.DataFrame(columns)
    frame["weight"] = weights
    table = frame.groupby("weight").mean()
    table.insert(0, "n_cells", frame.groupby("weight").size())
    grid = table.index.to_numpy()
    for column in table.columns.drop("n_cells"):
        table.attrs[f"spearman_{column}"] = _spearman_over_grid(grid, table[column].to_numpy())
    table.attrs.update(states)
    return table


def trajectory_progress(
    real: ad.AnnData,
    trajectory: ad.AnnData,
    condition_key: str,
    source: str | None = None,
    target: str | None = None,
    weight_key: str = WEIGHT_KEY,
    pseudotime: bool = True,
    n_neighbors: int = 15,
    random_state: int = 0,
) -> pd.DataFrame:
    """How far cells generated along a Gradient Interpolation have moved from source to target.

    In the :func:`shared_space` of the real cells (PCA of log-normalised counts):

    - ``axis_position``: mean projection onto the axis from the real source cells' centroid
      (0) to the real target cells' centroid (1);
    - ``source_fraction``/``target_fraction``: fractions that a classifier trained on the real
      cells' ``condition_key`` assigns to the source and to the target;
    - ``pseudotime``: mean diffusion pseudotime (scanpy's DPT on real and generated cells
      together, rooted at the real source cell nearest the source centroid), scaled so that
      the real target cells' mean is 1.

    Parameters
    ----------
    real : anndata.AnnData
        Real cells with counts and ``obs[condition_key]``, including source and target cells.
    trajectory : anndata.AnnData
        Output of ``ScDiffusion.generate(interpolate=...)``.
    condition_key : str
        Obs column of ``real`` with the interpolated condition.
    source, target : str, optional
        The two states. Default: ``trajectory.obs['interpolation_source'/'_target']``.
    weight_key : str, default "interpolation_weight"
        Obs column of ``trajectory`` with the interpolation weight.
    pseudotime : bool, default True
        Compute the diffusion pseudotime.
    n_neighbors : int, default 15
        Neighbours of the graph DPT runs on.
    random_state : int, default 0
        Seed of the classifier.

    Returns
    -------
    pandas.DataFrame
        One row per interpolation weight with ``n_cells`` and the columns above; ``attrs``
        holds the Spearman correlation of each column with the weight
        (``spearman_axis_position``, ``spearman_source_fraction``,
        ``spearman_target_fraction``, ``spearman_pseudotime``) and the two states
        (``source``, ``target``).

    Raises
    ------
    ValueError
        ``trajectory`` has no ``obs[weight_key]``, a state is neither given nor recorded in
        its obs, or no real cell has the source or the target condition.

    Examples
    --------
    With a model trained on the bundled PBMCs, monocytes turning into dendritic cells:

    >>> import numpy as np
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> states = ("CD14+ Monocyte", "Dendritic")
    >>> trajectory = model.generate(n=500, interpolate={"cell_type": states})  # doctest: +SKIP

    Here real cells stand in: at weight ``w`` a fraction ``w`` of the cells are dendritic
    cells, the rest monocytes.

    >>> rng = np.random.default_rng(0)
    >>> weight = np.repeat(np.linspace(0, 1, 5), 20)
    >>> monocytes = np.flatnonzero(adata.obs["cell_type"] == states[0])
    >>> dendritic = np.flatnonzero(adata.obs["cell_type"] == states[1])
    >>> rows = np.where(
    ...     rng.random(weight.size) < weight,
    ...     rng.choice(dendritic, weight.size, replace=False),
    ...     rng.choice(monocytes, weight.size, replace=False),
    ... )
    >>> trajectory = adata[rows].copy()
    >>> trajectory.obs["interpolation_weight"] = weight

    >>> progress = metrics.trajectory_progress(
    ...     adata, trajectory, "cell_type", source=states[0], target=states[1]
    ... )
    >>> progress[["n_cells", "axis_position", "target_fraction"]].round(2)
    ... # doctest: +NORMALIZE_WHITESPACE
            n_cells  axis_position  target_fraction
    weight
    0.00         20           0.08             0.15
    0.25         20           0.13             0.20
    0.50         20           0.45             0.55
    0.75         20           0.77             0.75
    1.00         20           0.86             0.85
    >>> round(progress.attrs["spearman_axis_position"], 2)
    1.0
    """
    if weight_key not in trajectory.obs:
        raise ValueError(
            f"{weight_key!r} is not a column of the trajectory's obs; generate it with "
            "`model.generate(interpolate={condition: (source, target)})`."
        )
    states = _states(trajectory, source, target)
    labels = _labels(real, condition_key, "real")
    _check_real_cells_have(labels, states, condition_key)
    weights = trajectory.obs[weight_key].to_numpy(dtype=np.float64)
    space = shared_space(real, trajectory)
    is_source = labels == states["source"]
    is_target = labels == states["target"]
    source_centroid = space.real_pca[is_source].mean(0)
    axis = space.real_pca[is_target].mean(0) - source_centroid
    position = (space.synthetic_pca - source_centroid) @ axis / (axis @ axis)
    predicted = _fit_condition_classifier(space.real_pca, labels, random_state).predict(
        space.synthetic_pca
    )
    columns = {
        "axis_position": position,
        "source_fraction": (predicted == states["source"]).astype(float),
        "target_fraction": (predicted == states["target"]).astype(float),
    }
    if pseudotime:
        columns["pseudotime"] = _scaled_pseudotime(
            space, is_source, is_target, source_centroid, n_neighbors
        )
    return _table_by_weight(columns, weights, states)
