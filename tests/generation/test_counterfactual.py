"""Counterfactuals of real cells: ``generate(source=...)``, its conventions, its errors, the
DDIM inversion it starts from, and its scores."""

import logging
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from scvi_diffusion._constants import COUNTERFACTUAL_START_TIMES
from scvi_diffusion.conditions import ConditionSpace
from scvi_diffusion.diffusion import LinearNoiseSchedule, ddim_invert, ddim_sample
from scvi_diffusion.generation._guidance import inversion_terms
from scvi_diffusion.generation._request import counterfactual_sampler
from scvi_diffusion.generation._source_cells import SourceCells, own_conditions
from scvi_diffusion.generation._start_time import latent_progress
from scvi_diffusion.metrics import conditional_accuracy, counterfactual_scores
from scvi_diffusion.module._count_sampling import coupled_counts

from ..conftest import UNSEEN
from ..diffusion.test_diffusion import gaussian_eps
from .test_generate import check_output
from .test_integration import MIN_RELATIVE_ACCURACY, mean_log_expression

GEN = {"n_steps": 5, "progress_bar": False}


@pytest.fixture
def source(tiny_model):
    """Twenty training cells as a user would pass them: a new, unregistered AnnData."""
    cells = tiny_model.adata[:20]
    return ad.AnnData(
        cells.X.copy(),
        obs=cells.obs[["cell_type", "tissue", "batch"]].copy(),
        var=pd.DataFrame(index=cells.var_names),
    )


def snapshot(adata: ad.AnnData) -> tuple:
    return adata.obs.copy(), dict(adata.uns), adata.X.copy()


def test_one_counterfactual_per_source_cell_keeping_the_rest(tiny_model, source):
    """The requested condition changes; the cell type, the batch and the library size are the
    source cell's; one output cell per source cell, in order, named by ``source_cell``."""
    before = snapshot(source)
    cf = tiny_model.generate(source=source, tissue="marrow", seed=0, **GEN)
    check_output(tiny_model, cf, source.n_obs)
    assert list(cf.obs["source_cell"]) == list(source.obs_names)
    token = cf.obs_names[0].rsplit("-cf-", 1)[1]
    assert re.fullmatch("[0-9a-f]{8}", token)
    assert list(cf.obs_names) == [f"{name}-cf-{token}" for name in source.obs_names]
    assert set(cf.obs["tissue"]) == {"marrow"}
    assert list(cf.obs["cell_type"]) == list(source.obs["cell_type"])
    assert list(cf.obs["batch"]) == list(source.obs["batch"])
    library, source_library = np.asarray(cf.X.sum(axis=1)).ravel(), source.X.sum(axis=1)
    assert np.corrcoef(library, np.asarray(source_library).ravel())[0, 1] > 0.9
    params = cf.uns["scdiffusion"]
    assert params["guidance"] == "classifier"
    assert params["library_size"] == "kept from the source cells"
    # the start time found by the search, which records how far each start it tried went
    search = params["counterfactual"].pop("start_time_search")
    tried = [int(start) for start in search["progress"]]
    assert tried == list(COUNTERFACTUAL_START_TIMES[: len(tried)])
    assert params["counterfactual"]["start_time"] in tried
    assert "20 source cells" in search["rule"]
    assert params["counterfactual"] == {
        "changed": ["tissue"],
        "kept": ["cell_type", "batch"],
        "start_time": params["counterfactual"]["start_time"],
        "start": "DDIM inversion with the unconditional denoiser",
        "counts": "the source cells', moved by the predicted change",
    }
    # the user's AnnData is untouched: no registration, no new columns
    obs, uns, x = before
    pd.testing.assert_frame_equal(source.obs, obs)
    assert dict(source.uns) == uns and "_scvi_uuid" not in source.uns
    assert (source.X != x).nnz == 0


