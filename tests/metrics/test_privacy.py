"""Privacy scores: known answers (copies flagged, independent draws not), groups, errors."""

import numpy as np
import pytest

import scvi_diffusion
from scvi_diffusion import metrics


def draws(seed: int, n: int = 400, dims: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dims))


def test_closest_record_share_flags_copies_not_independent_draws():
    train, holdout = draws(0), draws(1)
    fresh = metrics.closest_record_share(train, holdout, draws(2))
    assert fresh["share"] == pytest.approx(0.5, abs=0.06)
    assert fresh["synthetic_to_train"] == pytest.approx(fresh["holdout_to_train"], rel=0.1)
    noisy = train + np.random.default_rng(3).normal(scale=0.05, size=train.shape)
    copies = metrics.closest_record_share(train, holdout, noisy)
    assert copies["share"] == 1.0
    assert copies["synthetic_to_train"] < 0.2 * copies["holdout_to_train"]
    # with ten times more training cells, a new cell's nearest is a training cell 10/11 times
    more = metrics.closest_record_share(draws(4, n=4000), holdout, draws(2))
    assert more["expected_share"] == pytest.approx(10 / 11)
    assert more["share"] == pytest.approx(10 / 11, abs=0.04)
    # exact ties count one half
    assert metrics.closest_record_share(train, train, train[:10])["share"] == 0.5


def test_memorized_fraction_of_copies_and_draws():
    train = draws(0)
    assert metrics.memorized_fraction(train, draws(1)) < 0.02
    assert metrics.memorized_fraction(train, train[:50] + 1e-3) == 1.0
    # on a duplicated training cell both distances are 0: memorised
    duplicated = np.vstack([train, train[:1]])
    assert metrics.memorized_fraction(duplicated, train[:1]) == 1.0
    assert metrics.memorized_fraction(train, draws(1), ratio=1.0) == 1.0


def test_membership_inference_known_answers_and_groups():
    rng = np.random.default_rng(0)
    chance = metrics.membership_inference(rng.normal(size=5000), rng.normal(size=5000))
    assert chance["auc"] == pytest.approx(0.5, abs=0.02)
    assert chance["tpr_at_1pct_fpr"] < 0.03
    separated = metrics.membership_inference(rng.normal(10, 1, 300), rng.normal(0, 1, 300))
    assert separated["auc"] == 1.0 and separated["tpr_at_1pct_fpr"] == 1.0
    # donors: a small per-cell shift is plain once each donor's cells are averaged
    train_groups, holdout_groups = np.repeat(np.arange(10), 200), np.repeat(np.arange(10, 20), 200)
    train_scores, holdout_scores = rng.normal(0.5, 1, 2000), rng.normal(0, 1, 2000)
    cells = metrics.membership_inference(train_scores, holdout_scores)
    donors = metrics.membership_inference(
        train_scores, holdout_scores, train_groups, holdout_groups
    )
    assert cells["auc"] < 0.7 and donors["auc"] == 1.0
    assert (donors["n_train"], donors["n_holdout"]) == (10, 10)


def test_privacy_errors():
    with pytest.raises(ValueError, match="differ in dimensions"):
        metrics.closest_record_share(draws(0), draws(1, dims=3), draws(2))
    with pytest.raises(ValueError, match="ratio"):
        metrics.memorized_fraction(draws(0), draws(1), ratio=0)
    with pytest.raises(ValueError, match="finite"):
        metrics.membership_inference(np.array([1.0, np.nan]), np.array([0.0]))
    with pytest.raises(ValueError, match="together"):
        metrics.membership_inference(np.ones(3), np.ones(3), train_groups=np.arange(3))
    with pytest.raises(ValueError, match="on both sides"):
        metrics.membership_inference(np.ones(3), np.ones(3), np.arange(3), np.arange(3))
    with pytest.raises(ValueError, match="entries for 3 scores"):
        metrics.membership_inference(np.ones(3), np.ones(3), np.arange(2), np.arange(3, 6))


def test_privacy_scores_on_real_cells():
    adata = scvi_diffusion.data.pbmc68k()
    train, rest = metrics.stratified_split(adata, "cell_type", test_size=2 / 3, random_state=0)
    holdout, other = metrics.stratified_split(rest, "cell_type", test_size=0.5, random_state=0)
    fresh = metrics.privacy_scores(train, holdout, other)
    assert fresh["expected_closest_record_share"] == pytest.approx(0.5, abs=0.01)
    assert 0.35 < fresh["closest_record_share"] < 0.65
    assert fresh["memorized_fraction"] <= fresh["holdout_memorized_fraction"] + 0.05
    copied = metrics.privacy_scores(train, holdout, train)
    assert copied["closest_record_share"] == 1.0 and copied["memorized_fraction"] == 1.0
