"""Training speed: default ``train()`` against scVI's, the denoiser against a bare PyTorch loop,
and training beside a competing CPU-bound process.

``python benchmarks/training_speed.py [--parts train throughput shared-cpu] [--repeats 3]
[--out DIR]`` (or ``make bench-training``). Every part runs in this one process, one training
at a time, on the bundled PBMC cells (700 cells x 765 genes):

- ``train``: the default ``ScDiffusion.train()`` and scVI's default ``SCVI.train()`` on the
  same cells, alternated, ``--repeats`` times each;
- ``throughput``: optimiser steps per second of the diffusion stage (``train(stages=
  ["diffusion"], diffusion_steps=N)``, Lightning, weight average and all) and of a bare PyTorch
  loop over a copy of the same denoiser module, the same latents, minibatch size and optimiser
  (fused Adam with the stage's learning rate, epsilon and weight decay), alternated; the stage
  is timed twice: its steps alone (first to last, by a callback) and the whole ``train()`` call;
- ``shared-cpu``: the default ``train()`` alone and beside ``--competing`` busy Python
  processes (each a ``while True: pass`` loop, which keeps one core busy), alternated;
- ``mid-stage``: the default ``train()`` alone and with ``--competing`` busy processes that
  start ``--busy-after`` seconds into it (in the VAE stage) and run to its end, alternated: a
  stage that must notice a load that came after it started.

``--src DIR`` imports ``scvi_diffusion`` from another source tree (for example a checkout of an
earlier commit), to measure a before/after with the same script; ``--max-epochs`` caps every
stage for such a comparison of slowdowns. Writes ``training_speed_runs.csv`` and
``training_speed.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pandas as pd
from _common import QUIET, machine_line, timed_train

warnings.filterwarnings("ignore")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["train", "throughput", "shared-cpu", "mid-stage"],
        choices=["train", "throughput", "shared-cpu", "mid-stage"],
    )
    parser.add_argument(
        "--busy-after", type=float, default=5.0, help="Seconds into train() (mid-stage)."
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000, help="Steps per throughput run.")
    parser.add_argument("--competing", type=int, default=1, help="Busy processes (shared-cpu).")
    parser.add_argument("--max-epochs", type=int, default=None, help="Cap on every stage.")
    parser.add_argument("--src", type=Path, default=None, help="Import scvi_diffusion from here.")
    parser.add_argument("--label", default="", help="Name of this code version in the tables.")
    parser.add_argument(
        "--report", type=Path, help="Only write the tables from this runs CSV (no training)."
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


ARGS = _parse()
if ARGS.src is not None:
    sys.path.insert(0, str(ARGS.src.resolve()))

import scvi  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from scvi import REGISTRY_KEYS  # noqa: E402

import scvi_diffusion  # noqa: E402
from scvi_diffusion import ScDiffusion  # noqa: E402
from scvi_diffusion._constants import LATENT_BATCH_SIZES, LATENT_PLAN_DEFAULTS  # noqa: E402


def _scdiffusion(max_epochs: int | None = None) -> tuple[ScDiffusion, float]:
    scvi.settings.seed = 0
    adata = scvi_diffusion.data.pbmc68k()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata)
    return model, timed_train(model, max_epochs=max_epochs, **QUIET)


def _scvi() -> float:
    scvi.settings.seed = 0
    adata = scvi_diffusion.data.pbmc68k()
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(adata)
    return timed_train(model, **QUIET)


def part_train(repeats: int) -> list[dict]:
    rows = []
    for repeat in range(repeats):
        model, seconds = _scdiffusion(ARGS.max_epochs)
        stages = {f"{k}_s": v for k, v in model.stage_seconds_.items()}
        rows.append(
            {"part": "train", "run": "ScDiffusion", "repeat": repeat, "s": seconds, **stages}
        )
        rows.append({"part": "train", "run": "scVI", "repeat": repeat, "s": _scvi()})
        print(rows[-2], rows[-1], flush=True)
    return rows


def _bare_steps_per_second(
    module,
    tensors: dict[str, torch.Tensor],
    n_steps: int,
    batch_size: int = LATENT_BATCH_SIZES["diffusion"],
) -> float:
    module = copy.deepcopy(module).train()
    n_cells = len(tensors[REGISTRY_KEYS.X_KEY])
    # the stage's optimiser: its learning rate and epsilon, scvi-tools' weight decay
    optimizer = torch.optim.Adam(
        module.parameters(), **LATENT_PLAN_DEFAULTS["diffusion"], weight_decay=1e-6, fused=True
    )
    started = time.perf_counter()
    for _ in range(n_steps):
        rows = torch.randint(0, n_cells, (batch_size,))
        _, _, loss_output = module({key: value[rows] for key, value in tensors.items()})
        optimizer.zero_grad()
        loss_output.loss.backward()
        optimizer.step()
    return n_steps / (time.perf_counter() - started)


class _StepClock(Callback):
    """Times a stage's steps from its first to its last (setup and teardown excluded)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            self.started = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.steps_per_s = (trainer.global_step - 1) / (time.perf_counter() - self.started)


