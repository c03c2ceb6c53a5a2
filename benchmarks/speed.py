"""Speed, memory and scale: samplers, generation throughput, streaming, and training at scale.

``python benchmarks/speed.py [--out benchmarks/results] [--parts ...] [--quick]`` (or
``make bench-speed``). Parts, in one run:

1. ``samplers``: one model with default training on the held-out PBMC split (the fidelity
   benchmark's seed-0 split: 70% training cells, 30% held out). For each sampler and step count
   (the paper's 1000-step DDPM included), cells in the test split's cell-type composition are
   scored against the held-out real cells (MMD, W2, k-NN AUC; mean of 3 generation seeds), and
   the throughput is timed (counts output, 765 genes). Same model, same run.
2. ``throughput``: a model on 20,000 bootstrapped cells x 2,000 genes
   (:func:`scvi_diffusion.data.pbmc68k_bootstrap`; real PBMC cells resampled, genes extended by
   copies: the size matters here, not the biology), briefly trained (throughput does not depend
   on the training budget). Cells per second for the default sampler and the 1000-step DDPM
   (counts, 2,000 genes), and a profile of where the default sampler's time goes.
3. ``stream``: 1,000,000 cells of that model written with ``generate(out=...)``: time and peak
   memory (resident set size of a fresh process).
4. ``training``: one epoch of each stage on bootstrapped, on-disk (backed) AnnData of 10k, 100k
   and 1M cells x 2,000 genes and 10k, 100k cells x 20,000 genes, each in a fresh process:
   seconds per stage per epoch and peak memory. Power-law exponents are fitted to them.

Memory is the peak resident set size (``VmHWM``) of a process that does only that job,
including Python, torch and scvi-tools (about 0.6 GB before any data). Writes ``speed_runs.csv``
and ``speed.md`` to ``--out``; bootstrapped files are cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import QUIET, machine_line, split_with_reference, timed_train

warnings.filterwarnings("ignore")

SEED = 0
N_GENES = 2_000
SAMPLER_GRID = [
    ("dpmpp_2m", 5),
    ("dpmpp_2m", 10),
    ("dpmpp_2m", 15),
    ("dpmpp_2m", 20),
    ("dpmpp_2m", 30),
    ("dpmpp_2m", 50),
    ("ddim", 10),
    ("ddim", 20),
    ("ddim", 50),
    ("ddim", 100),
    ("ddpm", 100),
    ("ddpm", 1000),
]
TRAINING_SIZES = [(10_000, 2_000), (100_000, 2_000), (1_000_000, 2_000), (10_000, 20_000)]
TRAINING_SIZES_LARGE_GENES = [(100_000, 20_000)]


def peak_rss_gb() -> float:
    """Peak resident set size of this process (VmHWM). Unlike ``ru_maxrss``, which Linux
    carries over ``execve`` from the forking parent, it starts afresh in a child process."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


# ----------------------------------------------------------------------------------- samplers


def samplers(quick: bool) -> list[dict]:
    import scvi

    import scvi_diffusion
    from scvi_diffusion import ScDiffusion
    from scvi_diffusion.metrics import evaluate

    data = scvi_diffusion.data.pbmc68k()
    train, test, reference = split_with_reference(data, SEED)
    scvi.settings.seed = SEED
    train = train.copy()
    ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
    model = ScDiffusion(train)
    model.train(max_epochs=3 if quick else None, **QUIET)
    timing_conditions = pd.concat([test.obs[["cell_type"]]] * 20, ignore_index=True)
    rows = []
    for sampler, n_steps in SAMPLER_GRID[:3] if quick else SAMPLER_GRID:
        kwargs = {"sampler": sampler, "n_steps": n_steps, "progress_bar": False}
        model.generate(conditions=test.obs[["cell_type"]], seed=SEED, **kwargs)  # warm-up
        started = time.perf_counter()
        timed = model.generate(conditions=timing_conditions, seed=SEED, **kwargs)
        seconds = time.perf_counter() - started
        scores = []
        for seed in (0, 1, 2):
            syn = model.generate(conditions=test.obs[["cell_type"]], seed=seed, **kwargs)
            frame = evaluate(
                test,
                syn,
                condition_key="cell_type",
                reference=reference,
                random_state=SEED,
                n_repeats=0,  # the figures only, not the floor's spread
            ).loc["all"]
            scores.append(frame)
        row = {
            "part": "samplers",
            "sampler": sampler,
            "n_steps": n_steps,
            "n_genes": train.n_vars,
            "cells_per_second": timed.n_obs / seconds,
        }
        for metric in ("mmd", "w2", "knn_auc", "conditional_accuracy"):
            values = [s.loc[metric, "synthetic"] for s in scores]
            row[metric] = float(np.mean(values))
            row[f"{metric}_sd"] = float(np.std(values))
            row[f"{metric}_floor"] = float(scores[0].loc[metric, "floor"])
        rows.append(row)
        print(row, flush=True)
    return rows


