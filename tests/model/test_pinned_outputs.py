"""Pinned outputs: the exact cells and model file of two small fixed-seed models.

Written before the internal restructuring of issue 18 and kept unchanged through it: the same
inputs must give the same generated counts and latents (classifier and classifier-free guidance,
a condition guided by a classifier trained on demand, Gradient Interpolation, streaming to a
file) and the same saved model (every weight and every stored attribute).

Everything runs on one torch thread, where training and sampling on CPU are bitwise
reproducible on a given machine. Other processors round differently (an AMD EPYC gave latents
within 5e-5 relative of the ones pinned on another machine, and weights that differ in their
last bits), so counts, obs and parameters must be equal, and floats (latents, normalised
expression, training curves and weight fingerprints) equal to 1e-4 relative: far below what
any change of behaviour moves. To pin new outputs after an intended change of behaviour:
``python -m tests.model.test_pinned_outputs --write``.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import scvi
import torch

import scvi_diffusion
from scvi_diffusion import ScDiffusion

PINNED = Path(__file__).parents[1] / "pins" / "pinned_outputs.npz"
PINNED_ATTRIBUTES = Path(__file__).parents[1] / "pins" / "pinned_attributes.json"
GUIDANCE_MODES = ("classifier", "classifier_free")
QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": None}
# values that say which library version wrote the file, or which registration (a random
# uuid), not what the model is
UNPINNED_KEYS = ("scvi_version", "_scvi_uuid")


def _small_model(guidance: str) -> ScDiffusion:
    """Cell type, tissue and batch on 240 cells x 150 genes; a two-epoch budget."""
    adata = scvi_diffusion.data.pbmc68k()[:240, :150].copy()
    rng = np.random.default_rng(0)
    adata.obs["tissue"] = rng.choice(["blood", "marrow"], size=adata.n_obs)
    adata.obs["batch"] = rng.choice(["b1", "b2"], size=adata.n_obs)
    ScDiffusion.setup_anndata(
        adata, cell_type_key="cell_type", tissue_key="tissue", batch_key="batch"
    )
    scvi.settings.seed = 0
    model = ScDiffusion(adata, n_latent=4, n_hidden=32, denoiser_width=32, guidance=guidance)
    model.train(max_epochs=2, **QUIET)
    return model


def _plain_attributes(folder: Path) -> dict:
    """The saved model's attributes as JSON-ready plain values, times left out."""
    saved = torch.load(folder / "model.pt", weights_only=True)
    attributes = saved["attr_dict"]
    attributes["stage_seconds_"] = sorted(attributes["stage_seconds_"])
    # scvi-tools names each model after the time it was made
    attributes["run_name_"] = attributes.get("run_name_") is not None
    attributes["var_names"] = saved["var_names"]
    return json.loads(json.dumps(_without_unpinned(attributes), sort_keys=True))


def _without_unpinned(value):
    if isinstance(value, dict):
        return {k: _without_unpinned(v) for k, v in value.items() if k not in UNPINNED_KEYS}
    if isinstance(value, list | tuple):
        return [_without_unpinned(v) for v in value]
    return value


# relative tolerance of floats; see the module's docstring
FLOAT_RTOL = 1e-4
N_PROJECTIONS = 4


def _fingerprint(tensor: torch.Tensor) -> np.ndarray:
    """A weight as its mean, root mean square and means against fixed random signs: small to
    keep, the same to rounding on any processor, and moved by any real change of a weight."""
    data = tensor.detach().cpu().double().reshape(-1).numpy()
    signs = np.random.default_rng(data.size).choice([-1.0, 1.0], size=(N_PROJECTIONS, data.size))
    # sums against random signs scaled by 1/sqrt(size): about the root mean square each, so a
    # change of any weight moves them well past the tolerance
    projections = (signs @ data) / np.sqrt(data.size)
    return np.concatenate([[data.mean(), np.sqrt(np.mean(data**2))], projections])


def _assert_same(actual: np.ndarray, pinned: np.ndarray, key: str) -> None:
    """Equal, or for floats equal to :data:`FLOAT_RTOL` of the array's scale."""
    assert actual.dtype == pinned.dtype and actual.shape == pinned.shape, key
    if actual.dtype.kind != "f":
        np.testing.assert_array_equal(actual, pinned, err_msg=key)
        return
    scale = float(np.sqrt(np.mean(pinned.astype(np.float64) ** 2))) if pinned.size else 0.0
    if key.endswith("/weights"):
        # a fingerprint: its second value is the weight's root mean square
        scale = float(pinned[1])
    np.testing.assert_allclose(
        actual, pinned, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * scale, err_msg=key
    )


