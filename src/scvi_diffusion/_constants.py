"""Every default and shared name of the model, in one place.

Each default says where it was chosen: a benchmark in ``benchmarks/`` whose results are in
``docs/benchmarks.md``.
"""

from __future__ import annotations

# ---- architecture

AUTOENCODERS = ("scvi", "mlp")
"""``"scvi"``: scVI's VAE on raw counts; ``"mlp"``: the scDiffusion paper's MLP autoencoder."""
GUIDANCE_MODES = ("classifier", "classifier_free")
GENE_LIKELIHOODS = ("poisson", "nb", "zinb")
DISPERSIONS = ("gene", "gene-batch", "gene-cell")
DEFAULT_GENE_LIKELIHOOD = "auto"
DEFAULT_N_LATENT = {"scvi": 10, "mlp": 128}
# classifier-free guidance reaches held-out combinations of conditions and keeps single
# conditions realistic on data of thousands of cells, where classifier gradients push latents
# off the data (docs/benchmarks.md, "Conditioning"); the paper's setup keeps its classifiers
DEFAULT_GUIDANCE = {"scvi": "classifier_free", "mlp": "classifier"}
DEFAULT_CONDITION_DROPOUT = 0.25
# the denoiser's first level is 16x the latent, at least this wide: 160 for the default 10-d
# latent, where 256 (the floor before) cost 1.5x the time per step for the same held-out
# fidelity and held-out combinations (3 seeds on the bundled PBMCs, PBMC3K and the two-factor
# PBMCs), and 128 lost the held-out B cells' identity (docs/benchmarks.md, "Training speed")
DENOISER_MIN_WIDTH = 160
# classifier-free guidance of several conditions: the joint conditional model for combinations
# with at least this many training cells (it knows how their conditions interact, e.g. a drug's
# effect in one patient), conditions composed one by one for the rest (docs/benchmarks.md,
# "Real perturbations")
JOINT_GUIDANCE_MIN_CELLS = 10
# a counterfactual toward an unseen combination takes the change from at most this many other
# groups that show it (generation/_analogy.py): each costs two denoiser passes per step
ANALOGY_MAX_GROUPS = 8
NORMALIZED_TARGET_SUM = 1e4
"""Counts per cell of normalised expression (the paper's normalize_total target)."""

# ---- training

STAGES = ("vae", "diffusion", "classifier")
"""Training stages, in order; also the prefixes of ``model.history`` keys."""
STAGE_MODULES = {"vae": "autoencoder", "diffusion": "diffusion", "classifier": "guidance"}
"""Attribute of ``ScDiffusionModule`` that each stage trains."""
DEFAULT_EMA_DECAY = 0.999
# each latent stage's default budget: (most steps, cells drawn, passes over the cells that cap it
# on tiny data); its steps are the cells drawn in minibatches of its size, at most the most steps.
# The denoiser draws the cells of 4,000 minibatches of 256 (benchmarks/step_budget.py) in 2,000
# of 512 by default, and up to 4,000 smaller ones where fewer cells fill a minibatch
LATENT_DEFAULTS = {
    "diffusion": (4_000, 4_000 * 256, 10_000),
    "classifier": (3_000, 3_000 * 256, 500),
}
# the denoiser's optimiser: Adam's usual epsilon (as in diffusion models generally) instead of
# scvi-tools' 0.01, which for the small gradients of the noise-prediction loss damps every
# update; with it 4,000 steps are as faithful as 12,000 were (benchmarks/step_budget.py). Its
# learning rate, 1e-3 for minibatches of 256, is 1.5e-3 for the default 512 (about sqrt(2)
# times, the usual square-root scaling of Adam's rate with the minibatch): nearer the held-out
# fidelity of 4,000 steps of 256 than 1e-3
# (benchmarks/denoiser_batch.py)
LATENT_PLAN_DEFAULTS = {"diffusion": {"lr": 1.5e-3, "eps": 1e-8}, "classifier": {"lr": 1e-3}}
MEMBERSHIP_TIMESTEP_SHARES = (0.05, 0.1, 0.15)
"""Timesteps (shares of T) of the membership scores' denoising loss: where a denoiser that
fits its training latents predicts their noise best, and new cells' worst."""
MEMBERSHIP_NOISE_DRAWS = 8
"""Noises per timestep and cell of the membership scores."""
AUDIT_LIMITS = {"closest_record_share": 0.05, "memorized_fraction": 0.01, "membership_auc": 0.6}
"""The audit's limits: above the share of synthetic cells nearer a training cell that no
copying gives, above the holdout cells' own memorised fraction, and on the membership
attacks' ROC-AUC."""
# a denoiser step on 512 cells costs 1.7x one on 256 (most of a step of the small network is
# per-operation work), so the same cells drawn in half the steps train in about 30% less time
# for the same held-out fidelity and combinations (docs/benchmarks.md, "Training speed")
LATENT_BATCH_SIZES = {"diffusion": 512, "classifier": 256}
"""Default minibatch sizes of the latent stages; the classifiers' is also that of guidance
classifiers trained on demand."""
ENCODING_VALUES_PER_BATCH = 2**23
"""Counts densified at once when cells are encoded (about 8M values)."""

