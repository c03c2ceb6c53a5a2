"""The generation plan's parts that need no model: interpolation weights, conditions per cell,
guidance targets and scales, the output's obs, and the plan a trained model builds."""

import inspect
import math

import numpy as np
import pandas as pd
import pytest

from scvi_diffusion import ScDiffusion
from scvi_diffusion.conditions import ConditionSpace
from scvi_diffusion.generation import check_request, plan_new_cells
from scvi_diffusion.generation._guidance import guidance_scales, target_weights
from scvi_diffusion.generation._new_cells import complete_assignment
from scvi_diffusion.generation._obs import (
    counterfactual_names,
    generation_token,
    output_obs,
    synthetic_names,
)
from scvi_diffusion.generation._request import check_sampling_arguments
from scvi_diffusion.generation._trajectories import Interpolation


def generate_arguments(**given) -> dict:
    """``generate``'s arguments as its front hands them to the request check: the defaults,
    overridden by ``given``."""
    parameters = inspect.signature(ScDiffusion.generate).parameters
    defaults = {
        k: p.default for k, p in parameters.items() if k not in ("self", "condition_values")
    }
    return {**defaults, **given, "condition_values": {}}


SPACE = ConditionSpace(
    categories={"cell_type": pd.Index(["B", "T", "NK"]), "tissue": pd.Index(["blood", "gut"])},
    roles={"cell_type": "cell_type", "tissue": "tissue"},
    extra={"phase": pd.Index(["G1", "S"])},
)


def test_interpolation_weights_run_through_the_grid_in_equal_runs():
    interpolation = Interpolation("cell_type", "B", "T", np.linspace(0.0, 1.0, 3), 400)
    np.testing.assert_array_equal(interpolation.weights(6), [0, 0, 0.5, 0.5, 1, 1])
    assert interpolation.params() == {
        "condition": "cell_type",
        "source": "B",
        "target": "T",
        "n_points": 3,
        "start_time": 400,
    }


def test_requested_conditions_are_kept_and_the_rest_come_from_reference_cells():
    requested = pd.DataFrame({"cell_type": pd.Categorical(["NK", "B"], categories=["B", "NK"])})
    training = pd.DataFrame({"cell_type": ["T", "B", "NK"], "tissue": ["gut", "blood", "gut"]})
    assignment = complete_assignment(
        requested, training, np.array([2, 1]), ["cell_type", "tissue"], SPACE
    )
    assert list(assignment["cell_type"]) == ["NK", "B"]
    assert list(assignment["tissue"]) == ["gut", "blood"]
    # the training categories, in their order, whatever the request held
    assert list(assignment["cell_type"].cat.categories) == ["B", "T", "NK"]


