"""Data parallel training: two CPU processes (Lightning DDP) give one model that generates as
well as a model trained in a single process with as many optimiser steps.

Each DDP process sees half of every epoch, so an epoch has half the steps (of twice the
effective batch); the single-process model gets half the epochs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import scvi

from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import evaluate

pytestmark = pytest.mark.distributed

SCRIPT = Path(__file__).parents[1] / "scripts" / "train_distributed.py"
BUDGET = {"vae_epochs": 100, "diffusion_epochs": 1000, "classifier_epochs": 100}
SINGLE_PROCESS_BUDGET = {key: epochs // 2 for key, epochs in BUDGET.items()}


def _run_script(out, budget, *extra, timeout=1800):
    # one thread per process: two processes share the two cores of a CI machine
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "2", *map(str, budget.values()), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    _run_script(out, BUDGET)
    return out


def test_a_nan_on_one_process_stops_every_process(tmp_path):
    """Only rank 0's loss turns NaN; both processes stop with the stage's error, VAE kept."""
    budget = {"vae_epochs": 1, "diffusion_epochs": 3, "classifier_epochs": 1}
    records = _run_script(tmp_path, budget, "poison", timeout=600)
    for record in records:
        assert "Training stage 'diffusion' stopped" in record["error"]
        assert record["trained_stages"] == ["vae"]


def test_two_processes_train_one_model(distributed_run):
    records = [json.loads((distributed_run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["error"] for r in records] == [None, None]
    assert [r["rank"] for r in records] == [0, 1]
    assert [r["world_size"] for r in records] == [2, 2]
    # every stage averaged the gradients of both processes: their weights are the same
    assert records[0]["weight_checksum"] == pytest.approx(records[1]["weight_checksum"], rel=1e-9)
    assert (distributed_run / "model" / "model.pt").exists()


def _scores(model, test):
    syn = model.generate(conditions=test.obs[["cell_type"]], seed=0, progress_bar=False)
    return evaluate(test, syn, condition_key="cell_type", random_state=0).loc["all", "synthetic"]


def test_distributed_model_generates_as_well_as_a_single_process_one(distributed_run, pbmc_split):
    train, test = pbmc_split
    adata = train.copy()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    distributed = ScDiffusion.load(str(distributed_run / "model"), adata=adata)
    scvi.settings.seed = 0
    single = ScDiffusion(adata)
    single.train(
        **SINGLE_PROCESS_BUDGET,
        latent_batch_size=256,  # as the script's (tests/scripts/train_distributed.py)
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    ddp, one = _scores(distributed, test), _scores(single, test)
    print(f"DDP:\n{ddp}\nsingle process:\n{one}")
    assert ddp["knn_auc"] <= one["knn_auc"] + 0.05
    assert ddp["conditional_accuracy"] >= one["conditional_accuracy"] - 0.08
    assert ddp["mmd"] <= one["mmd"] + 0.005
    assert ddp["w2"] <= 1.1 * one["w2"]
