"""save/load identity and loading onto the wrong genes."""

import numpy as np
import pytest
import torch

from scvi_diffusion import ScDiffusion

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
