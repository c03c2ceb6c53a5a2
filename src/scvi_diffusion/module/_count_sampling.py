"""Drawing counts from the decoder's likelihood, fast on CPU, and handing them over as CSR."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from scipy import sparse
from torch.distributions import Distribution, Poisson

# Fixed, so the same seed gives the same counts whatever the number of threads.
POISSON_CHUNKS = 4


def sample_counts(distribution: Distribution) -> torch.Tensor:
    """One draw from ``distribution``; Poisson draws on CPU run in parallel threads.

    torch draws Poisson variables on one thread and holds its generator's lock, so on CPU,
    where the draws cost as much as the whole sampler, the rows are split into
    ``POISSON_CHUNKS`` blocks, each with its own generator seeded from torch's global one.
    """
    if not isinstance(distribution, Poisson) or distribution.rate.device.type != "cpu":
        return distribution.sample()
    rate = distribution.rate
    seeds = torch.randint(0, 2**62, (POISSON_CHUNKS,)).tolist()
    blocks = rate.chunk(POISSON_CHUNKS)

    def draw(i: int) -> torch.Tensor:
        return torch.poisson(blocks[i], generator=torch.Generator().manual_seed(seeds[i]))

    n_threads = min(len(blocks), torch.get_num_threads())
    if n_threads <= 1:
        return torch.cat([draw(i) for i in range(len(blocks))])
    with ThreadPoolExecutor(n_threads) as pool:
        return torch.cat(list(pool.map(draw, range(len(blocks)))))


def to_csr(values: torch.Tensor) -> sparse.csr_matrix:
    """float32 CSR matrix of a dense tensor, built on its device: only non-zeros are copied."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = values.float().to_sparse_csr()
    # int32 indices, as scipy and anndata use for matrices of this size: half the memory
    index_dtype = torch.int32 if csr.values().numel() < 2**31 else torch.int64
    return sparse.csr_matrix(
        (
            csr.values().cpu().numpy(),
            csr.col_indices().to(index_dtype).cpu().numpy(),
            csr.crow_indices().to(index_dtype).cpu().numpy(),
        ),
        shape=tuple(values.shape),
    )