def test_counterfactuals_follow_generate_conventions(tiny_model, source, tmp_path):
    """Seeded, per-cell values, normalised output, streaming, training cells as a view."""
    again = [tiny_model.generate(source=source, tissue="marrow", seed=1, **GEN) for _ in range(2)]
    assert (again[0].X != again[1].X).nnz == 0
    per_cell = ["blood", "marrow"] * 10
    cf = tiny_model.generate(source=source, conditions={"tissue": per_cell}, seed=0, **GEN)
    assert list(cf.obs["tissue"]) == per_cell
    normalized = tiny_model.generate(
        source=source, tissue="marrow", output="normalized", seed=0, **GEN
    )
    np.testing.assert_allclose(normalized.X.sum(axis=1), 1e4, rtol=1e-3)
    assert "counts" not in normalized.uns["scdiffusion"]["counterfactual"]
    streamed = tiny_model.generate(
        source=source, tissue="marrow", seed=1, out=tmp_path / "cf.h5ad", **GEN
    )
    assert streamed.n_obs == source.n_obs
    assert list(streamed.obs["source_cell"]) == list(source.obs_names)
    np.testing.assert_array_equal(streamed.X[:].toarray(), again[0].X.toarray())
    # every call, streamed or not, names its cells after the source cells, with its own token
    for cells in (*again, streamed):
        token = cells.obs_names[0].rsplit("-cf-", 1)[1]
        assert list(cells.obs_names) == [f"{name}-cf-{token}" for name in source.obs_names]
    assert len({cells.obs_names[0] for cells in (*again, streamed)}) == 3
    assert ad.concat([*again, streamed.to_memory()]).obs_names.is_unique
    # the training AnnData itself (registered), as a view
    view = tiny_model.adata[:5]
    cf = tiny_model.generate(source=view, tissue="blood", seed=0, **GEN)
    assert list(cf.obs["source_cell"]) == list(view.obs_names)


def test_no_change_regenerates_under_the_own_conditions(tiny_model, source):
    """Nothing requested: each cell's counts come back close to its own (they are coupled to
    them); drawn afresh from the decoder, they are only as close as the model's cells."""
    cf = tiny_model.generate(source=source, seed=0, **GEN)
    assert list(cf.obs["tissue"]) == list(source.obs["tissue"])
    assert cf.uns["scdiffusion"]["counterfactual"]["changed"] == []
    drawn = tiny_model.generate(source=source, seed=0, keep_source_counts=False, **GEN)
    assert drawn.uns["scdiffusion"]["counterfactual"]["counts"] == "drawn from the decoder"
    coupled, fresh = (
        counterfactual_scores(source, cells, source)["own_source_correlation"]
        for cells in (cf, drawn)
    )
    assert coupled > 0.9 > fresh, (coupled, fresh)


def test_counterfactuals_leave_the_model_untouched_and_quiet(tiny_model, source, caplog):
    """No message besides the progress bar, and no registration kept for the source cells."""
    store = tiny_model._per_instance_manager_store[tiny_model.id]
    n_registered = len(store)
    with caplog.at_level(logging.INFO):
        tiny_model.generate(source=source, tissue="marrow", seed=0, **GEN)
    assert not [r for r in caplog.records if r.name.startswith("scvi")], caplog.text
    assert len(store) == n_registered


def test_classifier_free_counterfactuals_invert_under_the_own_conditions(two_factor_model):
    """Classifier-free guidance: the inversion is guided by each cell's own conditions, and
    with nothing changed, the cells come back close to themselves."""
    train = two_factor_model.adata
    source = train[(train.obs["tissue"] == "control").to_numpy()][:40]
    cf = two_factor_model.generate(source=source, seed=0, output="normalized", progress_bar=False)
    assert cf.uns["scdiffusion"]["guidance"] == "classifier_free"
    scores = counterfactual_scores(source, cf, source)
    # chance is 1/40; the autoencoder alone, without diffusion, is at about 0.5
    assert scores["source_retrieval"] >= 0.3, scores
    assert scores["own_source_correlation"] > scores["other_source_correlation"] + 0.15, scores


