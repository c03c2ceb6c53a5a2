"""Networks of the latent diffusion: time embedding, denoiser and noisy-latent classifier."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._constants import DENOISER_MIN_WIDTH


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of integer timesteps followed by a small MLP.

    Parameters
    ----------
    dim
        Embedding size.
    max_period
        Longest period of the sinusoids.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        self.dim = dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def sinusoids(self, t: torch.Tensor) -> torch.Tensor:
        """Raw sinusoidal features of ``t``."""
        half = self.dim // 2
        freqs = torch.exp(
            -math.log(self.max_period)
            * torch.arange(half, device=t.device, dtype=torch.float32)
            / half
        )
        args = t.float().unsqueeze(-1) * freqs
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoids(t))


class ValueEmbedding(nn.Module):
    """Embedding of a standardised continuous value: low-frequency Fourier features of the value
    and the value itself, through a small MLP; a learned vector stands for "not given" (NaN).

    The frequencies are low (periods of 2 to 8 standard deviations), so the embedding varies
    smoothly between the measured values. Smoothness alone does not make the denoiser right
    there: training jitters each value toward its measured neighbours (see
    ``LatentDiffusionModule``), so the values between them are learnt, not extrapolated.

    Parameters
    ----------
    dim
        Embedding size (the time embedding's).
    """

    FREQUENCIES = (math.pi / 4, math.pi / 2, math.pi)

    def __init__(self, dim: int):
        super().__init__()
        n_features = 1 + 2 * len(self.FREQUENCIES)
        self.register_buffer(
            "frequencies", torch.tensor(self.FREQUENCIES, dtype=torch.float32), persistent=False
        )
        self.mlp = nn.Sequential(nn.Linear(n_features, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """``values``: ``(n,)`` standardised values, NaN where not given."""
        given = ~torch.isnan(values)
        v = torch.where(given, values, torch.zeros_like(values)).unsqueeze(-1)
        angles = v * self.frequencies
        features = torch.cat([v, torch.sin(angles), torch.cos(angles)], dim=-1)
        return torch.where(given.unsqueeze(-1), self.mlp(features), self.null)


def distinct_rows(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Distinct rows of integer ``keys`` (timestep and labels of each cell) and where each is.

    While sampling, every cell of a step shares its timestep (and, per guidance pass, its
    labels), so the embeddings and their projections, most of the networks' work, need only be
    computed once per distinct row. Returns ``(rows, index)`` with ``rows[index] == keys``;
    ``index`` is None when ``rows`` is a single row (it broadcasts) or when most rows are
    distinct, as in training (then ``rows`` is ``keys``).
    """
    if keys.shape[0] <= 1 or bool((keys == keys[0]).all()):
        return keys[:1], None
    # one integer per row (mixed radix), so a 1-d unique suffices: unique over rows is slow
    codes = keys[:, 0].long()
    for column in keys[:, 1:].long().T:
        codes = codes * (int(column.max()) + 1) + column
    distinct_codes, index = torch.unique(codes, return_inverse=True)
    if 2 * distinct_codes.shape[0] > keys.shape[0]:
        return keys, None
    first = torch.zeros_like(distinct_codes).scatter_reduce(
        0, index, torch.arange(keys.shape[0], device=keys.device), "amin", include_self=False
    )
    return keys[first], index


class TimeConditionedBlock(nn.Module):
    """Linear layer, plus a projection of the time embedding, then LayerNorm and SiLU.

    ``time_projection`` is SiLU then Linear. The network computes every block's projection at
    once (:func:`time_projections`) and hands each block its own.
    """

    def __init__(self, n_in: int, n_out: int, n_time: int, dropout_rate: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(n_time, n_out))
        self.norm = nn.LayerNorm(n_out)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, time_projection: torch.Tensor) -> torch.Tensor:
        """``time_projection``: this block's projection of the time embedding, one row per
        cell or one row for all."""
        h = self.linear(x) + time_projection
        return self.dropout(self.activation(self.norm(h)))