def _same_json(actual, pinned) -> bool:
    """JSON values equal, numbers to :data:`FLOAT_RTOL` (training curves differ in rounding
    between processors), NaN equal to NaN."""
    if isinstance(actual, dict) and isinstance(pinned, dict):
        return actual.keys() == pinned.keys() and all(
            _same_json(actual[k], pinned[k]) for k in actual
        )
    if isinstance(actual, list) and isinstance(pinned, list):
        return len(actual) == len(pinned) and all(
            _same_json(a, p) for a, p in zip(actual, pinned, strict=True)
        )
    if isinstance(actual, float) or isinstance(pinned, float):
        if not isinstance(actual, int | float) or not isinstance(pinned, int | float):
            return False
        if math.isnan(actual) or math.isnan(pinned):
            return math.isnan(actual) and math.isnan(pinned)
        return math.isclose(actual, pinned, rel_tol=FLOAT_RTOL, abs_tol=1e-9)
    return _json(actual) == _json(pinned)


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)


def _generated(prefix: str, cells: ad.AnnData) -> dict[str, np.ndarray]:
    counts = cells.X.toarray() if hasattr(cells.X, "toarray") else np.asarray(cells.X)
    return {
        f"{prefix}/counts": counts,
        f"{prefix}/latents": np.asarray(cells.obsm["X_latent"]),
        f"{prefix}/obs": cells.obs.astype(str).to_numpy().astype(str),
        f"{prefix}/params": np.array(json.dumps(cells.uns["scdiffusion"], sort_keys=True)),
    }


def pinned_outputs() -> tuple[dict[str, np.ndarray], dict]:
    """Arrays (weights and generated cells) and attributes of both guidance modes."""
    arrays, attributes = {}, {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for guidance in GUIDANCE_MODES:
            model = _small_model(guidance)
            types = model.adata.obs["cell_type"].value_counts().index[:2].tolist()
            runs = {
                "composition": {"n": 40},
                "conditions": {"n": 30, "cell_type": types[0], "tissue": "marrow"},
                "on_demand_classifier": {"n": 20, "conditions": {"phase": "S"}},
                "interpolation": {
                    "n": 24,
                    "interpolate": {"cell_type": (types[0], types[1])},
                    "n_points": 3,
                    "start_time": 400,
                },
                "normalized": {"n": 10, "output": "normalized", "sampler": "ddim"},
            }
            for seed, (name, kwargs) in enumerate(runs.items()):
                cells = model.generate(seed=seed, progress_bar=False, **kwargs)
                arrays |= _generated(f"{guidance}/{name}", cells)
            with tempfile.TemporaryDirectory() as folder:
                streamed = model.generate(
                    n=25, batch_size=10, seed=7, progress_bar=False, out=Path(folder) / "s.h5ad"
                ).to_memory()
                arrays |= _generated(f"{guidance}/streamed", streamed)
                model.save(folder, overwrite=True)
                attributes[guidance] = _plain_attributes(Path(folder))
                state = torch.load(Path(folder) / "model.pt", weights_only=True)
            for key, tensor in state["model_state_dict"].items():
                arrays[f"{guidance}/{key}/weights"] = _fingerprint(tensor)
    finally:
        torch.set_num_threads(threads)
    return arrays, attributes


def test_outputs_match_the_pinned_ones():
    """Generated counts, latents, obs and parameters, weights and attributes: all unchanged."""
    arrays, attributes = pinned_outputs()
    with np.load(PINNED) as pinned:
        assert sorted(arrays) == sorted(pinned.files)
        for key in pinned.files:
            _assert_same(arrays[key], pinned[key], key)
    pinned_attributes = json.loads(PINNED_ATTRIBUTES.read_text())
    assert {g: sorted(v) for g, v in attributes.items()} == {
        g: sorted(v) for g, v in pinned_attributes.items()
    }
    for guidance, values in attributes.items():
        for name, value in values.items():
            same = _same_json(json.loads(_json(value)), pinned_attributes[guidance].get(name))
            assert same, name


if __name__ == "__main__" and "--write" in sys.argv:
    new_arrays, new_attributes = pinned_outputs()
    PINNED.parent.mkdir(exist_ok=True)
    np.savez_compressed(PINNED, **new_arrays)
    PINNED_ATTRIBUTES.write_text(json.dumps(new_attributes, sort_keys=True, indent=1) + "\n")
    print(f"wrote {len(new_arrays)} arrays to {PINNED} and the attributes to {PINNED_ATTRIBUTES}")