@pytest.mark.integration
def test_counterfactuals_reach_the_held_out_combination(
    two_factor_model, two_factor_split, figures
):
    """Control B cells made stimulated (a combination held out of training) against the real
    stimulated B cells, and each against its own truth (the same cell, its program x4).

    The default takes the change from the other cell types, where stimulation was seen
    (guidance by analogy), and extrapolates it at the default scale (1.5), at the start time
    its search finds: the program is reached, and overshot, since the real B cells show it
    slightly less than the other types do and the model's own stimulated cells exaggerate it
    (docs/benchmarks.md, "Real perturbations"). The plain analogy (scale 1) at a low start
    meets the earlier targets of this known answer.
    """
    train, truth = two_factor_split
    is_b = train.obs["cell_type"] == UNSEEN["cell_type"]
    source = train[is_b & (train.obs["tissue"] == "control")].copy()
    program = train.var["program_gene"].to_numpy()
    expected = source.X.toarray()
    expected[:, program] *= train.uns["two_factor"]["factor"]
    cell_truth = ad.AnnData(expected, var=source.var)
    true_lfc = mean_log_expression(truth, train.var_names) - mean_log_expression(
        source, train.var_names
    )
    with pytest.warns(UserWarning, match="outside the training distribution"):
        scratch = two_factor_model.generate(
            n=source.n_obs, conditions=UNSEEN, seed=0, progress_bar=False
        )
    scratch_scores = counterfactual_scores(source, scratch, truth)

    def counterfactuals(**kwargs):
        return two_factor_model.generate(
            source=source, tissue=UNSEEN["tissue"], seed=0, progress_bar=False, **kwargs
        )

    def measured(cf, run: str) -> tuple[dict, dict]:
        """The run's scores, and its figures (prefixed with ``run``) in ``figures``."""
        scores = counterfactual_scores(source, cf, truth)
        per_cell = counterfactual_scores(source, cf, truth, cell_truth)
        lfc = mean_log_expression(cf, train.var_names) - mean_log_expression(
            source, train.var_names
        )
        figures[f"{run}_program_ratio"] = lfc[program].mean() / true_lfc[program].mean()
        # other genes, against what two sets of real cells differ by (0.18)
        figures[f"{run}_other_genes"] = (
            np.abs(lfc[~program]).mean() / np.abs(true_lfc[~program]).mean()
        )
        for key in UNSEEN:
            generated = conditional_accuracy(train, cf, key, average="micro")
            real = conditional_accuracy(train, truth, key, average="micro")
            figures[f"{run}_{key}_accuracy_ratio"] = generated / real
        for r2 in ("r2_all", "r2_top"):
            figures[f"{run}_{r2}_over_source"] = scores[r2] - scores[f"source_{r2}"]
            figures[f"{run}_{r2}_over_scratch"] = scores[r2] - scratch_scores[r2]
        figures[f"{run}_truth_margin"] = (
            per_cell["own_truth_correlation"] - per_cell["other_truth_correlation"]
        )
        figures[f"{run}_truth_retrieval"] = per_cell["truth_retrieval"]
        return scores, per_cell

    def check(cf, scores, per_cell, run, program_range, other_genes, beats_baselines):
        assert cf.uns["scdiffusion"]["guided"] == {
            "joint": 0,
            "analogy": source.n_obs,
            "compositional": 0,
        }
        ratio = figures[f"{run}_program_ratio"]
        assert program_range[0] <= ratio <= program_range[1], ratio
        assert figures[f"{run}_other_genes"] <= other_genes, figures
        for key in UNSEEN:
            assert figures[f"{run}_{key}_accuracy_ratio"] >= MIN_RELATIVE_ACCURACY[key], figures
        if beats_baselines:
            for r2 in ("r2_all", "r2_top"):
                assert scores[r2] > max(scores[f"source_{r2}"], scratch_scores[r2]), r2
        # each cell kept: its own truth is far closer than the others' (chance: 1 / 39)
        assert per_cell["own_truth_correlation"] > per_cell["other_truth_correlation"] + 0.3
        assert per_cell["truth_retrieval"] >= 0.9, per_cell

    # every run measured first, so that its figures are recorded whichever check fails
    default = counterfactuals()
    plain = counterfactuals(start_time=200, guidance_scale={"tissue": 1.0})
    # counts drawn afresh keep only what the latent holds of each cell: still far above chance
    drawn = counterfactuals(output="normalized")
    drawn_cell = counterfactual_scores(source, drawn, truth, cell_truth)
    figures["drawn_truth_margin"] = (
        drawn_cell["own_truth_correlation"] - drawn_cell["other_truth_correlation"]
    )
    figures["drawn_truth_retrieval"] = drawn_cell["truth_retrieval"]
    runs = {run: (cf, *measured(cf, run)) for run, cf in (("default", default), ("plain", plain))}
    # the default's overshoot leaves its top genes' R² about the source's (five training seeds:
    # -0.02 to +0.19 above it), so only the plain analogy is held to beat the baselines (its
    # program 0.85-1.11 of the real change, its top genes' R² 0.31-0.40 above the source's)
    check(*runs["default"], "default", (0.8, 2.5), other_genes=1.3, beats_baselines=False)
    check(*runs["plain"], "plain", (0.7, 1.3), other_genes=0.7, beats_baselines=True)
    assert drawn_cell["own_truth_correlation"] > drawn_cell["other_truth_correlation"] + 0.05
    assert drawn_cell["truth_retrieval"] >= 0.1, drawn_cell


