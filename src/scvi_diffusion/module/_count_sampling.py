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


def coupled_counts(
    observed: torch.Tensor, before: torch.Tensor, after: torch.Tensor, library: torch.Tensor
) -> torch.Tensor:
    """Counts under new expected fractions that keep the noise of observed counts.

    For a gene whose expected count falls from ``library * before`` to ``library * after``,
    each observed count is kept with probability ``after / before`` (binomial thinning); for
    one whose expected count rises, Poisson counts with the difference as mean are added. If
    the observed counts are Poisson with mean ``library * before``, the result is Poisson with
    mean ``library * after``: a draw of the new expression that shares the observed cell's
    noise (the counterfactual of a structural causal model) instead of a fresh one, so genes
    that do not change keep their observed counts.

    Parameters
    ----------
    observed
        Observed counts, ``(n_cells, n_genes)``.
    before, after
        Expected expression fractions (rows summing to 1) under the observed and the new
        conditions.
    library
        Library size of every cell, ``(n_cells,)``.

    Returns
    -------
    torch.Tensor
        The counts under ``after``.
    """
    keep = (after / before.clamp_min(torch.finfo(before.dtype).tiny)).clamp(max=1.0)
    kept = torch.binomial(observed, keep)
    added = torch.poisson(library.unsqueeze(-1) * (after - before).clamp_min(0.0))
    return kept + added
