"""The set-up the benchmark scripts share.

- :data:`PBMC3K`: where the PBMC3K counts are read from by default (``../shared/data`` beside
  the repository);
- :data:`QUIET` and :func:`timed_train`: training without a progress bar or model summary, and
  the wall-clock seconds of one ``train()`` call;
- :func:`fidelity_dataset`: the bundled PBMCs or PBMC3K as the fidelity protocol reads them,
  and the share of their cells held out; :func:`held_out_floor` and :func:`held_out_scores`:
  the floor's and a model's mean scores on the held-out cells;
- :func:`two_factor_held_out`: the two-factor PBMCs split for a held-out combination;
- :func:`split_with_reference`: the held-out protocol (a split stratified by cell type, and the
  floor's reference: real training cells drawn in the test cells' composition);
- :func:`machine_line` (by default :data:`MACHINE`): the description of the machine written
  beside the results.

The scripts run as ``python benchmarks/<name>.py`` from the repository root, so this folder is
first on ``sys.path`` and they import this module as ``_common``. Nothing heavy is imported
here at import time (torch and ``scvi_diffusion`` are imported where they are used):
``training_speed.py --src`` chooses where ``scvi_diffusion`` comes from after importing this
module, and ``speed.py`` imports its heavy modules only where it uses them.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PBMC3K = SHARED_DATA / "pbmc3k_raw.h5ad"

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}

# the default machine line (speed.md's header starts with it)
MACHINE = "Measured {date} on {processor}, {threads} threads, torch {torch}"


def timed_train(model, **train_kwargs) -> float:
    """Seconds that ``model.train(**train_kwargs)`` takes (pass ``**QUIET`` to keep it quiet)."""
    started = time.perf_counter()
    model.train(**train_kwargs)
    return time.perf_counter() - started


def decoded(model, latents, source, seed: int):
    """``latents`` (one row per ``source`` cell) decoded at the source cells' library sizes
    (batch 0): counts drawn from the decoder (sparse, with ``seed``) and the expected
    expression per 10,000 counts."""
    import numpy as np
    import torch

    from scvi_diffusion.module._count_sampling import sample_counts, to_csr

    library = torch.as_tensor(np.asarray(source.X.sum(axis=1)).ravel(), dtype=torch.float32)
    torch.manual_seed(seed)
    with torch.no_grad():
        counts, fractions = model.module.decode(
            torch.as_tensor(latents, dtype=torch.float32),
            library,
            torch.zeros(len(latents), dtype=torch.long),
        )
    return to_csr(sample_counts(counts)), fractions.numpy() * 1e4


def fidelity_dataset(name: str):
    """``"pbmc68k"`` (the bundled PBMCs, 30% held out) or ``"pbmc3k"`` (the labelled cells of
    :data:`PBMC3K` and the genes detected in at least 30 of them, 20% held out): the AnnData
    and the share of its cells held out."""
    import anndata as ad
    import scanpy as sc

    import scvi_diffusion

    if name == "pbmc68k":
        return scvi_diffusion.data.pbmc68k(), 0.3
    adata = ad.read_h5ad(PBMC3K)
    adata = adata[adata.obs["cell_type"].notna()].copy()
    sc.pp.filter_genes(adata, min_cells=30)
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).astype("category")
    return adata, 0.2


def split_with_reference(adata, seed: int, test_size: float = 0.3, condition: str = "cell_type"):
    """Training cells, held-out test cells and the floor's reference, all drawn with ``seed``.

    The split is stratified by ``condition`` (30% held out by default: the bundled PBMCs'
    split); the reference is real training cells in the test cells' composition and number.
    """
    from scvi_diffusion.metrics import matched_sample, stratified_split

    train, test = stratified_split(adata, condition, test_size=test_size, random_state=seed)
    return train, test, matched_sample(train, test, condition, random_state=seed)


def held_out_floor(test, reference, seed: int, metrics) -> dict:
    """The floor's ``metrics``: the reference (real training cells in the test cells'
    composition) scored by :func:`scvi_diffusion.metrics.evaluate` against the test cells."""
    from scvi_diffusion.metrics import evaluate

    floor = evaluate(test, reference, condition_key="cell_type", random_state=seed, n_repeats=0)
    return {m: floor.loc["all", m]["synthetic"] for m in metrics}


def held_out_scores(model, test, seed: int, metrics) -> dict:
    """``model``'s cells in the test cells' composition, generated twice (seeds ``seed`` and
    ``seed + 100``), each scored by :func:`scvi_diffusion.metrics.evaluate` against the test
    cells: the mean of each of ``metrics``."""
    import pandas as pd

    from scvi_diffusion.metrics import evaluate

    scores = []
    for generation_seed in (seed, seed + 100):
        synthetic = model.generate(
            conditions=test.obs[["cell_type"]], seed=generation_seed, progress_bar=False
        )
        frame = evaluate(
            test, synthetic, condition_key="cell_type", random_state=seed, n_repeats=0
        )
        scores.append({m: frame.loc["all", m]["synthetic"] for m in metrics})
    return pd.DataFrame(scores).mean().to_dict()


def two_factor_held_out(held_out: dict):
    """:func:`scvi_diffusion.data.pbmc68k_two_factor` split for a held-out combination
    (``{"cell_type": ..., "tissue": ...}``): all its cells, the mask of the held-out ones, the
    training cells, the held-out cells and the training cells of that cell type in control
    (the counterfactuals' source)."""
    import scvi_diffusion

    data = scvi_diffusion.data.pbmc68k_two_factor()
    of_type = data.obs["cell_type"] == held_out["cell_type"]
    held = of_type & (data.obs["tissue"] == held_out["tissue"])
    train, truth = data[~held].copy(), data[held].copy()
    source = train[
        train.obs["cell_type"].eq(held_out["cell_type"]) & train.obs["tissue"].eq("control")
    ].copy()
    return data, held, train, truth, source


def machine_line(template: str = MACHINE) -> str:
    """``template`` with the machine's facts filled in: ``processor`` (the processor's name,
    else its architecture), ``arch``, ``cores``, ``threads`` (torch's threads now), ``torch``
    (its version) and ``date`` (today); a template uses the ones it names."""
    import torch

    return template.format(
        processor=platform.processor() or platform.machine(),
        arch=platform.machine(),
        cores=os.cpu_count(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        date=datetime.date.today(),
    )
