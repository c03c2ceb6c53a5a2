"""Pinned outputs of the generation paths that ``test_pinned_outputs`` does not reach.

Counterfactuals (the start-time search, a given start time, counts drawn afresh), new cells of
a combination never seen in training (by analogy), a continuous condition (at a value, swept,
changed in counterfactuals) and the privacy audit's scores, on a small fixed-seed model.
Written before the restructuring of issue 40 and kept unchanged through it. The same
tolerances as ``test_pinned_outputs`` (one torch thread; floats to 1e-4 relative). To pin new
outputs after an intended change of behaviour: ``python -m tests.model.test_pinned_paths --write``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import scvi
import torch

import scvi_diffusion
from scvi_diffusion import ScDiffusion

from .test_pinned_outputs import QUIET, _assert_same, _generated

PINNED = Path(__file__).parents[1] / "pins" / "pinned_paths.npz"


def _small_two_factor_model() -> tuple[ScDiffusion, object]:
    """Cell type, tissue and a continuous dose on the 176 B cells, CD14+ monocytes and naive
    T cells (150 genes) other than the 56 stimulated B cells; a two-epoch budget. Returns the
    model and the held-out stimulated B cells."""
    adata = scvi_diffusion.data.pbmc68k_two_factor()[:, :150].copy()
    adata = adata[
        adata.obs["cell_type"].isin(["CD19+ B", "CD14+ Monocyte", "CD4+/CD45RA+/CD25- Naive T"])
    ].copy()
    adata.obs["dose"] = np.resize(np.array([0.0, 1.0, 4.0]), adata.n_obs)
    held = (adata.obs["cell_type"] == "CD19+ B") & (adata.obs["tissue"] == "stimulated")
    train, holdout = adata[~held].copy(), adata[held].copy()
    ScDiffusion.setup_anndata(
        train, cell_type_key="cell_type", tissue_key="tissue", continuous_condition_keys=["dose"]
    )
    scvi.settings.seed = 0
    model = ScDiffusion(train, n_latent=4, n_hidden=32, denoiser_width=32)
    model.train(max_epochs=2, **QUIET)
    return model, holdout


def pinned_paths() -> dict[str, np.ndarray]:
    """Generated cells of each path, and the audit's membership scores."""
    arrays = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, holdout = _small_two_factor_model()
            train = model.adata
            control_b = train[(train.obs["cell_type"] == "CD19+ B")].copy()
            runs = {
                "cf_searched": {"source": control_b, "tissue": "stimulated"},
                "cf_given": {
                    "source": control_b,
                    "tissue": "stimulated",
                    "start_time": 300,
                    "keep_source_counts": False,
                },
                "cf_normalized": {
                    "source": train[:30].copy(),
                    "conditions": {"dose": 2.5},
                    "output": "normalized",
                },
                "unseen": {"n": 30, "cell_type": "CD19+ B", "tissue": "stimulated"},
                "value": {"n": 30, "dose": 2.0},
                "sweep": {"n": 24, "interpolate": {"dose": (0.0, 4.0)}, "n_points": 4},
            }
            for seed, (name, kwargs) in enumerate(runs.items()):
                cells = model.generate(seed=seed, progress_bar=False, **kwargs)
                arrays |= _generated(f"paths/{name}", cells)
            scores = model.get_membership_scores(holdout, seed=0)
            arrays["paths/membership"] = scores.to_numpy()
            table = model.audit(holdout, seed=0, progress_bar=False)
            arrays["paths/audit"] = table["value"].to_numpy(dtype=np.float64)
            arrays["paths/audit_rows"] = np.array(list(table.index), dtype=str)
            arrays["paths/verdict"] = np.array(json.dumps(table.attrs, sort_keys=True))
    finally:
        torch.set_num_threads(threads)
    return arrays


def test_paths_match_the_pinned_ones():
    """Counterfactuals, analogy, continuous values and audit scores: all unchanged."""
    arrays = pinned_paths()
    with np.load(PINNED) as pinned:
        assert sorted(arrays) == sorted(pinned.files)
        for key in pinned.files:
            _assert_same(arrays[key], pinned[key], key)


if __name__ == "__main__" and "--write" in sys.argv:
    new_arrays = pinned_paths()
    np.savez_compressed(PINNED, **new_arrays)
    print(f"wrote {len(new_arrays)} arrays to {PINNED}")
