"""generate(out=...): cells streamed to an .h5ad file batch by batch."""

import anndata as ad
import numpy as np
import pytest

from .test_generate import name_token

GEN = {"n_steps": 5, "progress_bar": False}


@pytest.mark.parametrize("output", ["counts", "normalized"])
def test_streamed_file_equals_in_memory_generation(tiny_model, tmp_path, output):
    kwargs = {"n": 50, "cell_type": "CD19+ B", "batch_size": 16, "seed": 4, "output": output}
    in_memory = tiny_model.generate(**kwargs, **GEN)
    path = tmp_path / "synthetic.h5ad"
    backed = tiny_model.generate(**kwargs, out=path, **GEN)
    assert backed.isbacked and backed.filename == path
    loaded = backed.to_memory()
    dense = (lambda x: x.toarray()) if output == "counts" else np.asarray
    np.testing.assert_array_equal(dense(loaded.X), dense(in_memory.X))
    np.testing.assert_array_equal(loaded.obsm["X_latent"], in_memory.obsm["X_latent"])
    # the same cells under the same naming scheme, with this call's own token
    assert loaded.obs.reset_index(drop=True).equals(in_memory.obs.reset_index(drop=True))
    assert name_token(loaded) != name_token(in_memory)
    assert list(loaded.var_names) == list(in_memory.var_names)
    assert loaded.uns["scdiffusion"]["seed"] == 4
    reread = ad.read_h5ad(path)
    assert reread.shape == (50, tiny_model.adata.n_vars)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.h5ad"]


def test_interrupted_stream_leaves_no_file(tiny_model, tmp_path, monkeypatch):
    path = tmp_path / "synthetic.h5ad"
    tiny_model.generate(n=10, seed=0, out=path, **GEN)
    before = ad.read_h5ad(path).X.toarray()
    import scvi_diffusion.model._generation_mixin as front

    original = front.sample

    def failing(*args, **kwargs):
        batches = original(*args, **kwargs)
        yield next(batches)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(front, "sample", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        tiny_model.generate(n=40, batch_size=8, seed=1, out=path, **GEN)
    # the earlier file is intact and no partial file is left behind
    np.testing.assert_array_equal(ad.read_h5ad(path).X.toarray(), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.h5ad"]


@pytest.mark.parametrize(
    ("out", "error", "message"),
    [
        ("synthetic.csv", ValueError, "must end in"),
        ("missing_folder/synthetic.h5ad", ValueError, "folder of `out` does not exist"),
        (3, TypeError, "file path"),
    ],
)
def test_bad_out(tiny_model, tmp_path, monkeypatch, out, error, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        tiny_model.generate(n=3, out=out, **GEN)
    assert list(tmp_path.iterdir()) == []
