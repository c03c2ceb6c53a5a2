"""The latent stages' step budgets and the sampler that serves them."""

import pytest
import torch

from scvi_diffusion._constants import LATENT_BATCH_SIZES
from scvi_diffusion.train._latent_data import (
    LOSS_CURVE_POINTS,
    ShuffledPassesSampler,
    StepBudget,
    latent_step_budget,
    stage_step_budget,
    steps_per_pass,
)


def default_steps(n_cells: int, n_processes: int = 1, batch_sizes=LATENT_BATCH_SIZES):
    """The denoiser's and the classifiers' default steps on ``n_cells``."""
    return tuple(
        stage_step_budget(stage, None, None, n_cells, batch_sizes[stage], n_processes).steps
        for stage in ("diffusion", "classifier")
    )


def test_a_pass_has_fewer_steps_with_more_processes():
    assert steps_per_pass(10_000, 256) == 40
    assert steps_per_pass(10_000, 256, n_processes=2) == 20
    assert steps_per_pass(100, 256) == 1


@pytest.mark.parametrize("n_processes", [1, 2, 4])
def test_default_budgets_are_steps_whatever_the_processes(n_processes):
    assert default_steps(10_000, n_processes) == (2_000, 3_000)


def test_default_budgets_draw_the_same_cells_in_smaller_minibatches():
    # the denoiser draws 4,000 x 256 cells: in 2,000 minibatches of 512, in 4,000 of 256
    assert default_steps(10_000, batch_sizes={"diffusion": 256, "classifier": 256}) == (
        4_000,
        3_000,
    )
    # 400 cells fill a minibatch of 400: 2,560 steps draw as many
    assert default_steps(400)[0] == 2_560
    # at most 4,000 steps, however few the cells
    assert default_steps(100)[0] == 4_000


def test_tiny_data_caps_the_passes():
    # 100 cells: one step per pass; the classifiers see them at most 500 times
    assert default_steps(100) == (4_000, 500)


def test_epochs_are_passes_over_the_cells():
    assert latent_step_budget(None, 5, 3, None, 12_000, 10_000).steps == 15
    # with two processes a pass has half the steps (of twice the cells)
    per_pass = steps_per_pass(10_000, 256, n_processes=2)
    assert latent_step_budget(None, 5, per_pass, None, 12_000, 10_000).steps == 100


def test_max_epochs_caps_steps_and_epochs():
    assert latent_step_budget(None, None, 3, 2, 12_000, 10_000).steps == 6
    assert latent_step_budget(100, None, 3, 2, 12_000, 10_000).steps == 6
    assert latent_step_budget(4, None, 3, 2, 12_000, 10_000).steps == 4
    assert latent_step_budget(None, 9, 3, 2, 12_000, 10_000).steps == 6


def test_budget_layout():
    budget = StepBudget.for_steps(12_000, 3)
    assert budget.epochs == LOSS_CURVE_POINTS
    assert budget.steps_per_epoch * budget.epochs == 12_000
    # at least one pass per epoch: 6 steps of 2 per pass are 3 epochs
    assert StepBudget.for_steps(6, 2) == StepBudget(steps=6, steps_per_epoch=2)
    assert StepBudget.for_steps(7, 2).epochs == 4
    # fewer steps than a pass: a single short epoch
    assert StepBudget.for_steps(2, 40) == StepBudget(steps=2, steps_per_epoch=2)


def _draws(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return torch.stack(list(sampler))


def test_sampler_draws_full_minibatches_from_shuffled_passes():
    sampler = ShuffledPassesSampler(n_cells=10, batch_size=4, n_batches=5, seed=3)
    draws = _draws(sampler)
    assert len(sampler) == 5
    assert draws.shape == (5, 4)
    # 20 draws are two whole passes over the 10 cells
    flat = draws.flatten()
    assert sorted(flat[:10].tolist()) == list(range(10))
    assert sorted(flat[10:].tolist()) == list(range(10))


def test_sampler_is_seeded_by_seed_epoch_and_rank():
    def make(seed=3, rank=0):
        return ShuffledPassesSampler(100, 8, 4, seed=seed, num_replicas=2, rank=rank)

    assert torch.equal(_draws(make()), _draws(make()))
    assert not torch.equal(_draws(make()), _draws(make(), epoch=1))
    assert not torch.equal(_draws(make()), _draws(make(seed=4)))
    # each data parallel process draws its own minibatches
    assert not torch.equal(_draws(make(rank=0)), _draws(make(rank=1)))


def test_sampler_batch_is_at_most_the_cells():
    sampler = ShuffledPassesSampler(n_cells=3, batch_size=256, n_batches=2, seed=0)
    draws = _draws(sampler)
    assert draws.shape == (2, 3)
    assert all(sorted(row.tolist()) == [0, 1, 2] for row in draws)