# --------------------------------------------------------------------------------- throughput


def throughput_model(path: Path, quick: bool):
    import scvi

    import scvi_diffusion
    from scvi_diffusion import ModelFileError, ScDiffusion

    if (path / "model.pt").exists():
        # a cached model from an older file format is retrained
        with contextlib.suppress(ModelFileError):
            return ScDiffusion.load(str(path))
    scvi.settings.seed = SEED
    adata = scvi_diffusion.data.pbmc68k_bootstrap(20_000, N_GENES, seed=SEED)
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata)
    epochs = 1 if quick else 5
    model.train(vae_epochs=epochs, diffusion_epochs=4 * epochs, classifier_epochs=epochs, **QUIET)
    model.save(str(path), overwrite=True, save_anndata=True)
    return model


def throughput(model_path: Path, quick: bool) -> list[dict]:
    model = throughput_model(model_path, quick)
    n_default = 4_000 if quick else 20_000
    settings = [
        ("default", {}, n_default),
        ("default, normalized output", {"output": "normalized"}, n_default),
        ("default, no guidance", {"guidance_scale": 0.0}, n_default),
        ("ddim 50", {"sampler": "ddim", "n_steps": 50}, n_default),
        ("ddpm 1000 (paper)", {"sampler": "ddpm", "n_steps": 1000}, 400 if quick else 2_000),
    ]
    rows = []
    for name, kwargs, n in settings:
        model.generate(n=512, seed=SEED, progress_bar=False, **kwargs)  # warm-up
        times = []
        for repeat in range(1 if quick else 3):
            started = time.perf_counter()
            model.generate(n=n, seed=repeat, progress_bar=False, **kwargs)
            times.append(time.perf_counter() - started)
        row = {
            "part": "throughput",
            "setting": name,
            "n_genes": model.adata.n_vars,
            "n_cells": n,
            "cells_per_second": n / float(np.median(times)),
        }
        rows.append(row)
        print(row, flush=True)
    profile = cProfile.Profile()
    profile.enable()
    model.generate(n=n_default, seed=SEED, progress_bar=False)
    profile.disable()
    stats = pstats.Stats(profile).sort_stats("tottime")
    total = sum(entry[2] for entry in stats.stats.values())
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:10]
    for (filename, line, function), (_, calls, tottime, _, _) in top:
        rows.append(
            {
                "part": "profile",
                "setting": f"{Path(filename).name}:{line}({function})",
                "calls": calls,
                "seconds": tottime,
                "share": tottime / total,
            }
        )
    return rows


# ------------------------------------------------------------------ child processes: memory


def child_stream(model_path: str, n_cells: int) -> dict:
    from scvi_diffusion import ScDiffusion

    model = ScDiffusion.load(model_path)
    before = peak_rss_gb()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "synthetic.h5ad"
        started = time.perf_counter()
        result = model.generate(n=n_cells, seed=SEED, progress_bar=False, out=out)
        seconds = time.perf_counter() - started
        size_gb = out.stat().st_size / 1024**3
        shape = result.shape
        result.file.close()
    return {
        "part": "stream",
        "n_cells": shape[0],
        "n_genes": shape[1],
        "seconds": seconds,
        "cells_per_second": shape[0] / seconds,
        "peak_rss_gb": peak_rss_gb(),
        "rss_after_load_gb": before,
        "file_gb": size_gb,
    }


def child_train(data_path: str, storage: str = "backed") -> dict:
    import anndata as ad
    import scvi

    from scvi_diffusion import ScDiffusion

    scvi.settings.seed = SEED
    adata = ad.read_h5ad(data_path, backed="r" if storage == "backed" else None)
    after_open = peak_rss_gb()
    started = time.perf_counter()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    setup_seconds = time.perf_counter() - started
    # classifier guidance, so that every stage (the classifiers' too) is timed
    model = ScDiffusion(adata, guidance="classifier")
    total = timed_train(model, vae_epochs=1, diffusion_epochs=1, classifier_epochs=1, **QUIET)
    stages = model.stage_seconds_
    return {
        "part": "training",
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "storage": storage,
        "setup_seconds": setup_seconds,
        "vae_epoch_seconds": stages["vae"],
        "diffusion_epoch_seconds": stages["diffusion"],
        "classifier_epoch_seconds": stages["classifier"],
        # encoding every cell into the latent space between the VAE and the latent stages
        "other_seconds": total - sum(stages.values()),
        "peak_rss_gb": peak_rss_gb(),
        "rss_after_open_gb": after_open,
    }


