"""save/load identity; model files that are refused (code, damage, other classes, other
genes); saves that are atomic and follow the umask."""

import os
import pickle
import stat

import anndata
import numpy as np
import pytest
import scvi
import torch

import scvi_diffusion
from scvi_diffusion import ModelFileError, ScDiffusion
from scvi_diffusion.model import _model_file as _save_load
from scvi_diffusion.model._model_file import read_model_file, write_model_file
from scvi_diffusion.module import _networks

GEN = {"n_steps": 5, "progress_bar": False}


def test_save_load_identity(tiny_model, tmp_path):
    before = tiny_model.generate(n=30, cell_type="CD19+ B", seed=11, **GEN)
    tiny_model.save(str(tmp_path / "model"), overwrite=True)
    loaded = ScDiffusion.load(str(tmp_path / "model"), adata=tiny_model.adata)
    original = tiny_model.module.state_dict()
    restored = loaded.module.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        torch.testing.assert_close(original[key], restored[key], rtol=0, atol=0)
    assert loaded.is_trained_
    assert loaded.condition_keys == tiny_model.condition_keys
    assert set(loaded.history) == set(tiny_model.history)
    after = loaded.generate(n=30, cell_type="CD19+ B", seed=11, **GEN)
    np.testing.assert_array_equal(before.X.toarray(), after.X.toarray())
    np.testing.assert_array_equal(before.obs["tissue"], after.obs["tissue"])


def test_load_onto_other_genes_fails(tiny_model, tmp_path):
    tiny_model.save(str(tmp_path / "model"), overwrite=True)
    other = tiny_model.adata[:, ::-1].copy()
    with pytest.raises(ValueError, match="genes differ"):
        ScDiffusion.load(str(tmp_path / "model"), adata=other)
    subset = tiny_model.adata[:, :100].copy()
    with pytest.raises(ValueError, match="100 missing|665 missing"):
        ScDiffusion.load(str(tmp_path / "model"), adata=subset)


# ---------------------------------------------------------------- model files that are refused