def time_projections(
    blocks: Sequence[TimeConditionedBlock],
    time_embedding: torch.Tensor,
    index: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Every block's ``time_projection`` of ``time_embedding``, for each cell.

    ``time_embedding`` has one row per cell, one row for all, or (with ``index``, the row of
    each cell) one row per distinct timestep and labels. The SiLU is applied once for all
    blocks, and the rows are gathered for the cells once for all blocks with ``index_select``
    (whose backward adds rows; the backward of ``projected[index]`` was ten times slower on a
    CPU, and once per block it cost a tenth of a training step).
    """
    activated = F.silu(time_embedding)
    projected = torch.cat([block.time_projection[-1](activated) for block in blocks], dim=1)
    if index is not None:
        projected = projected.index_select(0, index)
    return list(projected.split([block.linear.out_features for block in blocks], dim=1))


def default_hidden_dims(n_input: int, width: int | None = None) -> tuple[int, int, int]:
    """Widths of the denoiser's three levels, scaled to the latent size.

    The paper's denoiser on its 128-d latent uses widths of roughly 16, 8 and 4 times the
    input; we keep that ratio with a floor of :data:`DENOISER_MIN_WIDTH` for the small latents
    of a VAE, so the network stays expressive, and a ceiling of 1024, so large latents train
    in minutes on a CPU.
    """
    width = width if width is not None else min(1024, max(DENOISER_MIN_WIDTH, 16 * n_input))
    return (width, max(width // 2, n_input), max(width // 4, n_input))


class SkipMLPDenoiser(nn.Module):
    """The scDiffusion noise predictor: a U-shaped MLP with additive skip connections.

    Three down blocks (widths ``h0 > h1 > h2``) and two up blocks back to ``h0``; the output of
    each up block is added to the matching down block's output. The time embedding is injected
    in every block. The output head predicts the noise ``eps``.

    For classifier-free guidance the denoiser also takes one label per condition: each condition
    has a learned embedding per category plus a null embedding (index ``n_classes[k]``) that
    stands for "condition not given"; the embeddings are added to the time embedding.
    Continuous conditions (``n_values``) follow the labels as standardised values, embedded by
    :class:`ValueEmbedding` (NaN: not given) and added the same way.

    Parameters
    ----------
    n_input
        Latent size.
    hidden_dims
        Widths ``(h0, h1, h2)``; see :func:`default_hidden_dims`.
    dropout_rate
        Dropout in every block.
    n_classes
        Categories of each condition the denoiser is conditioned on (none by default: an
        unconditional denoiser, as classifier guidance uses).
    n_values
        Continuous conditions the denoiser is conditioned on.
    """

    def __init__(
        self,
        n_input: int,
        hidden_dims: Sequence[int] | None = None,
        dropout_rate: float = 0.0,
        n_classes: Sequence[int] = (),
        n_values: int = 0,
    ):
        super().__init__()
        h0, h1, h2 = (
            tuple(hidden_dims) if hidden_dims is not None else default_hidden_dims(n_input)
        )
        # a time embedding wider than 256 adds parameters to every block but no information
        n_time = min(h0, 256)
        self.time_embedding = SinusoidalTimeEmbedding(n_time)
        self.condition_embeddings = nn.ModuleList([nn.Embedding(k + 1, n_time) for k in n_classes])
        self.value_embeddings = nn.ModuleList([ValueEmbedding(n_time) for _ in range(n_values)])
        # with values the labels are floats: category codes, then values (NaN: not given)
        null = [*n_classes, *[math.nan] * n_values]
        self.register_buffer(
            "null_labels",
            torch.as_tensor(null, dtype=torch.float32 if n_values else torch.long),
            persistent=False,
        )
        self.down = nn.ModuleList(
            [
                TimeConditionedBlock(n_input, h0, n_time, dropout_rate),
                TimeConditionedBlock(h0, h1, n_time, dropout_rate),
                TimeConditionedBlock(h1, h2, n_time, dropout_rate),
            ]
        )
        self.up = nn.ModuleList(
            [
                TimeConditionedBlock(h2, h1, n_time, dropout_rate),
                TimeConditionedBlock(h1, h0, n_time, dropout_rate),
            ]
        )
        self.head = nn.Sequential(
            nn.Linear(h0, 2 * h1), nn.LayerNorm(2 * h1), nn.SiLU(), nn.Linear(2 * h1, n_input)
        )

    def time_embedding_of(self, t: torch.Tensor) -> torch.Tensor:
        """The time embedding of each of ``t``, computed once per distinct timestep.

        In training, cells of different labels share a timestep, so rows of distinct labels
        and timesteps are about as many as cells while the timesteps are an eighth of them
        (see ``CELLS_PER_TIMESTEP``): the embedding's MLP was a fifth of a training step.
        """
        times, index = distinct_rows(t.view(-1, 1))
        emb = self.time_embedding(times[:, 0])
        return emb if index is None else emb.index_select(0, index)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict the noise in ``x`` at timesteps ``t``.

        ``labels`` is ``(n_cells, n_conditions)``, with ``n_classes[k]`` for "not given",
        then one standardised value per continuous condition (NaN for "not given"); None
        means no condition is given.
        """
        keys = t.view(-1, 1).expand(x.shape[0], 1)
        n_categorical = len(self.condition_embeddings)
        value_tables = []
        if n_categorical or self.value_embeddings:
            if labels is None:
                labels = self.null_labels.expand(x.shape[0], -1)
            keys = torch.cat([keys, labels[:, :n_categorical].to(keys.dtype)], dim=1)
            for column in labels[:, n_categorical:].T:
                # each distinct value (NaN as +inf) becomes an integer key
                column = column.float()
                column = torch.where(torch.isnan(column), torch.inf, column)
                table, codes = torch.unique(column, return_inverse=True)
                keys = torch.cat([keys, codes.view(-1, 1).to(keys.dtype)], dim=1)
                value_tables.append(torch.where(torch.isinf(table), torch.nan, table))
        # cells of a sampling step, and groups of cells in training, share their timestep
        keys, index = distinct_rows(keys)
        emb = self.time_embedding_of(keys[:, 0])
        for k, embedding in enumerate(self.condition_embeddings):
            emb = emb + embedding(keys[:, k + 1])
        for j, (embedding, table) in enumerate(
            zip(self.value_embeddings, value_tables, strict=True)
        ):
            emb = emb + embedding(table[keys[:, 1 + n_categorical + j]])
        projections = iter(time_projections([*self.down, *self.up], emb, index))
        skips = []
        h = x
        for block in self.down:
            h = block(h, next(projections))
            skips.append(h)
        skips.pop()  # the bottleneck output is not a skip
        for block in self.up:
            h = block(h, next(projections)) + skips.pop()
        return self.head(h)


class NoisyLatentClassifier(nn.Module):
    """Classifier of a condition from a noisy latent ``x_t`` and its timestep ``t``.

    Parameters
    ----------
    n_input
        Latent size.
    n_classes
        Number of categories of the condition.
    hidden_dims
        Widths of the hidden blocks.
    dropout_rate
        Dropout in every block.
    """

    def __init__(
        self,
        n_input: int,
        n_classes: int,
        hidden_dims: Sequence[int] = (256, 128, 64),
        dropout_rate: float = 0.1,
    ):
        super().__init__()
        hidden_dims = tuple(hidden_dims)
        n_time = hidden_dims[0]
        self.time_embedding = SinusoidalTimeEmbedding(n_time)
        dims = (n_input, *hidden_dims)
        self.blocks = nn.ModuleList(
            [
                TimeConditionedBlock(d_in, d_out, n_time, dropout_rate)
                for d_in, d_out in itertools.pairwise(dims)
            ]
        )
        self.head = nn.Linear(dims[-1], n_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        times = t.view(-1, 1).expand(x.shape[0], 1)
        times, index = distinct_rows(times)
        projections = time_projections(self.blocks, self.time_embedding(times[:, 0]), index)
        h = x
        for block, projection in zip(self.blocks, projections, strict=True):
            h = block(h, projection)
        return self.head(h)
