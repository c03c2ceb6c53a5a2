"""Recoverable training: NaN losses stop with the stage's name, stages (re)train on their own,
an interrupted stage keeps the earlier ones, and CPU training is deterministic."""

import pickle
import signal

import numpy as np
import pytest
import scvi
import torch
from lightning.pytorch.callbacks import Callback

import scvi_diffusion
from scvi_diffusion import NonFiniteLossError, ScDiffusion

from ..conftest import quiet_train, same_state

GEN = {"n": 20, "n_steps": 3, "progress_bar": False, "seed": 0}
# the module each stage trains
STAGE_MODULES = {
    "vae": "VAE",
    "diffusion": "LatentDiffusionModule",
    "classifier": "ConditionClassifiersModule",
}


class InStage(Callback):
    """Runs ``action(module)`` at the second training step of one stage."""

    def __init__(self, stage, action):
        self.module_name, self.action = STAGE_MODULES[stage], action

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if type(pl_module.module).__name__ == self.module_name and trainer.global_step == 1:
            self.action(pl_module.module)


def _poison(module):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.fill_(float("nan"))


def _interrupt(module):
    raise KeyboardInterrupt


def _model(adata=None, guidance="classifier", **kwargs):
    """Classifier guidance unless asked otherwise: these tests cover all three stages."""
    adata = scvi_diffusion.data.pbmc68k() if adata is None else adata
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    return ScDiffusion(adata, n_latent=4, guidance=guidance, **kwargs)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(("stage", "kept"), [("vae", []), ("diffusion", ["vae"])])
def test_nan_loss_stops_with_the_stage_name(stage, kept):
    model = _model()
    with pytest.raises(NonFiniteLossError, match=f"stage '{stage}' stopped.*learning rate"):
        quiet_train(model, max_epochs=2, callbacks=[InStage(stage, _poison)])
    assert model.trained_stages_ == kept
    assert not model.is_trained_
    with pytest.raises(ValueError, match="not trained"):
        model.generate(**GEN)


def test_nan_in_the_classifier_stage_keeps_vae_and_diffusion():
    model = _model()
    with pytest.raises(NonFiniteLossError, match="stage 'classifier'"):
        quiet_train(model, max_epochs=2, callbacks=[InStage("classifier", _poison)])
    assert model.trained_stages_ == ["vae", "diffusion"]
    with pytest.raises(ValueError, match=r"stages \['classifier'\] are not trained"):
        model.generate(**GEN)
    # the classifier alone is retrained, the rest is untouched
    vae, diffusion = _state(model.module.autoencoder), _state(model.module.diffusion)
    quiet_train(model, max_epochs=2, stages=["classifier"])
    assert model.is_trained_
    assert same_state(vae, _state(model.module.autoencoder))
    assert same_state(diffusion, _state(model.module.diffusion))
    assert model.generate(**GEN).n_obs == 20


def test_interrupted_stage_keeps_the_earlier_ones_and_resumes(tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    model = _model()
    with pytest.raises(KeyboardInterrupt, match="stage 'diffusion'"):
        quiet_train(model, max_epochs=2, callbacks=[InStage("diffusion", _interrupt)])
    # Lightning ignores Ctrl+C after an interrupt; the handler is restored
    assert signal.getsignal(signal.SIGINT) is handler
    assert model.trained_stages_ == ["vae"]
    assert set(model.history) == {k for k in model.history if k.startswith("vae_")}
    latents = model.get_latent_representation()
    assert latents.shape == (model.adata.n_obs, 4) and np.isfinite(latents).all()
    with pytest.raises(ValueError, match=r"model.train\(stages=\['diffusion', 'classifier'\]\)"):
        model.generate(**GEN)

    # saved and loaded mid-way, then resumed with the remaining stages
    model.save(str(tmp_path / "model"))
    loaded = ScDiffusion.load(str(tmp_path / "model"), adata=model.adata)
    assert loaded.trained_stages_ == ["vae"]
    np.testing.assert_array_equal(loaded.get_latent_representation(), latents)
    vae = _state(loaded.module.autoencoder)
    quiet_train(loaded, max_epochs=2, stages=["diffusion", "classifier"])
    assert loaded.is_trained_ and loaded.trained_stages_ == ["vae", "diffusion", "classifier"]
    assert same_state(vae, _state(loaded.module.autoencoder))
    assert {k.split("_")[0] for k in loaded.history} == {"vae", "diffusion", "classifier"}
    assert loaded.generate(**GEN).n_obs == 20


def test_stage_arguments_are_checked():
    model = _model(guidance="classifier_free")
    with pytest.raises(ValueError, match=r"need a trained VAE"):
        model.train(max_epochs=1, stages=["diffusion"])
    with pytest.raises(ValueError, match=r"Unknown stage 'classifier'.*\['vae', 'diffusion'\]"):
        model.train(max_epochs=1, stages=["classifier"])
    with pytest.raises(ValueError, match="Unknown stage 'denoiser'"):
        model.train(max_epochs=1, stages=["denoiser"])
    with pytest.raises(TypeError, match="non-empty list"):
        model.train(max_epochs=1, stages=[])
    assert model.trained_stages_ == [] and not model.is_trained_


def test_retraining_the_vae_makes_later_stages_stale():
    model = quiet_train(_model(guidance="classifier_free"), max_epochs=1)
    assert model.trained_stages_ == ["vae", "diffusion"]
    with pytest.warns(UserWarning, match=r"stages \['diffusion'\] must be retrained"):
        quiet_train(model, max_epochs=1, stages="vae")
    assert model.trained_stages_ == ["vae"]
    with pytest.raises(ValueError, match=r"stages \['diffusion'\] are not trained"):
        model.generate(**GEN)


def _train_once(seed):
    scvi.settings.seed = seed
    model = quiet_train(_model(), max_epochs=2)
    return _state(model.module), model.generate(**GEN)


def test_cpu_training_and_generation_are_deterministic():
    # train() uses fewer threads than torch's setting when other processes keep cores busy:
    # with one thread the count cannot change between the runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        weights, cells = _train_once(0)
        again_weights, again_cells = _train_once(0)
    finally:
        torch.set_num_threads(threads)
    assert same_state(weights, again_weights)
    np.testing.assert_array_equal(cells.X.toarray(), again_cells.X.toarray())
    np.testing.assert_array_equal(cells.obsm["X_latent"], again_cells.obsm["X_latent"])
    other_weights, _ = _train_once(1)
    assert not same_state(weights, other_weights)


def test_non_finite_loss_error_survives_pickling():
    # exceptions cross processes (spawned data-parallel workers) by pickle
    error = NonFiniteLossError("diffusion", "the loss at epoch 3, step 120")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is NonFiniteLossError
    assert (again.stage, again.where, str(again)) == (error.stage, error.where, str(error))
