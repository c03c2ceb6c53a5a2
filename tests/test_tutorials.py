"""Every tutorial can be run by CI with a small budget and is reachable from the docs and README
(CI executes them with ``scripts/run_notebooks.py --max-epochs``, which needs the tagged cell)."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 9


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_has_a_budget_cell_and_is_linked(path):
    cells = json.loads(path.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: tag one cell 'parameters' (max_epochs = None)"
    assert "max_epochs = None" in "".join(tagged[0]["source"])
    assert f"tutorials/{path.stem}\n" in (ROOT / "docs" / "index.md").read_text()
    assert f"(tutorials/{path.name})" in (ROOT / "README.md").read_text()