def part_throughput(repeats: int, n_steps: int) -> list[dict]:
    model, _ = _scdiffusion(max_epochs=2)
    # the latents and their conditions, as the stage's loader serves them
    manager = model._latent_training_data(False)
    cells = manager.create_torch_dataset()[list(range(manager.adata.n_obs))]
    tensors = {key: torch.as_tensor(value) for key, value in cells.items()}
    rows = []
    for repeat in range(repeats):
        clock = _StepClock()
        whole = n_steps / timed_train(
            model, stages=["diffusion"], diffusion_steps=n_steps, callbacks=[clock], **QUIET
        )
        bare = _bare_steps_per_second(model.module.diffusion, tensors, n_steps)
        for run, value in (
            ("diffusion stage, its steps", clock.steps_per_s),
            ("diffusion stage, whole train() call", whole),
            ("bare PyTorch loop", bare),
        ):
            rows.append({"part": "throughput", "run": run, "repeat": repeat, "steps_per_s": value})
        print(rows[-3:], flush=True)
    return rows


def _spinners(n: int) -> list[subprocess.Popen]:
    """Processes that each keep one core busy (`while True: pass`)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _beside_busy(part: str, repeats: int, n_competing: int, after: float | None) -> list[dict]:
    """The default ``train()`` alone and beside ``n_competing`` spinners, alternated: started
    a second before it (``after=None``) or ``after`` seconds into it, running to its end."""
    rows = []
    for repeat in range(repeats):
        for competing in (0, n_competing):
            busy: list[subprocess.Popen] = []
            timer = None
            if competing and after is None:
                busy += _spinners(competing)
                time.sleep(1.0)
            elif competing:
                timer = threading.Timer(after, lambda b=busy, n=competing: b.extend(_spinners(n)))
                timer.start()
            try:
                model, seconds = _scdiffusion(ARGS.max_epochs)
            finally:
                if timer is not None:
                    timer.cancel()
                    timer.join()  # a spinner started as the training ended is killed too
                for process in busy:
                    process.kill()
                    process.wait()
            stages = {f"{k}_s": v for k, v in model.stage_seconds_.items()}
            if not competing:
                run = "alone"
            elif after is None:
                run = f"beside {competing} busy process(es)"
            else:
                run = f"{competing} busy process(es) from {after:g} s in"
            rows.append({"part": part, "run": run, "repeat": repeat, "s": seconds, **stages})
            print(rows[-1], flush=True)
    return rows


def report(table: pd.DataFrame) -> str:
    label = f" ({ARGS.label})" if ARGS.label else ""
    lines = [
        machine_line("Machine: {processor}, {cores} cores, torch {torch}, {threads} torch threads")
        + f"; scvi-diffusion from {ARGS.src or 'this checkout'}{label}; "
        f"max_epochs={ARGS.max_epochs}; median (min-max) of {table['repeat'].max() + 1} runs.",
        "",
    ]
    for part, frame in table.groupby("part", sort=False):
        value = "steps_per_s" if part == "throughput" else "s"
        columns = [c for c in frame.columns if c.endswith("_s") and c != "steps_per_s"]
        columns = [value, *[c for c in columns if frame[c].notna().any()]]
        lines += [f"**{part}**", "", "| run | " + " | ".join(columns) + " |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        medians = {}
        for run, group in frame.groupby("run", sort=False):
            cells = []
            for column in columns:
                values = group[column].dropna()
                if values.empty:  # scVI has no stages
                    cells.append("-")
                    continue
                cells.append(f"{values.median():.2f} ({values.min():.2f}-{values.max():.2f})")
            medians[run] = statistics.median(group[value])
            lines.append(f"| {run} | " + " | ".join(cells) + " |")
        # ScDiffusion / scVI; each stage measure / the bare loop; busy / alone (the slowdown)
        runs = list(medians)
        pairs = {
            "train": [(runs[0], runs[-1])],
            "throughput": [(run, runs[-1]) for run in runs[:-1]],
            "shared-cpu": [(run, runs[0]) for run in runs[1:]],
            "mid-stage": [(run, runs[0]) for run in runs[1:]],
        }[part]
        if part in ("shared-cpu", "mid-stage"):
            # each stage's slowdown too: the stage the load came into is the one to watch
            for column in columns[1:]:
                alone = frame[frame["run"] == runs[0]][column].median()
                for run in runs[1:]:
                    busy = frame[frame["run"] == run][column].median()
                    lines.append(
                        f"\n{column[:-2]} stage slowdown, {run} / alone: {busy / alone:.2f}"
                    )
        for top, bottom in pairs:
            ratio = medians[top] / medians[bottom]
            lines.append(f"\nratio of medians, {top} / {bottom}: {ratio:.2f}")
        lines.append("")
    return "\n".join(lines)


def main():
    if ARGS.report is not None:
        text = report(pd.read_csv(ARGS.report))
        suffix = f"_{ARGS.label}" if ARGS.label else ""
        (ARGS.out / f"training_speed{suffix}.md").write_text(text)
        print(text)
        return
    rows = []
    if "train" in ARGS.parts:
        rows += part_train(ARGS.repeats)
    if "throughput" in ARGS.parts:
        rows += part_throughput(ARGS.repeats, ARGS.steps)
    if "shared-cpu" in ARGS.parts:
        rows += _beside_busy("shared-cpu", ARGS.repeats, ARGS.competing, after=None)
    if "mid-stage" in ARGS.parts:
        rows += _beside_busy("mid-stage", ARGS.repeats, ARGS.competing, ARGS.busy_after)
    table = pd.DataFrame(rows)
    ARGS.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{ARGS.label}" if ARGS.label else ""
    table.to_csv(ARGS.out / f"training_speed_runs{suffix}.csv", index=False)
    text = report(table)
    (ARGS.out / f"training_speed{suffix}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
