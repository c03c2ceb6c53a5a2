"""Execute the tutorial notebooks.

``python scripts/run_notebooks.py tutorials/*.ipynb`` executes each notebook in place, with
its own training budget: the outputs the docs show.

``python scripts/run_notebooks.py --max-epochs 10 --jobs 2 --out-dir DIR tutorials/*.ipynb``
is the CI check that every cell runs: after the cell tagged ``parameters`` (papermill's
convention; it sets ``max_epochs = None`` and a tutorial's sizes) a cell is inserted that sets
``max_epochs`` and the small sizes the notebook lists in its metadata
(``metadata["scvi_diffusion"]["ci_parameters"]``, name to value), and the executed copies are
written to ``DIR``, leaving the committed notebooks alone. ``--jobs`` notebooks run at a time,
each kernel on one torch thread when there are several. Any error in a cell fails the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def with_parameters(notebook: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """Insert a cell running ``source`` after the cell tagged ``parameters``."""
    for index, cell in enumerate(notebook.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            injected = nbformat.v4.new_code_cell(source)
            injected.metadata["tags"] = ["injected-parameters"]
            notebook.cells.insert(index + 1, injected)
            return notebook
    raise ValueError("The notebook has no cell tagged 'parameters' to override.")


def ci_parameters(notebook: nbformat.NotebookNode, max_epochs: int) -> str:
    """The injected cell of a CI run: the training cap and the notebook's small sizes."""
    sizes = notebook.metadata.get("scvi_diffusion", {}).get("ci_parameters", {})
    return "\n".join(
        [f"max_epochs = {max_epochs}", *(f"{name} = {value!r}" for name, value in sizes.items())]
    )


def execute(path: Path, max_epochs: int | None, out_dir: Path | None) -> str:
    """Execute one notebook; the line that reports it."""
    started = time.perf_counter()
    notebook = nbformat.read(path, as_version=4)
    if max_epochs is not None:
        notebook = with_parameters(notebook, ci_parameters(notebook, max_epochs))
    NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": "."}}
    ).execute()
    target = path if out_dir is None else out_dir / path.name
    nbformat.write(notebook, target)
    return f"{path}: executed in {time.perf_counter() - started:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--max-epochs", type=int, help="Training budget to inject.")
    parser.add_argument("--out-dir", type=Path, help="Write executed copies here.")
    parser.add_argument("--jobs", type=int, default=1, help="Notebooks executed at a time.")
    args = parser.parse_args(argv)
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.jobs > 1:
        # kernels inherit it: several kernels of two threads would wait for each other
        os.environ["OMP_NUM_THREADS"] = "1"
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = [
            pool.submit(execute, path, args.max_epochs, args.out_dir) for path in args.notebooks
        ]
        for run in runs:
            print(run.result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
