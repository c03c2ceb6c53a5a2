"""A real perturbation: panobinostat in glioblastoma slices of three patients.

The shared glioblastoma data (``../shared/data``, as in CI; skipped without it): patients
PW030, PW034 and PW036, each with a vehicle and a panobinostat slice; PW036's panobinostat
slice is held out of training. Counterfactuals of a patient's control cells must reach that
patient's real response, for a combination seen in training (PW034) and a held-out one
(PW036). Before joint guidance of seen combinations, analogy for unseen ones and the
start-time search, both reached a fifth of the response or less (fold-change slope 0.17 and
0.16 at start 200).
"""

import anndata as ad
import pytest
import scvi

from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import conditional_accuracy, counterfactual_scores

from ..conftest import QUIET, SHARED_DATA, TRAINING_SEED

GLIOBLASTOMA = SHARED_DATA / "glioblastoma_panobinostat.h5ad"
PATIENTS = ["PW030", "PW034", "PW036"]
HELD_OUT = "PW036"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not GLIOBLASTOMA.is_file(), reason=f"the shared glioblastoma file is not at {GLIOBLASTOMA}"
    ),
]


@pytest.fixture(scope="module")
def glioblastoma():
    adata = ad.read_h5ad(GLIOBLASTOMA)
    return adata[adata.obs["patient_id"].isin(PATIENTS).to_numpy()].copy()


def slice_of(adata, patient: str, condition: str):
    obs = adata.obs
    return adata[((obs["patient_id"] == patient) & (obs["condition"] == condition)).to_numpy()]


@pytest.fixture(scope="module")
def training_cells(glioblastoma):
    held = slice_of(glioblastoma, HELD_OUT, "panobinostat").obs_names
    return glioblastoma[~glioblastoma.obs_names.isin(held)].copy()


@pytest.fixture(scope="module")
def model(training_cells):
    scvi.settings.seed = TRAINING_SEED
    adata = training_cells.copy()
    ScDiffusion.setup_anndata(adata, condition_keys=["condition", "patient_id"])
    model = ScDiffusion(adata)
    model.train(**QUIET)
    return model


def test_counterfactuals_of_a_seen_combination_reach_the_real_response(
    model, glioblastoma, figures
):
    source = slice_of(glioblastoma, "PW034", "ctrl").copy()
    truth = slice_of(glioblastoma, "PW034", "panobinostat").copy()
    cf = model.generate(source=source, condition="panobinostat", seed=0, progress_bar=False)
    scores = counterfactual_scores(source, cf, truth)
    called_treated = conditional_accuracy(glioblastoma, cf.copy(), "condition", average="micro")
    real = conditional_accuracy(glioblastoma, truth, "condition", average="micro")
    for name in ("lfc_slope", "r2_top", "source_retrieval"):
        figures[name] = scores[name]
    figures["r2_all_over_source"] = scores["r2_all"] - scores["source_r2_all"]
    figures["condition_accuracy_ratio"] = called_treated / real
    # five training seeds: slope 0.74-0.81, r2_top 0.84-0.88
    assert 0.65 <= scores["lfc_slope"] <= 1.2, scores
    assert scores["r2_top"] >= 0.7, scores
    assert scores["r2_all"] > scores["source_r2_all"], scores
    # each counterfactual stays its own cell
    assert scores["source_retrieval"] >= 0.9, scores
    record = cf.uns["scdiffusion"]["counterfactual"]
    assert record["start_time"] in {int(t) for t in record["start_time_search"]["progress"]}
    assert called_treated >= 0.8 * real, (called_treated, real)


def test_counterfactuals_of_a_held_out_combination_take_the_change_from_other_patients(
    model, glioblastoma, training_cells, figures
):
    """PW036's control cells, treated: no treated PW036 cell was in training, so the change
    comes from the other two patients (guidance by analogy). Composing the conditions one by
    one instead (the earlier default, start 200) moved these cells a sixth of the way
    (fold-change slope 0.16) and had 16% of them called treated."""
    source = slice_of(glioblastoma, HELD_OUT, "ctrl").copy()
    truth = slice_of(glioblastoma, HELD_OUT, "panobinostat").copy()
    cf = model.generate(source=source, condition="panobinostat", seed=0, progress_bar=False)
    assert cf.uns["scdiffusion"]["guided"] == {
        "joint": 0,
        "analogy": source.n_obs,
        "compositional": 0,
    }
    scores = counterfactual_scores(source, cf, truth)
    figures["lfc_slope"], figures["source_retrieval"] = (
        scores["lfc_slope"],
        scores["source_retrieval"],
    )
    figures["r2_top_over_source"] = scores["r2_top"] - scores["source_r2_top"]
    # five training seeds: slope 0.65-0.89, r2_top above the source's by 0.03-0.09
    assert 0.5 <= scores["lfc_slope"] <= 1.2, scores
    assert scores["r2_top"] > scores["source_r2_top"], scores
    assert scores["source_retrieval"] >= 0.9, scores
    # called treated as often as the real treated cells are, and still mostly this patient
    # (a classifier that saw only PW036's control cells calls the real treated ones PW036
    # less often too)
    for key in ("condition", "patient_id"):
        generated = conditional_accuracy(training_cells, cf.copy(), key, average="micro")
        real = conditional_accuracy(training_cells, truth, key, average="micro")
        figures[f"{key}_accuracy_ratio"] = generated / real
    # five training seeds: condition 1.47-1.49, patient 0.70-0.98
    for key, share in (("condition", 0.8), ("patient_id", 0.5)):
        assert figures[f"{key}_accuracy_ratio"] >= share, figures


def test_new_cells_of_a_held_out_combination_are_called_treated_and_the_patient(
    model, glioblastoma, training_cells, figures
):
    """New treated PW036 cells, generated from scratch: by analogy from PW036's control
    combination (its patient sharpened, the drug's change taken from the other patients).
    Composing the conditions one by one (the earlier default) has 39-42% of them called
    treated (seeds 0 and 1), against 65% of the real ones; by analogy 95-96%. Both keep the
    patient alike (0.44-0.47 against the real cells' 0.73: a classifier that saw only PW036's
    control cells calls treated PW036 cells PW036 less often)."""
    truth = slice_of(glioblastoma, HELD_OUT, "panobinostat").copy()
    request = {"condition": "panobinostat", "patient_id": HELD_OUT}
    with pytest.warns(UserWarning, match="outside the training distribution"):
        cells = model.generate(n=truth.n_obs, conditions=request, seed=0, progress_bar=False)
    assert cells.uns["scdiffusion"]["guided"] == {
        "joint": 0,
        "analogy": truth.n_obs,
        "compositional": 0,
    }
    for key in ("condition", "patient_id"):
        generated = conditional_accuracy(training_cells, cells, key, average="micro")
        real = conditional_accuracy(training_cells, truth, key, average="micro")
        figures[f"{key}_accuracy_ratio"] = generated / real
    # five training seeds: condition 1.44-1.51, patient 0.46-0.86 (keeping the patient under
    # the drug's change is issue 41's work)
    for key, share in (("condition", 0.8), ("patient_id", 0.35)):
        assert figures[f"{key}_accuracy_ratio"] >= share, figures
