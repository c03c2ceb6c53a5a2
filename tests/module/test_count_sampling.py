"""Drawing counts: parallel Poisson draws are exact, reproducible and independent of threads."""

import numpy as np
import pytest
import torch
from torch.distributions import NegativeBinomial, Poisson

from scvi_diffusion.module._count_sampling import sample_counts, to_csr


def test_poisson_draws_match_their_rates():
    rate = torch.tensor([0.05, 0.7, 3.0, 20.0]).repeat(50_000, 1)
    torch.manual_seed(0)
    counts = sample_counts(Poisson(rate))
    assert counts.shape == rate.shape
    np.testing.assert_allclose(counts.mean(0), rate[0], rtol=0.02)
    np.testing.assert_allclose(counts.var(0), rate[0], rtol=0.03)
    # the rows are split into blocks with their own generators: the blocks must differ
    first, second = counts.chunk(2)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("threads", [1, 2])
def test_poisson_draws_are_reproducible_whatever_the_threads(threads):
    rate = torch.rand(64, 30) * 4
    previous = torch.get_num_threads()
    try:
        torch.manual_seed(3)
        reference = sample_counts(Poisson(rate))
        torch.set_num_threads(threads)
        torch.manual_seed(3)
        again = sample_counts(Poisson(rate))
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(reference, again)


def test_other_likelihoods_use_their_own_sampler():
    torch.manual_seed(0)
    counts = sample_counts(NegativeBinomial(total_count=torch.full((2000, 3), 2.0), logits=0.0))
    assert counts.mean().item() == pytest.approx(2.0, rel=0.1)


def test_to_csr_matches_the_dense_tensor():
    dense = torch.poisson(torch.rand(50, 40))
    csr = to_csr(dense)
    assert csr.dtype == np.float32 and csr.indices.dtype == np.int32
    np.testing.assert_array_equal(csr.toarray(), dense.numpy())
    assert to_csr(torch.zeros(3, 4)).nnz == 0