def bad_source(tiny_model, source, change: str) -> ad.AnnData:
    cells = source.copy()
    if change == "genes":
        return cells[:, 1:].copy()
    if change == "empty":
        return cells[:0].copy()
    if change == "kept value":
        cells.obs["cell_type"] = cells.obs["cell_type"].cat.add_categories("alien")
        cells.obs.iloc[3, cells.obs.columns.get_loc("cell_type")] = "alien"
        return cells
    if change == "kept column":
        del cells.obs["cell_type"]
        return cells
    if change == "batch":
        cells.obs["batch"] = "b9"
        return cells
    if change == "not counts":
        cells.X = cells.X * 0.5
        return cells
    raise AssertionError(change)


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "message"),
    [
        ("genes", {}, ValueError, "genes differ"),
        ("empty", {}, ValueError, "no cells"),
        ("kept value", {}, ValueError, r"1 source cell\(s\).*'cell_type'.*does not know.*alien"),
        ("kept column", {}, ValueError, "no obs column 'cell_type'"),
        ("batch", {}, ValueError, r"batch 'batch' values the model does not know: \['b9'\]"),
        ("not counts", {}, ValueError, "integer"),
        (None, {"tissue": "lung"}, ValueError, r"Unknown value\(s\) \['lung'\].*'tissue'"),
        (None, {"tissue": ["marrow"] * 3}, ValueError, "The 20 source cells do not match"),
        (None, {"n": 5}, ValueError, "one cell per source cell"),
        (None, {"interpolate": {"tissue": ("blood", "marrow")}}, ValueError, "do not go"),
        (None, {"start_time": 1000}, ValueError, r"\[1, 999\]"),
        (None, {"keep_source_counts": "yes"}, TypeError, "keep_source_counts"),
    ],
)
def test_bad_counterfactual_arguments(tiny_model, source, change, kwargs, error, message):
    cells = source if change is None else bad_source(tiny_model, source, change)
    kwargs = {"tissue": "marrow", **kwargs}
    with pytest.raises(error, match=message):
        tiny_model.generate(source=cells, seed=0, **GEN, **kwargs)


