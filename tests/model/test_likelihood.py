"""The decoder's count likelihood: chosen from the data, at the observed depth, and realistic.

The realism check trains on the shared pancreatic acinar cells (``../shared/data``, as in CI;
skipped without it): full-length Smart-seq2 read counts, where a Poisson decoder gives a
tenth of the real zeros and a negative binomial half of the excess, and only a zero-inflated
negative binomial gets each gene's zeros and variance near the real floor.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from scipy import sparse
from scvi.distributions import ZeroInflatedNegativeBinomial

from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import evaluate, matched_sample, stratified_split
from scvi_diffusion.model._likelihood import (
    EXCESS_ZEROS_FOR_ZINB,
    choose_gene_likelihood,
    excess_zeros,
)
from scvi_diffusion.module._module import _at_library_size

from ..conftest import QUIET, SHARED_DATA, TRAINING_SEED

ACINAR = SHARED_DATA / "acinar_donor_age_smartseq2.h5ad"


def _states(n_cells=600, n_genes=300, seed=0, depth=2000.0):
    """Poisson counts of three cell states with library sizes varying fivefold."""
    rng = np.random.default_rng(seed)
    profiles = rng.dirichlet(np.full(n_genes, 0.3), size=3)
    state = rng.integers(0, 3, n_cells)
    library = depth * rng.uniform(0.5, 2.5, n_cells)
    return rng.poisson(profiles[state] * library[:, None]).astype(np.float32)


def test_poisson_counts_show_no_excess_zeros():
    counts = _states()
    assert abs(excess_zeros(counts)) < 0.02
    assert abs(excess_zeros(sparse.csr_matrix(counts))) < 0.02
    choice = choose_gene_likelihood(counts)
    assert choice["gene_likelihood"] == "poisson"
    assert str(EXCESS_ZEROS_FOR_ZINB) in choice["rule"]


def test_dropouts_show_as_excess_zeros():
    counts = _states()
    # zero inflation: 70% of the values lost at random (zeroing a value, unlike thinning its
    # counts, is not Poisson); 50% gives 0.21
    dropped = np.random.default_rng(1).random(counts.shape) < 0.7
    counts[dropped] = 0
    assert excess_zeros(counts) > 0.25
    assert choose_gene_likelihood(counts)["gene_likelihood"] == "zinb"


def test_excess_zeros_subsamples_large_data_and_skips_empty_cells():
    counts = np.vstack([_states(n_cells=6000), np.zeros((5, 300), np.float32)])
    assert abs(excess_zeros(counts)) < 0.02
    assert np.isnan(excess_zeros(_states(n_cells=20)))
    too_few = choose_gene_likelihood(_states(n_cells=20))
    assert too_few["gene_likelihood"] == "poisson" and too_few["excess_zeros"] is None


def test_zinb_draws_keep_the_library_size():
    torch.manual_seed(0)
    scale = torch.softmax(torch.randn(4, 50), -1)
    library = torch.tensor([[1e4], [2e4], [5e3], [1e5]])
    zinb = ZeroInflatedNegativeBinomial(
        mu=scale * library, theta=torch.full((50,), 2.0), zi_logits=torch.randn(4, 50), scale=scale
    )
    assert (zinb.mean.sum(-1) < 0.9 * library.squeeze(-1)).all()
    at_depth, fractions = _at_library_size(zinb)
    torch.testing.assert_close(at_depth.mean.sum(-1), library.squeeze(-1))
    torch.testing.assert_close(fractions.sum(-1), torch.ones(4))
    torch.testing.assert_close(at_depth.zi_probs, zinb.zi_probs)
    # each gene keeps its share of the expected counts
    torch.testing.assert_close(fractions, zinb.mean / zinb.mean.sum(-1, keepdim=True))


def test_gene_likelihood_is_checked_and_recorded(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    with pytest.raises(ValueError, match="gene_likelihood.*'auto'.*'zinb'"):
        ScDiffusion(pbmc, gene_likelihood="gaussian")
    explicit = ScDiffusion(pbmc, gene_likelihood="nb")
    assert explicit.gene_likelihood_choice_ is None
    assert explicit.module.autoencoder.gene_likelihood == "nb"
    model = ScDiffusion(pbmc)
    assert model.gene_likelihood_choice_["gene_likelihood"] == "poisson"
    assert model.init_params_["non_kwargs"]["gene_likelihood"] == "poisson"
    model.train(max_epochs=1, **QUIET)
    cells = model.generate(n=5, cell_type="CD14+ Monocyte", progress_bar=False)
    assert cells.uns["scdiffusion"]["gene_likelihood"] == "poisson"
    assert cells.uns["scdiffusion"]["gene_likelihood_choice"] == model.gene_likelihood_choice_


@pytest.fixture(scope="module")
def acinar_split():
    if not ACINAR.is_file():
        pytest.skip(f"the shared acinar file is not at {ACINAR}")
    adata = ad.read_h5ad(ACINAR)
    train, test = stratified_split(adata, "donor_id", test_size=0.3, random_state=0)
    return train, test, matched_sample(train, test, "donor_id", random_state=0)


@pytest.mark.integration
def test_read_counts_get_their_zeros_and_variance(acinar_split, figures):
    train, test, reference = acinar_split
    scvi.settings.seed = TRAINING_SEED
    train = train.copy()
    ScDiffusion.setup_anndata(train, cell_type_key="donor_id")
    model = ScDiffusion(train)
    assert model.gene_likelihood_choice_["gene_likelihood"] == "zinb"
    model.train(**QUIET)
    cells = model.generate(conditions=test.obs[["donor_id"]], seed=0, progress_bar=False)
    assert cells.uns["scdiffusion"]["gene_likelihood"] == "zinb"
    overall = evaluate(test, cells, "donor_id", reference=reference, n_repeats=0).loc["all"]
    synthetic, floor = overall["synthetic"], overall["floor"]
    library = pd.Series(np.asarray(cells.X.sum(axis=1)).ravel())
    training_library = np.asarray(train.X.sum(axis=1)).ravel()
    for name in ("zero_fraction_log_ratio", "variance_log_ratio", "library_size_ks", "knn_auc"):
        figures[name], figures[f"floor_{name}"] = synthetic[name], floor[name]
    figures["median_library_ratio"] = library.median() / np.median(training_library)
    # Poisson: zero-fraction ratio 2.1, variance 1.4; negative binomial 0.48 and 1.07; the
    # floor 0.06 and 0.68
    assert synthetic["zero_fraction_log_ratio"] < floor["zero_fraction_log_ratio"] + 0.05
    # five training seeds: variance 0.97-1.11, k-NN AUC 0.44-0.60 (the floor 0.42)
    assert synthetic["variance_log_ratio"] < 1.25
    # draws at the library size (without the correction: KS 0.22)
    assert synthetic["library_size_ks"] < 0.18
    assert synthetic["knn_auc"] < floor["knn_auc"] + 0.2
    assert library.median() == pytest.approx(np.median(training_library), rel=0.25)
