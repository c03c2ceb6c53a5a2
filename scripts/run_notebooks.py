"""Execute the tutorial notebooks.

``python scripts/run_notebooks.py tutorials/*.ipynb`` executes each notebook in place, with
its own training budget: the outputs the docs show.

``python scripts/run_notebooks.py --max-epochs 60 --out-dir DIR tutorials/*.ipynb`` is the
CI check: after the cell tagged ``parameters`` (papermill's convention; it sets
``max_epochs = None``) a cell setting ``max_epochs`` is inserted, and the executed copies are
written to ``DIR``, leaving the committed notebooks alone. Any error in a cell fails the run.
"""

from __future__ import annotations

import argparse
import sys
import time
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--max-epochs", type=int, help="Training budget to inject.")
    parser.add_argument("--out-dir", type=Path, help="Write executed copies here.")
    args = parser.parse_args(argv)
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks:
        started = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        if args.max_epochs is not None:
            notebook = with_parameters(notebook, f"max_epochs = {args.max_epochs}")
        NotebookClient(
            notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": "."}}
        ).execute()
        target = path if args.out_dir is None else args.out_dir / path.name
        nbformat.write(notebook, target)
        print(f"{path}: executed in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