def test_an_unregistered_column_is_changed_with_a_classifier_on_demand(tiny_model):
    cells = tiny_model.adata[:10]
    cf = tiny_model.generate(source=cells, conditions={"phase": "S"}, seed=0, **GEN)
    assert set(cf.obs["phase"]) == {"S"}
    assert list(cf.obs["tissue"]) == list(cells.obs["tissue"])
    assert cf.uns["scdiffusion"]["counterfactual"]["changed"] == ["phase"]


def test_inversion_terms_follow_the_denoiser_order_with_unknown_cells_left_out():
    """One term per denoiser condition, in order, even where a cell's own value is unknown
    (its row is zero: that condition is left out for that cell only)."""
    categories = {"cell_type": ["B", "T"], "tissue": ["blood", "gut"]}
    own = pd.DataFrame({"cell_type": pd.Categorical(["T", None], categories=["B", "T"])})
    kept = pd.DataFrame({"tissue": pd.Categorical(["gut", "blood"], categories=["blood", "gut"])})
    cells = SourceCells(pd.Index(["a", "b"]), None, kept, own, None)
    assignment = kept.assign(cell_type=pd.Categorical(["B", "B"], categories=["B", "T"]))
    space = ConditionSpace({k: pd.Index(v) for k, v in categories.items()}, {}, {})
    terms = inversion_terms(list(categories), own_conditions(cells, assignment), space)
    assert [t.key for t in terms] == ["cell_type", "tissue"]
    np.testing.assert_array_equal(terms[0].weights, [[0, 1], [0, 0]])
    np.testing.assert_array_equal(terms[1].weights, [[0, 1], [1, 0]])
    assert {t.scale for t in terms} == {1.0}


def test_a_classifier_free_source_without_its_first_condition(two_factor_model):
    """Cells without a cell type column, given one: classifier-free inversion leaves the cell
    type out and keeps the tissue term on its own label."""
    train = two_factor_model.adata
    cells = train[:15].copy()
    del cells.obs["cell_type"]
    cf = two_factor_model.generate(source=cells, cell_type="CD19+ B", seed=0, progress_bar=False)
    assert set(cf.obs["cell_type"]) == {"CD19+ B"}
    assert list(cf.obs["tissue"]) == list(cells.obs["tissue"])


def test_the_paper_setup_inverts_with_a_deterministic_sampler():
    assert counterfactual_sampler("mlp") == "ddim"  # its default, the DDPM, adds fresh noise
    assert counterfactual_sampler("scvi") is None


def test_source_must_be_an_anndata(tiny_model):
    with pytest.raises(TypeError, match="AnnData of real cells"):
        tiny_model.generate(source=np.zeros((3, 3)), tissue="marrow")


def test_a_changed_condition_needs_no_column_in_the_source(tiny_model, source):
    """A new sample without the column to change: its inversion simply ignores it."""
    cells = source.copy()
    del cells.obs["tissue"]
    cf = tiny_model.generate(source=cells, tissue="marrow", seed=0, **GEN)
    assert set(cf.obs["tissue"]) == {"marrow"}


def test_ddim_inversion_round_trips():
    """Inverting data up the DDIM path and sampling back down returns it, up to an error
    that shrinks with the number of steps."""
    schedule = LinearNoiseSchedule()
    eps = gaussian_eps(schedule, 1.5, 0.5)
    x0 = 1.5 + 0.5 * torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="ascending"):
        ddim_invert(eps, schedule, x0, schedule.sampling_timesteps(10, start_time=600))
    errors = []
    for n_steps in (50, 200):
        steps = schedule.sampling_timesteps(n_steps, start_time=600)
        inverted = ddim_invert(eps, schedule, x0, steps[::-1])
        back = ddim_sample(eps, schedule, inverted, steps)
        errors.append((back - x0).abs().mean().item())
        assert errors[-1] < 0.05 * (inverted - x0).abs().mean().item()
    assert errors[1] < errors[0] / 2, errors