# ---- generation

# per guidance mode, chosen from the guidance-strength curves in docs/benchmarks.md
DEFAULT_GUIDANCE_SCALES = {"classifier": 4.0, "classifier_free": 1.5}
# the paper's setup samples with its own ancestral DDPM over all T steps
DEFAULT_SAMPLER = {"scvi": "dpmpp_2m", "mlp": "ddpm"}
# chosen from the fidelity-against-steps curve of benchmarks/speed.py
DEFAULT_STEPS = {"dpmpp_2m": 20, "ddim": 50}
OUTPUTS = ("counts", "normalized")
DEFAULT_N_CELLS = 1000
"""Cells generated when neither ``n`` nor a table of conditions says how many."""
DEFAULT_INTERPOLATION_START_TIME = 600
"""Timestep Gradient Interpolation noises its source cells to (the paper's)."""
COUNTERFACTUAL_START_TIMES = (100, 200, 300, 400, 600, 800)
"""Start times a counterfactual tries, lowest first, when none is given: it takes the lowest
that reaches the requested conditions by the model's own account (see
:data:`START_TIME_REACHED`); a low start keeps more of each cell, a high one gives a large
change room (docs/benchmarks.md, "Real perturbations")."""
START_TIME_REACHED = 0.8
"""Share of the change between new cells of the requested conditions and new cells of the
source cells' own ones (mean latents, the same guidance) that counterfactuals must move for a
start time to count as reaching."""
START_TIME_PROBE_CELLS = 1000
"""Source cells (at most) the start-time search runs on; the counterfactuals of all source
cells then run once, at the start time found."""
COUNTERFACTUAL_SAMPLER = "ddim"
"""Sampler of counterfactuals when the default would be the ancestral DDPM (the paper's
setup), whose fresh noise at every step would undo the inversion."""

# ---- names in AnnData and the registry

CONDITION_REGISTRY_PREFIX = "condition_"
"""Registry keys of condition fields are this prefix followed by the obs column name."""
CONTINUOUS_REGISTRY_PREFIX = "continuous_"
"""Registry keys of continuous condition fields: this prefix followed by the obs column name."""
ROLE_KEYS = ("cell_type", "tissue")
"""Role names accepted as aliases for the registered obs columns."""
LATENT_OBSM_KEY = "X_latent"
PARAMS_UNS_KEY = "scdiffusion"
INTERPOLATION_WEIGHT_KEY = "interpolation_weight"
SOURCE_CELL_KEY = "source_cell"
"""Obs column of a counterfactual: the name of the real cell it was made from."""


def condition_registry_key(obs_key: str) -> str:
    """Registry key of the categorical field that holds ``adata.obs[obs_key]``."""
    return f"{CONDITION_REGISTRY_PREFIX}{obs_key}"


def continuous_registry_key(obs_key: str) -> str:
    """Registry key of the field that holds the continuous condition ``adata.obs[obs_key]``."""
    return f"{CONTINUOUS_REGISTRY_PREFIX}{obs_key}"


VALUE_SPREAD_SIDES = ("below", "above")
VALUE_SPREAD_SHARE = 0.25
"""The sd of a training value's jitter toward the next measured value, as a share of the gap
to it (see ``conditions._continuous.vicinal_spreads``)."""


def value_spread_key(key: str, side: str) -> str:
    """Where a continuous condition's training jitter toward ``side`` ("below" or "above") is
    kept: ``key`` an obs column or that column's registry key (:func:`continuous_registry_key`)."""
    return f"{key} (spread {side})"
