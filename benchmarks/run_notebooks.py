"""Execute notebooks in place: ``python benchmarks/run_notebooks.py tutorials/*.ipynb``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        started = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(
            notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": "."}}
        ).execute()
        nbformat.write(notebook, path)
        print(f"{path}: executed in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