def test_coupled_counts_keep_unchanged_genes_and_reach_the_new_means():
    """Thinning and added Poisson counts: Poisson counts with the old means become Poisson
    counts with the new ones, a gene that does not change keeps its counts exactly, and a
    falling (rising) gene never gains (loses) counts."""
    torch.manual_seed(0)
    n, library = 20_000, 1000.0
    before = torch.tensor([[0.5, 0.3, 0.2]]).expand(n, 3)
    after = torch.tensor([[0.5, 0.1, 0.4]]).expand(n, 3)
    observed = torch.poisson(library * before)
    counts = coupled_counts(observed, before, after, torch.full((n,), library))
    assert torch.equal(counts[:, 0], observed[:, 0])
    assert (counts[:, 1] <= observed[:, 1]).all() and (counts[:, 2] >= observed[:, 2]).all()
    expected = library * after[0]
    torch.testing.assert_close(counts.mean(0), expected, rtol=0.01, atol=0)
    torch.testing.assert_close(counts.var(0), expected, rtol=0.05, atol=0)


def test_counterfactual_scores_of_known_changes():
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, size=(30, 40)).astype(np.float32)
    source = ad.AnnData(counts)
    changed = counts.copy()
    changed[:, :5] *= 4
    truth = ad.AnnData(changed[rng.permutation(30)])
    perfect = counterfactual_scores(source, ad.AnnData(changed), truth, ad.AnnData(changed))
    assert perfect["own_truth_correlation"] == pytest.approx(1.0)
    assert perfect["truth_retrieval"] == perfect["source_retrieval"] == 1.0
    assert perfect["r2_all"] == pytest.approx(1.0)
    assert perfect["lfc_slope"] == pytest.approx(1.0)
    shuffled = counterfactual_scores(source, ad.AnnData(changed[::-1].copy()), truth)
    assert shuffled["r2_all"] == pytest.approx(1.0)
    assert shuffled["source_retrieval"] < 0.1
    assert perfect["source_r2_top"] < 0.5 < perfect["r2_top"]
    with pytest.raises(ValueError, match="one counterfactual per source cell"):
        counterfactual_scores(source, ad.AnnData(changed[:3]), truth)


def test_the_start_time_search_probes_some_cells_with_their_own_requests(
    two_factor_model, monkeypatch
):
    """On more source cells than the probe takes, the search runs on some of the planned
    cells, each with its own request; it is deterministic under the seed, and the chosen
    start is recorded."""
    import scvi_diffusion.generation._start_time as start_time

    monkeypatch.setattr(start_time, "START_TIME_PROBE_CELLS", 7)
    source = two_factor_model.adata[:20].copy()
    per_cell = ["stimulated", "control"] * 10
    runs = [
        two_factor_model.generate(source=source, conditions=request, seed=3, **GEN)
        for request in (
            {"tissue": per_cell},
            {"tissue": per_cell},
            pd.DataFrame({"tissue": per_cell}, index=source.obs_names),
        )
    ]
    assert list(runs[0].obs["tissue"]) == per_cell
    records = [run.uns["scdiffusion"]["counterfactual"] for run in runs]
    assert records[0] == records[1] == records[2]
    assert "(7 source cells)" in records[0]["start_time_search"]["rule"]
    assert records[0]["start_time"] in {
        int(t) for t in records[0]["start_time_search"]["progress"]
    }
    assert (runs[0].X != runs[1].X).nnz == 0


def test_latent_progress_measures_the_move_along_the_change_between_new_cells():
    source = np.zeros((4, 2))
    moved = np.tile([[1.0, 5.0]], (4, 1))  # across the change does not count
    target = np.tile([[3.0, 0.0]], (4, 1))
    assert latent_progress(source, moved, target) == pytest.approx(1 / 3)
    # new cells of the own conditions sit at 1: the change is 2 long, of which 1 is moved
    start = np.tile([[1.0, 0.0]], (4, 1))
    assert latent_progress(source, moved, target, start) == pytest.approx(0.5)
    assert latent_progress(source, moved, start, start) == 1.0  # no change: reached
