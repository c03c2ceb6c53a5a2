"""Train ScDiffusion with Lightning's distributed data parallel on CPU processes.

Run by ``tests/test_distributed.py``:
``python train_distributed.py OUT_DIR N_DEVICES VAE_EPOCHS DIFFUSION_EPOCHS CLASSIFIER_EPOCHS
[POISON]``. Lightning's DDP launcher starts the other processes by running this script again,
so all of it runs once per process; each process records what it saw, and only rank 0 saves the
model. With ``POISON``, rank 0 alone sets its denoiser's weights to NaN at the second step of
the diffusion stage, and each process records the error that stopped it.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import scvi
import torch
from lightning.pytorch.callbacks import Callback

import scvi_diffusion
from scvi_diffusion import NonFiniteLossError, ScDiffusion
from scvi_diffusion.metrics import stratified_split

warnings.filterwarnings("ignore")


class PoisonDenoiserOnRankZero(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (
            trainer.global_rank == 0
            and trainer.global_step == 1
            and hasattr(pl_module.module, "denoiser")
        ):
            with torch.no_grad():
                for parameter in pl_module.module.denoiser.parameters():
                    parameter.fill_(float("nan"))


LATENT_BATCH_SIZE = 256


def main(
    out: Path,
    n_devices: int,
    vae_epochs: int,
    diffusion_epochs: int,
    classifier_epochs: int,
    poison: bool = False,
):
    scvi.settings.seed = 0
    train, _ = stratified_split(scvi_diffusion.data.pbmc68k(), "cell_type", random_state=0)
    ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
    model = ScDiffusion(train)
    error = None
    try:
        model.train(
            vae_epochs=vae_epochs,
            diffusion_epochs=diffusion_epochs,
            classifier_epochs=classifier_epochs,
            # the test's single process takes half the passes for as many steps: true of 490
            # cells in minibatches of 256 (2 per pass, 1 for two processes), not of 512
            latent_batch_size=LATENT_BATCH_SIZE,
            accelerator="cpu",
            devices=n_devices,
            # scVI leaves some parameters unused (e.g. the library-size encoder)
            strategy="ddp_find_unused_parameters_true",
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[PoisonDenoiserOnRankZero()] if poison else [],
        )
    except NonFiniteLossError as stopped:
        error = str(stopped)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    record = {
        "rank": rank,
        "world_size": world_size,
        "stage_seconds": model.stage_seconds_,
        "trained_stages": model.trained_stages_,
        "error": error,
        # identical on every rank only if the processes averaged their gradients
        "weight_checksum": float(sum(p.double().sum() for p in model.module.parameters())),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    if rank == 0 and error is None:
        model.save(str(out / "model"), overwrite=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:6]), poison=len(sys.argv) > 6)
