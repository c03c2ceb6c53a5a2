"""On the bundled PBMC data: conditioned cells are recognised by a classifier of real cells."""

import pandas as pd
import pytest

from scvi_diffusion.metrics import conditional_accuracy, mean_expression_correlation


@pytest.mark.integration
def test_generated_cells_have_the_requested_type(trained_model):
    adata = trained_model.adata
    types = list(adata.obs["cell_type"].cat.categories)
    conditions = pd.DataFrame({"cell_type": pd.Categorical(sorted(types * 100), categories=types)})
    syn = trained_model.generate(conditions=conditions, seed=0, progress_bar=False)
    accuracy = conditional_accuracy(adata, syn, "cell_type")
    assert accuracy >= 0.7, accuracy


@pytest.mark.integration
def test_same_composition_matches_mean_expression(trained_model):
    adata = trained_model.adata
    syn = trained_model.generate(conditions=adata.obs[["cell_type"]], seed=0, progress_bar=False)
    correlation = mean_expression_correlation(adata, syn)
    assert correlation["spearman"] >= 0.95, correlation
    assert correlation["pearson"] >= 0.95, correlation


@pytest.mark.integration
def test_guidance_moves_cells_toward_the_requested_type(trained_model):
    adata = trained_model.adata
    accuracies = []
    for scale in (0.0, 4.0):
        syn = trained_model.generate(
            n=300, cell_type="CD14+ Monocyte", guidance_scale=scale, seed=0, progress_bar=False
        )
        accuracies.append(conditional_accuracy(adata, syn, "cell_type", average="micro"))
    assert accuracies[1] > accuracies[0] + 0.2, accuracies
    assert accuracies[1] >= 0.8, accuracies
