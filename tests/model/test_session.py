"""The user's session from SPEC.md, verbatim (default training budget)."""

import matplotlib
import pytest

matplotlib.use("Agg")

SESSION = """
import scanpy as sc
import scvi_diffusion
from scvi_diffusion import ScDiffusion

adata = scvi_diffusion.data.pbmc68k()            # bundled real PBMCs, raw counts, no network
ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", tissue_key=None)
model = ScDiffusion(adata)
model.train()                                    # all stages, progress bars, sensible budget
syn = model.generate(n=1000, cell_type="CD14+ Monocyte")
syn = model.generate(conditions={"cell_type": "CD19+ B", "phase": "S"})  # extra registered key
syn = model.generate(conditions=adata.obs[["cell_type"]])  # one synthetic cell per row
traj = model.generate(n=500, interpolate={"cell_type": ("CD34+", "CD14+ Monocyte")})
model.save("pbmc_model/"); model = ScDiffusion.load("pbmc_model/", adata=adata)

sc.pp.normalize_total(syn); sc.pp.log1p(syn); sc.pp.pca(syn); sc.pp.neighbors(syn); sc.tl.umap(syn)
sc.pl.umap(syn, color="cell_type")
"""


@pytest.mark.integration
def test_spec_session_runs_verbatim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(SESSION, "spec_session", "exec"), namespace)
    syn, traj, adata = namespace["syn"], namespace["traj"], namespace["adata"]
    assert syn.n_obs == adata.n_obs
    assert list(syn.obs["cell_type"].astype(str)) == list(adata.obs["cell_type"].astype(str))
    assert "X_umap" in syn.obsm
    assert traj.n_obs == 500 and "interpolation_weight" in traj.obs
    assert (tmp_path / "pbmc_model" / "model.pt").exists()
    assert namespace["model"].is_trained_