class _RunsCode:
    """Unpickling this creates a marker file: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _saved(model, folder, **kwargs):
    model.save(str(folder), overwrite=True, **kwargs)
    return folder


@pytest.mark.parametrize("where", ["whole file", "inside a valid model"])
def test_load_refuses_a_file_that_would_run_code(tiny_model, tmp_path, where):
    marker = tmp_path / "code_ran"
    folder = _saved(tiny_model, tmp_path / "model")
    if where == "whole file":
        payload = {"model_state_dict": _RunsCode(marker)}
    else:
        payload = torch.load(folder / "model.pt", weights_only=True)
        payload["attr_dict"]["history_"] = _RunsCode(marker)
    torch.save(payload, folder / "model.pt")
    for read in (
        lambda: ScDiffusion.load(str(folder), adata=tiny_model.adata),
        lambda: ScDiffusion.load_registry(str(folder)),
        lambda: ScDiffusion.view_setup_args(str(folder)),
    ):
        with pytest.raises(ModelFileError, match="pickled Python objects .*could run code"):
            read()
    assert not marker.exists()


@pytest.mark.parametrize(
    ("protocol", "message"), [(2, "could run code"), (4, "could run code|not a model file")]
)
def test_load_refuses_a_plain_pickle(tiny_model, tmp_path, protocol, message):
    marker = tmp_path / "code_ran"
    folder = tmp_path / "model"
    folder.mkdir()
    with open(folder / "model.pt", "wb") as file:
        pickle.dump({"model_state_dict": _RunsCode(marker)}, file, protocol=protocol)
    with pytest.raises(ModelFileError, match=message):
        ScDiffusion.load(str(folder), adata=tiny_model.adata)
    assert not marker.exists()


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_weight_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, "truncated or corrupted"),
        (lambda path: path.write_bytes(b""), "truncated or corrupted"),
        (lambda path: path.write_text("not a model"), "not a model file"),
        (_flip_a_weight_byte, "corrupted"),
    ],
)
def test_load_rejects_damaged_files(tiny_model, tmp_path, damage, message):
    folder = _saved(tiny_model, tmp_path / "model")
    damage(folder / "model.pt")
    with pytest.raises(ModelFileError, match=message):
        ScDiffusion.load(str(folder), adata=tiny_model.adata)


def test_load_rejects_missing_model_and_missing_adata(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved model"):
        ScDiffusion.load(str(tmp_path / "nowhere"), adata=tiny_model.adata)
    folder = _saved(tiny_model, tmp_path / "model")
    with pytest.raises(ValueError, match="No AnnData was saved"):
        ScDiffusion.load(str(folder))
    with pytest.raises(TypeError, match="`adata` must be an AnnData"):
        ScDiffusion.load(str(folder), adata="adata.h5ad")


def test_load_rejects_another_model_class(tiny_model, tmp_path):
    # scvi-tools' own models pickle NumPy arrays and DataFrames: refused as unsafe
    adata = tiny_model.adata[:50].copy()
    scvi.model.SCVI.setup_anndata(adata)
    scvi.model.SCVI(adata, n_latent=2).save(str(tmp_path / "scvi"))
    with pytest.raises(ModelFileError, match="pickled Python objects"):
        ScDiffusion.load(str(tmp_path / "scvi"), adata=adata)
    # a safe file that names another class
    folder = _saved(tiny_model, tmp_path / "model")
    state_dict, var_names, attr_dict = read_model_file(folder / "model.pt")
    attr_dict["registry_"]["model_name"] = "SCVI"
    write_model_file(folder / "model.pt", state_dict, var_names, attr_dict)
    with pytest.raises(ModelFileError, match="holds a SCVI model, not a ScDiffusion"):
        ScDiffusion.load(str(folder), adata=tiny_model.adata)


def test_saved_anndata_and_prefix(tiny_model, tmp_path):
    folder = _saved(tiny_model, tmp_path / "model", prefix="pbmc_", save_anndata=True)
    assert sorted(p.name for p in folder.iterdir()) == ["pbmc_adata.h5ad", "pbmc_model.pt"]
    loaded = ScDiffusion.load(str(folder), prefix="pbmc_")
    assert loaded.adata.shape == tiny_model.adata.shape
    assert loaded.trained_stages_ == tiny_model.trained_stages_
    assert ScDiffusion.load_registry(str(folder), prefix="pbmc_")["model_name"] == "ScDiffusion"


# ---------------------------------------------------------------------------- atomic saving


def _failing_torch_save(payload, file, **kwargs):
    file.write(b"half a model")
    raise OSError("No space left on device")


def _weights(model):
    return {k: v.clone() for k, v in model.module.state_dict().items()}


@pytest.mark.parametrize("fail_in", ["model file", "anndata"])
def test_interrupted_save_keeps_the_previous_model(tiny_model, tmp_path, monkeypatch, fail_in):
    folder = _saved(tiny_model, tmp_path / "model", save_anndata=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    saved_bytes = (folder / "model.pt").read_bytes()
    if fail_in == "model file":
        monkeypatch.setattr(_save_load.torch, "save", _failing_torch_save)
    else:
        monkeypatch.setattr(
            anndata.AnnData,
            "write_h5ad",
            lambda *a, **k: _failing_torch_save(None, open(a[1], "wb")),
        )
    with pytest.raises(OSError, match="No space left"):
        tiny_model.save(str(folder), overwrite=True, save_anndata=True)
    with pytest.raises(OSError, match="No space left"):
        tiny_model.save(str(tmp_path / "new_model"), save_anndata=True)
    monkeypatch.undo()
    # nothing half-written, no staging folder left, the old model intact and loadable
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (folder / "model.pt").read_bytes() == saved_bytes
    loaded = ScDiffusion.load(str(folder))
    for key, value in _weights(tiny_model).items():
        torch.testing.assert_close(loaded.module.state_dict()[key], value, rtol=0, atol=0)


def test_save_refuses_to_overwrite_by_default(tiny_model, tmp_path):
    folder = _saved(tiny_model, tmp_path / "model")
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists; pass `overwrite=True`"):
        tiny_model.save(str(folder))
    tiny_model.save(str(folder), overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="is a file"):
        tiny_model.save(str(folder / "notes.txt"), overwrite=True)


@pytest.mark.parametrize(
    ("umask", "folder_mode", "file_mode"),
    [(0o022, "drwxr-xr-x", "-rw-r--r--"), (0o077, "drwx------", "-rw-------")],
)
def test_saved_folder_and_files_follow_the_umask(
    tiny_model, tmp_path, umask, folder_mode, file_mode
):
    # a shared server's colleagues read models saved under umask 022; 077 keeps them private
    previous = os.umask(umask)
    try:
        folder = _saved(tiny_model, tmp_path / "model", save_anndata=True)
        # overwriting replaces the files, and they keep the umask's permissions too
        tiny_model.save(str(folder), overwrite=True, save_anndata=True)
    finally:
        os.umask(previous)
    assert stat.filemode(folder.stat().st_mode) == folder_mode
    files = {p.name: stat.filemode(p.stat().st_mode) for p in folder.iterdir()}
    assert files == {"adata.h5ad": file_mode, "model.pt": file_mode}


def _first_width(model: ScDiffusion) -> int:
    return model.module.diffusion.denoiser.down[0].linear.out_features


def test_load_keeps_the_width_a_denoiser_was_saved_with(monkeypatch, tmp_path):
    """A model saved when the default denoiser width was 256 (before 160) loads at 256."""
    adata = scvi_diffusion.data.pbmc68k()[:120].copy()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    monkeypatch.setattr(_networks, "DENOISER_MIN_WIDTH", 256)
    scvi.settings.seed = 0
    earlier = ScDiffusion(adata, n_latent=6)
    assert _first_width(earlier) == 256
    earlier.save(str(tmp_path / "model"), overwrite=True)
    monkeypatch.undo()
    assert _first_width(ScDiffusion(adata, n_latent=6)) == 160
    loaded = ScDiffusion.load(str(tmp_path / "model"), adata=adata)
    assert _first_width(loaded) == 256
    for name, weight in earlier.module.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[name], weight)
