"""Several conditions at once: the two-factor test data, unseen combinations, and the
trajectory metric."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import trajectory_progress

from ..conftest import quiet_train

GEN = {"n_steps": 5, "progress_bar": False}
HELD_OUT = {"cell_type": "CD19+ B", "tissue": "stimulated"}


def held_out_mask(adata):
    return (adata.obs["cell_type"] == HELD_OUT["cell_type"]) & (
        adata.obs["tissue"] == HELD_OUT["tissue"]
    )


def test_two_factor_data_has_the_known_program():
    base = scvi_diffusion.data.pbmc68k()
    adata = scvi_diffusion.data.pbmc68k_two_factor(factor=4.0, n_program_genes=50, seed=0)
    assert adata.shape == base.shape
    assert list(adata.obs["tissue"].cat.categories) == ["control", "stimulated"]
    assert (adata.obs["tissue"] == "stimulated").sum() == adata.n_obs // 2
    program = adata.var["program_gene"].to_numpy()
    assert program.sum() == 50
    assert adata.uns["two_factor"]["program_genes"] == list(adata.var_names[program])
    # every other gene keeps its real counts; cell types are untouched
    np.testing.assert_array_equal(adata.X[:, ~program].toarray(), base.X[:, ~program].toarray())
    assert (adata.obs["cell_type"] == base.obs["cell_type"]).all()
    counts = adata.X[:, program].toarray()
    stimulated = (adata.obs["tissue"] == "stimulated").to_numpy()
    ratio = counts[stimulated].mean() / counts[~stimulated].mean()
    assert 3.0 < ratio < 5.0, ratio
    assert np.all(counts == np.round(counts))


def test_two_factor_data_arguments():
    with pytest.raises(ValueError, match="factor"):
        scvi_diffusion.data.pbmc68k_two_factor(factor=1.0)
    with pytest.raises(ValueError, match="n_program_genes"):
        scvi_diffusion.data.pbmc68k_two_factor(n_program_genes=10_000)
    repressed = scvi_diffusion.data.pbmc68k_two_factor(factor=0.25, seed=1)
    assert repressed.uns["two_factor"]["factor"] == 0.25


@pytest.fixture(scope="module")
def unseen_model():
    """Two factors, stimulated B cells held out; a few epochs: for API behaviour."""
    scvi.settings.seed = 0
    adata = scvi_diffusion.data.pbmc68k_two_factor()
    adata = adata[~held_out_mask(adata)].copy()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", tissue_key="tissue")
    return quiet_train(ScDiffusion(adata, n_latent=6), max_epochs=3)


def test_unseen_combination_warns_and_generates(unseen_model):
    with pytest.warns(UserWarning, match="outside the training distribution"):
        syn = unseen_model.generate(n=7, conditions=HELD_OUT, seed=0, **GEN)
    assert (syn.obs["cell_type"] == "CD19+ B").all() and (syn.obs["tissue"] == "stimulated").all()
    # seen combinations stay silent
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        unseen_model.generate(n=7, cell_type="CD19+ B", tissue="control", seed=0, **GEN)


def test_unknown_value_is_still_an_error(unseen_model):
    with pytest.raises(ValueError, match="Unknown value.*'lung'.*Valid values"):
        unseen_model.generate(n=3, cell_type="CD19+ B", tissue="lung", **GEN)


def test_unseen_combination_in_a_per_cell_table(unseen_model):
    table = pd.DataFrame(
        {"cell_type": ["CD19+ B", "CD19+ B", "CD14+ Monocyte"], "tissue": ["stimulated"] * 3}
    )
    with pytest.warns(UserWarning, match="cell_type='CD19\\+ B', tissue='stimulated'"):
        syn = unseen_model.generate(conditions=table, seed=0, **GEN)
    assert list(syn.obs["cell_type"]) == list(table["cell_type"])


def test_trajectory_progress_on_a_known_path():
    """Real source cells at low weights and real target cells at high ones: a clean trajectory."""
    adata = scvi_diffusion.data.pbmc68k()
    source = adata[adata.obs["cell_type"] == "CD34+"]
    target = adata[adata.obs["cell_type"] == "CD14+ Monocyte"][:13]
    path = ad.concat([source, target], index_unique="-")
    weights = np.r_[np.zeros(source.n_obs), np.ones(target.n_obs)]
    path.obs["interpolation_weight"] = weights
    path.obs["interpolation_source"] = "CD34+"
    path.obs["interpolation_target"] = "CD14+ Monocyte"
    progress = trajectory_progress(adata, path, "cell_type")
    assert list(progress.index) == [0.0, 1.0]
    assert progress["axis_position"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert progress["axis_position"].iloc[1] > 0.5
    assert progress["source_fraction"].iloc[0] > 0.8
    assert progress["target_fraction"].iloc[1] > 0.8
    assert progress["pseudotime"].iloc[0] < progress["pseudotime"].iloc[1]
    assert progress.attrs["source"] == "CD34+"


def test_trajectory_progress_errors():
    adata = scvi_diffusion.data.pbmc68k()
    fake = adata[:20].copy()
    with pytest.raises(ValueError, match="interpolation_weight"):
        trajectory_progress(adata, fake, "cell_type")
    fake.obs["interpolation_weight"] = 0.0
    with pytest.raises(ValueError, match="No real cell has cell_type='Neuron'"):
        trajectory_progress(adata, fake, "cell_type", source="Neuron", target="CD34+")


@pytest.fixture(scope="module")
def design_model():
    """A design without cell types: drug x patient as condition_keys, classifier-free; a few
    epochs: for API behaviour."""
    scvi.settings.seed = 0
    adata = scvi_diffusion.data.pbmc68k()
    rng = np.random.default_rng(0)
    adata.obs["drug"] = pd.Categorical(rng.choice(["vehicle", "drug"], size=adata.n_obs))
    adata.obs["patient"] = pd.Categorical(rng.choice(["p1", "p2", "p3"], size=adata.n_obs))
    ScDiffusion.setup_anndata(adata, condition_keys=["drug", "patient"])
    return quiet_train(ScDiffusion(adata, n_latent=6), max_epochs=3)


def test_registered_conditions_as_keywords(design_model):
    by_keyword = design_model.generate(n=6, drug="drug", patient="p2", seed=0, **GEN)
    by_dict = design_model.generate(
        n=6, conditions={"drug": "drug", "patient": "p2"}, seed=0, **GEN
    )
    assert (by_keyword.obs["drug"] == "drug").all() and (by_keyword.obs["patient"] == "p2").all()
    np.testing.assert_array_equal(by_keyword.X.toarray(), by_dict.X.toarray())
    # one value per cell, and beside a conditions table
    per_cell = design_model.generate(
        conditions=pd.DataFrame({"patient": ["p1", "p3", "p3"]}), drug="vehicle", **GEN
    )
    assert per_cell.obs["patient"].tolist() == ["p1", "p3", "p3"]
    assert (per_cell.obs["drug"] == "vehicle").all()


def test_keyword_conditions_for_counterfactuals(design_model):
    vehicle = design_model.adata[design_model.adata.obs["drug"] == "vehicle"][:5]
    counterfactuals = design_model.generate(source=vehicle, drug="drug", seed=0, **GEN)
    assert (counterfactuals.obs["drug"] == "drug").all()
    # the patient is kept from each source cell
    assert counterfactuals.obs["patient"].tolist() == vehicle.obs["patient"].tolist()


def test_unknown_keyword_names_the_registered_conditions(design_model):
    with pytest.raises(TypeError, match=r"'dose'.*\['drug', 'patient'\].*conditions="):
        design_model.generate(n=3, dose="high", **GEN)
    # an obs column that was not registered goes through `conditions`
    with pytest.raises(TypeError, match=r"'phase'.*conditions=\{'phase'"):
        design_model.generate(n=3, phase="S", **GEN)
    # a misspelt parameter of generate() says so too
    with pytest.raises(TypeError, match="'n_step' \\(did you mean 'n_steps'\\?\\).*neither a"):
        design_model.generate(n=3, n_step=5)
    with pytest.raises(ValueError, match="'drug' is given twice"):
        design_model.generate(n=3, drug="drug", conditions={"drug": "vehicle"}, **GEN)
    with pytest.raises(ValueError, match="Unknown value.*'aspirin'.*Valid values"):
        design_model.generate(n=3, drug="aspirin", **GEN)
    # `cell_type=` still needs a registered cell type column
    with pytest.raises(ValueError, match="cell_type_key"):
        design_model.generate(n=3, cell_type="CD19+ B", **GEN)
