"""Train ScDiffusion with Lightning's distributed data parallel on CPU processes.

Run by ``tests/test_distributed.py``:
``python train_distributed.py OUT_DIR N_DEVICES VAE_EPOCHS DIFFUSION_EPOCHS CLASSIFIER_EPOCHS``.
Lightning's DDP launcher starts the other processes by running this script again, so all of it
runs once per process; each process records what it saw, and only rank 0 saves the model.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import scvi
import torch

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import stratified_split

warnings.filterwarnings("ignore")


def main(
    out: Path, n_devices: int, vae_epochs: int, diffusion_epochs: int, classifier_epochs: int
):
    scvi.settings.seed = 0
    train, _ = stratified_split(scvi_diffusion.data.pbmc68k(), "cell_type", random_state=0)
    ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
    model = ScDiffusion(train)
    model.train(
        vae_epochs=vae_epochs,
        diffusion_epochs=diffusion_epochs,
        classifier_epochs=classifier_epochs,
        accelerator="cpu",
        devices=n_devices,
        # scVI leaves some parameters unused (e.g. the library-size encoder)
        strategy="ddp_find_unused_parameters_true",
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    record = {
        "rank": rank,
        "world_size": world_size,
        "stage_seconds": model.stage_seconds_,
        # identical on every rank only if the processes averaged their gradients
        "weight_checksum": float(sum(p.double().sum() for p in model.module.parameters())),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    if rank == 0:
        model.save(str(out / "model"), overwrite=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:6]))
