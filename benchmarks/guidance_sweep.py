"""Guidance scale and sampler sweep on the bundled PBMC data (training cells as reference).

``python benchmarks/guidance_sweep.py [n_latent]``: trains the default model once, then
generates the training composition with DDIM (50 steps) at several guidance scales and with the
paper's 1000-step DDPM, printing time, conditional accuracy (macro and micro) and mean
expression correlation.
"""

import sys
import time
import warnings

from _common import timed_train

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import conditional_accuracy, mean_expression_correlation, shared_space

warnings.filterwarnings("ignore")


def main():
    n_latent = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    adata = scvi_diffusion.data.pbmc68k()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata, n_latent=n_latent)
    seconds = timed_train(model, enable_progress_bar=False)
    print(f"train total {seconds:.1f}s, per stage {model.stage_seconds_}")
    for scale in (0.0, 1.0, 2.0, 4.0, 8.0):
        settings = (("ddim", 50), ("ddpm", 1000)) if scale == 2.0 else (("ddim", 50),)
        for sampler, n_steps in settings:
            started = time.perf_counter()
            syn = model.generate(
                conditions=adata.obs[["cell_type"]],
                guidance_scale=scale,
                sampler=sampler,
                n_steps=n_steps,
                seed=0,
                progress_bar=False,
            )
            seconds = time.perf_counter() - started
            space = shared_space(adata, syn)
            macro = conditional_accuracy(adata, syn, "cell_type", space=space)
            micro = conditional_accuracy(adata, syn, "cell_type", space=space, average="micro")
            corr = mean_expression_correlation(adata, syn, space=space)
            print(
                f"guidance={scale} {sampler}{n_steps} time={seconds:.2f}s acc_macro={macro:.3f} "
                f"acc_micro={micro:.3f} spearman={corr['spearman']:.4f} "
                f"pearson={corr['pearson']:.4f}",
                flush=True,
            )
    space = shared_space(adata, adata)
    print(
        "real cells' own macro accuracy",
        conditional_accuracy(adata, adata, "cell_type", space=space),
    )


if __name__ == "__main__":
    main()
