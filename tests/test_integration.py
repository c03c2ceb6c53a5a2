"""On the bundled PBMC data: fidelity against held-out cells, and conditioning."""

import pandas as pd
import pytest

from scvi_diffusion.metrics import (
    conditional_accuracy,
    evaluate,
    matched_sample,
    mean_expression_correlation,
)


@pytest.mark.integration
def test_held_out_fidelity_meets_the_targets(trained_model, pbmc_split):
    train, test = pbmc_split
    syn = trained_model.generate(conditions=test.obs[["cell_type"]], seed=0, progress_bar=False)
    reference = matched_sample(train, test, "cell_type", random_state=0)
    frame = evaluate(test, syn, condition_key="cell_type", reference=reference, random_state=0)
    overall = frame.loc["all"]
    ours, floor = overall["synthetic"], overall["floor"]
    assert abs(ours["knn_auc"] - floor["knn_auc"]) <= 0.05, overall
    assert ours["conditional_accuracy"] >= 0.9 * floor["conditional_accuracy"], overall
    assert ours["mean_spearman"] >= 0.95, overall
    # real training cells score about 0; a negative binomial decoder scored 0.007 here
    assert ours["mmd"] <= 0.004, overall


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
