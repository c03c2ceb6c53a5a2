"""Training budgets and output: the denoiser's weight average, latent step budgets in steps or
passes, bad budgets, and one progress bar per stage with nothing else printed."""

import copy
import os
import subprocess
import sys

import pytest
import scvi
import torch
from lightning.pytorch.callbacks import Callback

from scvi_diffusion import ScDiffusion

from ..conftest import quiet_train


class DenoiserRecorder(Callback):
    """Records the denoiser's weights after every optimiser step of the diffusion stage."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if hasattr(pl_module.module, "denoiser"):
            self.steps.append(copy.deepcopy(pl_module.module.denoiser.state_dict()))


def test_denoiser_keeps_the_warmed_up_weight_average(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    scvi.settings.seed = 0
    model = ScDiffusion(pbmc, n_latent=4)
    recorder = DenoiserRecorder()
    callbacks = [recorder]
    quiet_train(model, max_epochs=2, ema_decay=0.5, callbacks=callbacks)
    assert callbacks == [recorder]  # the user's list is not extended by scvi-tools' callbacks

    # 700 cells in the denoiser's minibatches of 512: 2 steps per epoch
    assert len(recorder.steps) == 4
    expected = copy.deepcopy(recorder.steps[0])
    for n_averaged, weights in enumerate(recorder.steps[1:], start=1):
        rate = min(0.5, (1 + n_averaged) / (10 + n_averaged))
        for name, value in weights.items():
            expected[name] = expected[name].lerp(value, 1 - rate)
    kept = model.module.diffusion.denoiser.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(kept[name], value)
    last = recorder.steps[-1]
    assert not all(torch.equal(kept[name], last[name]) for name in kept)


def test_without_averaging_the_last_weights_are_kept(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    scvi.settings.seed = 0
    model = ScDiffusion(pbmc, n_latent=4)
    recorder = DenoiserRecorder()
    quiet_train(model, max_epochs=1, ema_decay=None, callbacks=[recorder])
    kept = model.module.diffusion.denoiser.state_dict()
    for name, value in recorder.steps[-1].items():
        torch.testing.assert_close(kept[name], value)


@pytest.mark.parametrize(
    ("ema_decay", "error"),
    [
        (0.0, ValueError),
        (1.0, ValueError),
        (1.5, ValueError),
        (True, TypeError),
        ("0.9", TypeError),
    ],
)
def test_bad_ema_decay(pbmc, ema_decay, error):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = ScDiffusion(pbmc, n_latent=4)
    with pytest.raises(error, match="ema_decay"):
        model.train(max_epochs=1, ema_decay=ema_decay)
    assert not model.is_trained_


class StepCounter(Callback):
    """Counts the optimiser steps of each stage (by the module it trains)."""

    def __init__(self):
        self.steps = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stage = type(pl_module.module).__name__
        self.steps[stage] = self.steps.get(stage, 0) + 1


def test_latent_stages_run_their_step_budget(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = ScDiffusion(pbmc, n_latent=4, guidance="classifier")
    counter = StepCounter()
    quiet_train(model, vae_epochs=1, diffusion_steps=7, classifier_steps=5, callbacks=[counter])
    # 700 cells: 6 VAE minibatches of 128 per epoch
    assert counter.steps == {
        "VAE": 6,
        "LatentDiffusionModule": 7,
        "ConditionClassifiersModule": 5,
    }
    # an epoch of a latent stage is at least one pass over the cells (the denoiser's: 2
    # minibatches of 512; the classifiers': 3 of 256)
    assert len(model.history["diffusion_train_loss"]) == 4
    assert len(model.history["classifier_train_loss"]) == 2


def test_latent_epochs_are_passes_over_the_cells(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = ScDiffusion(pbmc, n_latent=4, guidance="classifier")
    counter = StepCounter()
    quiet_train(model, vae_epochs=1, diffusion_epochs=2, classifier_epochs=1, callbacks=[counter])
    # 700 cells: a pass is 2 of the denoiser's minibatches of 512, 3 of the classifiers' 256
    assert counter.steps["LatentDiffusionModule"] == 4
    assert counter.steps["ConditionClassifiersModule"] == 3


@pytest.mark.parametrize("stage", ["diffusion", "classifier"])
def test_steps_and_epochs_of_one_stage_are_refused(pbmc, stage):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = ScDiffusion(pbmc, n_latent=4)
    with pytest.raises(ValueError, match=f"Give `{stage}_steps` or `{stage}_epochs`, not both"):
        model.train(**{f"{stage}_steps": 10, f"{stage}_epochs": 1})
    assert not model.is_trained_ and model.trained_stages_ == []


@pytest.mark.parametrize("name", ["diffusion_steps", "classifier_steps"])
@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (2.5, TypeError), ("9", TypeError)])
def test_bad_step_budgets(pbmc, name, value, error):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = ScDiffusion(pbmc, n_latent=4)
    with pytest.raises(error, match=name):
        model.train(**{name: value})


QUIET_SCRIPT = """
import sys

import scvi_diffusion
from scvi_diffusion import ScDiffusion

adata = scvi_diffusion.data.pbmc68k()
ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
for argument in ({}, {"progress_bar": False}, {"enable_progress_bar": False}):
    print(f"=== {argument}", flush=True)
    ScDiffusion(adata, n_latent=4, guidance="classifier").train(max_epochs=2, **argument)
    sys.stdout.flush()
"""


@pytest.fixture(scope="module")
def printed_by_training() -> dict[str, str]:
    """What a fresh Python process prints while it trains with progress bars, with
    ``progress_bar=False`` and with ``enable_progress_bar=False``, warnings (stderr) apart."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    completed = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT], capture_output=True, env=env, timeout=600
    )
    # decoded by hand: text mode would turn the bars' carriage returns into newlines
    stdout, stderr = completed.stdout.decode(), completed.stderr.decode()
    assert completed.returncode == 0, stderr[-3000:]
    _, bars, without, without_scvi_name = stdout.split("=== ")
    return {
        "bars": bars.split("\n", 1)[1],
        "progress_bar=False": without.split("\n", 1)[1],
        "enable_progress_bar=False": without_scvi_name.split("\n", 1)[1],
        "stderr": stderr,
    }


def test_training_shows_one_progress_bar_per_stage_and_nothing_else(printed_by_training):
    printed = printed_by_training["bars"]
    # tqdm redraws its bar with carriage returns; each stage's bar ends with a newline
    lines = [line.split("\r")[-1] for line in printed.split("\n") if line.strip()]
    assert [line.split(":")[0] for line in lines] == [
        "Training vae",
        "Training diffusion",
        "Training classifier",
    ], printed
    assert "2/2 [" in lines[0] and "epoch" in lines[0]
    assert "4/4 [" in lines[1] and "step" in lines[1]
    assert "train_loss=" in lines[1]
    for noise in ("GPU available", "TPU", "Tip", "Trainer.fit", "INFO", "Warning", "v_num"):
        assert noise not in printed
    # no warning either
    assert printed_by_training["stderr"] == ""


@pytest.mark.parametrize("argument", ["progress_bar=False", "enable_progress_bar=False"])
def test_training_without_progress_bar_prints_nothing(printed_by_training, argument):
    assert printed_by_training[argument] == ""