def run_child(*args: str) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"child {args} failed:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1])


def bootstrapped_file(cache: Path, n_cells: int, n_genes: int) -> Path:
    import scvi_diffusion

    path = cache / f"pbmc68k_bootstrap_{n_cells}x{n_genes}.h5ad"
    if not path.exists():
        started = time.perf_counter()
        scvi_diffusion.data.pbmc68k_bootstrap(n_cells, n_genes, seed=SEED, out=path).file.close()
        print(f"wrote {path} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def training(cache: Path, quick: bool) -> list[dict]:
    sizes = [(2_000, 2_000), (20_000, 2_000)] if quick else TRAINING_SIZES
    sizes = sizes + ([] if quick else TRAINING_SIZES_LARGE_GENES)
    rows = []
    for n_cells, n_genes in sizes:
        row = run_child("train", str(bootstrapped_file(cache, n_cells, n_genes)))
        rows.append(row)
        print(row, flush=True)
    # the largest 2,000-gene data once more, loaded into memory (sparse) instead of backed
    n_cells = max(n for n, g in sizes if g == N_GENES)
    row = run_child("train", str(bootstrapped_file(cache, n_cells, N_GENES)), "memory")
    rows.append(row)
    print(row, flush=True)
    return rows


# ------------------------------------------------------------------------------------ report


def exponent(x, y) -> float:
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def table_section(title: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown heading and table of already formatted cells, then a blank line."""
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def exponents_line(label: str, frame: pd.DataFrame, x: str, columns: dict[str, str]) -> str:
    """Fitted power-law exponents of each named column against column ``x``."""
    fits = ", ".join(
        f"{name} {exponent(frame[x], frame[col]):.2f}" for name, col in columns.items()
    )
    return f"Fitted exponents over {label}: {fits}."


def summarize(runs: pd.DataFrame, header: str) -> str:
    out = [header, ""]
    part = runs[runs["part"] == "samplers"]
    if len(part):
        floor = (
            "Mean (sd) over generation seeds 0-2; counts output, 765 genes. Floor: "
            f"MMD {part['mmd_floor'].iloc[0]:.3f}, W2 {part['w2_floor'].iloc[0]:.2f}, "
            f"k-NN AUC {part['knn_auc_floor'].iloc[0]:.3f}."
        )
        section = table_section(
            "Samplers: fidelity and speed against steps (same model, held-out PBMC split)",
            ["sampler", "steps", "cells/s", "MMD", "W2", "k-NN AUC", "cond. accuracy"],
            [
                [
                    r["sampler"],
                    f"{r['n_steps']:.0f}",
                    f"{r['cells_per_second']:,.0f}",
                    f"{r['mmd']:.4f} ({r['mmd_sd']:.4f})",
                    f"{r['w2']:.2f} ({r['w2_sd']:.2f})",
                    f"{r['knn_auc']:.3f} ({r['knn_auc_sd']:.3f})",
                    f"{r['conditional_accuracy']:.3f}",
                ]
                for _, r in part.iterrows()
            ],
        )
        out += [*section[:2], floor, "", *section[2:]]
    part = runs[runs["part"] == "throughput"]
    if len(part):
        out += table_section(
            "Generation throughput at 2,000 genes (bootstrapped PBMC model)",
            ["setting", "cells", "cells/s"],
            [
                [r["setting"], f"{r['n_cells']:,.0f}", f"{r['cells_per_second']:,.0f}"]
                for _, r in part.iterrows()
            ],
        )
        default = part[part["setting"] == "default"]["cells_per_second"]
        paper = part[part["setting"] == "ddpm 1000 (paper)"]["cells_per_second"]
        if len(default) and len(paper):
            out += [f"Default vs 1000-step DDPM: {default.iloc[0] / paper.iloc[0]:.0f}x.", ""]
    part = runs[runs["part"] == "profile"]
    if len(part):
        out += table_section(
            "Where the default sampler's time goes (cProfile, own time)",
            ["function", "calls", "seconds", "share"],
            [
                [
                    f"`{r['setting']}`",
                    f"{r['calls']:.0f}",
                    f"{r['seconds']:.2f}",
                    f"{r['share']:.0%}",
                ]
                for _, r in part.iterrows()
            ],
        )
    part = runs[runs["part"] == "stream"]
    if len(part):
        out += table_section(
            "Streaming generation to disk (`generate(out=...)`, fresh process)",
            [
                "cells",
                "genes",
                "seconds",
                "cells/s",
                "peak RSS (GB)",
                "RSS after load (GB)",
                "file (GB)",
            ],
            [
                [
                    f"{r['n_cells']:,.0f}",
                    f"{r['n_genes']:,.0f}",
                    f"{r['seconds']:.0f}",
                    f"{r['cells_per_second']:,.0f}",
                    f"{r['peak_rss_gb']:.2f}",
                    f"{r['rss_after_load_gb']:.2f}",
                    f"{r['file_gb']:.2f}",
                ]
                for _, r in part.iterrows()
            ],
        )
    part = runs[runs["part"] == "training"]
    if len(part):
        out += table_section(
            "Training: one epoch per stage, bootstrapped data, fresh process",
            [
                "cells",
                "genes",
                "storage",
                "VAE s/epoch",
                "diffusion s/epoch",
                "classifier s/epoch",
                "encoding s",
                "peak RSS (GB)",
            ],
            [
                [
                    f"{r['n_cells']:,.0f}",
                    f"{r['n_genes']:,.0f}",
                    r["storage"],
                    f"{r['vae_epoch_seconds']:.1f}",
                    f"{r['diffusion_epoch_seconds']:.1f}",
                    f"{r['classifier_epoch_seconds']:.1f}",
                    f"{r['other_seconds']:.1f}",
                    f"{r['peak_rss_gb']:.2f}",
                ]
                for _, r in part.iterrows()
            ],
        )
        part = part[part["storage"] == "backed"]
        by_cells = part[part["n_genes"] == N_GENES].sort_values("n_cells")
        if len(by_cells) >= 2:
            columns = {
                "VAE epoch": "vae_epoch_seconds",
                "diffusion epoch": "diffusion_epoch_seconds",
                "classifier epoch": "classifier_epoch_seconds",
                "peak memory": "peak_rss_gb",
            }
            label = f"cells (at {N_GENES:,} genes; time ~ cells^k)"
            out.append(exponents_line(label, by_cells, "n_cells", columns))
        for n_cells, group in part.groupby("n_cells"):
            if group["n_genes"].nunique() >= 2:
                columns = {"VAE epoch": "vae_epoch_seconds", "peak memory": "peak_rss_gb"}
                label = f"genes (at {n_cells:,.0f} cells)"
                out.append(exponents_line(label, group, "n_genes", columns))
        out.append("")
    return "\n".join(out)


def _same_run(row: pd.Series, new: dict) -> bool:
    def same(a, b) -> bool:
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return str(a) == str(b)

    keys = ("part", "n_cells", "n_genes", "storage")
    return all(same(row.get(k), new.get(k)) for k in keys if k in new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "scvid-bench")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["samplers", "throughput", "stream", "training"],
        choices=["samplers", "throughput", "stream", "training"],
    )
    parser.add_argument("--stream-cells", type=int, default=1_000_000)
    parser.add_argument(
        "--keep-other-parts",
        action="store_true",
        help="keep the rows of the parts not run from the earlier speed_runs.csv in --out",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument(
        "--add-row", type=Path, help="append a child's JSON result file to the runs and report"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite speed.md from speed_runs.csv"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_stream(rest[0], int(rest[1])) if kind == "stream" else child_train(*rest)
        print(json.dumps(result), flush=True)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.add_row or args.report_only:
        args.parts, args.keep_other_parts = [], True
    model_path = args.cache / ("throughput_model_quick" if args.quick else "throughput_model")
    rows = [json.loads(args.add_row.read_text())] if args.add_row else []
    if "samplers" in args.parts:
        rows += samplers(args.quick)
    if "throughput" in args.parts:
        rows += throughput(model_path, args.quick)
    if "stream" in args.parts:
        if not (model_path / "model.pt").exists():
            throughput_model(model_path, args.quick)
        n_cells = 20_000 if args.quick else args.stream_cells
        row = run_child("stream", str(model_path), str(n_cells))
        rows.append(row)
        print(row, flush=True)
    if "training" in args.parts:
        rows += training(args.cache, args.quick)
    runs = pd.DataFrame(rows)
    suffix = "_quick" if args.quick else ""
    csv = args.out / f"speed_runs{suffix}.csv"
    if args.keep_other_parts and csv.exists():
        # rerun some parts, keep the others' earlier rows ("profile" goes with "throughput")
        previous = pd.read_csv(csv)
        rerun = set(args.parts) | ({"profile"} if "throughput" in args.parts else set())
        if args.add_row:
            previous = previous[~previous.apply(lambda r: _same_run(r, rows[0]), axis=1)]
        runs = pd.concat([previous[~previous["part"].isin(rerun)], runs], ignore_index=True)
    runs.to_csv(csv, index=False)
    header = machine_line() + (
        "; command: `python benchmarks/speed.py` (parts run separately are merged with "
        "`--parts ... --keep-other-parts`)."
    )
    (args.out / f"speed{suffix}.md").write_text(summarize(runs, header) + "\n")
    print(summarize(runs, header))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