def test_target_weights_are_one_hot_or_split_between_source_and_target():
    assignment = pd.DataFrame(
        {
            "cell_type": pd.Categorical(
                ["T", "T", "T", "T"], categories=SPACE.categories_of("cell_type")
            ),
            "tissue": pd.Categorical(["gut", "blood", "gut", "gut"], categories=["blood", "gut"]),
        }
    )
    interpolation = Interpolation("cell_type", "B", "NK", np.array([0.0, 1.0]), 300)
    weights = target_weights(assignment, ["cell_type", "tissue"], SPACE, interpolation)
    np.testing.assert_array_equal(weights["tissue"], [[0, 1], [1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(
        weights["cell_type"], [[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]]
    )
    assert all(w.dtype == np.float32 for w in weights.values())


def test_guidance_scales_default_per_condition_and_overridden_by_name_or_role():
    defaults = {"cell_type": 1.5, "tissue": 1.5, "phase": 4.0}
    assert guidance_scales(None, SPACE, defaults) == defaults
    assert guidance_scales(2, SPACE, defaults) == {"cell_type": 2.0, "tissue": 2.0, "phase": 2.0}
    assert guidance_scales({"tissue": 0}, SPACE, defaults)["tissue"] == 0.0


@pytest.mark.parametrize(
    ("scale", "error", "message"),
    [
        (-1.0, ValueError, "non-negative"),
        (math.inf, ValueError, "non-negative"),
        (math.nan, ValueError, "non-negative"),
        ("2", TypeError, "non-negative"),
        ({"organ": 1.0}, ValueError, "Unknown condition"),
        ({"tissue": -0.5}, ValueError, "guidance_scale\\['tissue'\\]"),
    ],
)
def test_bad_guidance_scales_are_refused(scale, error, message):
    with pytest.raises(error, match=message):
        guidance_scales(scale, SPACE, {"cell_type": 1.5, "tissue": 1.5})


def test_output_obs_names_cells_and_drops_unused_categories():
    assignment = pd.DataFrame(
        {"cell_type": pd.Categorical(["B", "B"], categories=SPACE.categories_of("cell_type"))}
    )
    batches = pd.Categorical(["b2", "b1"], categories=["b1", "b2", "b3"])
    obs = output_obs(assignment, batches, "batch", None, SPACE, synthetic_names(2, "0a1b2c3d"))
    assert list(obs.index) == ["synthetic-0a1b2c3d-0", "synthetic-0a1b2c3d-1"]
    assert list(obs["cell_type"].cat.categories) == ["B"]
    assert list(obs["batch"].cat.categories) == ["b1", "b2"]


def test_cell_names_carry_a_fresh_token_and_the_source_cells_names():
    tokens = {generation_token() for _ in range(20)}
    # random per call, never from a seed: 20 calls, 20 tokens of 8 hex digits
    assert len(tokens) == 20
    assert all(len(t) == 8 and set(t) <= set("0123456789abcdef") for t in tokens)
    assert list(counterfactual_names(pd.Index(["AAC-1", "GTT-1"]), "0a1b2c3d")) == [
        "AAC-1-cf-0a1b2c3d",
        "GTT-1-cf-0a1b2c3d",
    ]
    # repeated source names (anndata allows them) still give unique names
    repeated = counterfactual_names(pd.Index(["AAC-1", "AAC-1", "7"]), "0a1b2c3d")
    assert list(repeated) == ["AAC-1-cf-0a1b2c3d-0", "AAC-1-cf-0a1b2c3d-1", "7-cf-0a1b2c3d-2"]


def test_interpolated_obs_hold_weights_source_and_target_instead_of_the_condition():
    assignment = pd.DataFrame(
        {"cell_type": pd.Categorical(["T"] * 4, categories=SPACE.categories_of("cell_type"))}
    )
    interpolation = Interpolation("cell_type", "B", "NK", np.array([0.0, 1.0]), 300)
    obs = output_obs(assignment, None, None, interpolation, SPACE, synthetic_names(4, "f"))
    assert obs["cell_type"].isna().all()
    assert list(obs["interpolation_weight"]) == [0.0, 0.0, 1.0, 1.0]
    assert set(obs["interpolation_source"]) == {"B"} and set(obs["interpolation_target"]) == {"NK"}


def test_sampling_defaults_follow_the_autoencoder_and_the_sampler():
    scvi = check_sampling_arguments(None, None, "counts", 10, None, "scvi", 1000)
    assert (scvi.sampler, scvi.n_steps) == ("dpmpp_2m", 20)
    mlp = check_sampling_arguments(None, None, "counts", 10, 3, "mlp", 1000)
    assert (mlp.sampler, mlp.n_steps, mlp.seed) == ("ddpm", 1000, 3)
    # DDIM's default 50 steps on a 40-step schedule
    with pytest.raises(ValueError, match="at most T=40"):
        check_sampling_arguments("ddim", None, "counts", 10, None, "scvi", 40)


def test_a_trained_model_plans_before_it_samples(tiny_model):
    """The plan says which classifiers are trained on demand, and sampling needs nothing else."""
    arguments = generate_arguments(
        n=5, conditions={"cell_type": "CD19+ B", "phase": "S"}, n_steps=3, batch_size=8, seed=0
    )
    request = check_request(tiny_model._request_context(), **arguments)
    trained = tiny_model._trained_model()
    plan = plan_new_cells(request, trained)
    assert plan.n_cells == 5 and len(plan.timesteps(trained.module.schedule)) == 3
    guidance = plan.guidance
    assert [t.key for t in guidance.classifier_terms] == ["cell_type", "tissue", "phase"]
    assert guidance.denoiser_terms == []
    already = "phase" in tiny_model._auxiliary_guidance
    assert ("phase" in guidance.classifiers_to_train) != already
    assert plan.library.shape == (5,) and (plan.library >= 1).all()
    assert set(plan.obs["cell_type"]) == {"CD19+ B"} and set(plan.obs["phase"]) == {"S"}
