import copy

import pytest
import scvi
import torch
from lightning.pytorch.callbacks import Callback

from scvi_diffusion import ScDiffusion

from .conftest import quiet_train


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

    # 700 cells in minibatches of 256: 3 steps per epoch
    assert len(recorder.steps) == 6
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
