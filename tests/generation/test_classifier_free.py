"""Classifier-free guidance: the conditional denoiser, its training dropout, compositional
sampling, and the model-level mode."""

import numpy as np
import pytest
import scvi
import torch

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.diffusion import AnalogyGuidance, ClassifierFreeGuidance
from scvi_diffusion.module import LatentDiffusionModule, SkipMLPDenoiser

from ..conftest import quiet_train

GEN = {"n_steps": 5, "progress_bar": False}


class LabelEcho(torch.nn.Module):
    """A fake denoiser whose prediction reveals the labels it was given."""

    def __init__(self, n_classes):
        super().__init__()
        self.register_buffer("null_labels", torch.as_tensor(n_classes))
        self.calls = 0

    def forward(self, x, t, labels=None):
        self.calls += 1
        if labels is None:
            labels = self.null_labels.expand(x.shape[0], -1)
        # condition 0 shifts by its label + 1 (0 when null), condition 1 by 10 * (label + 1)
        shift = torch.zeros(x.shape[0])
        for k, scale in enumerate((1.0, 10.0)):
            given = labels[:, k] != self.null_labels[k]
            shift = shift + torch.where(given, scale * (labels[:, k] + 1).float(), 0.0)
        return x + shift.unsqueeze(-1)


def one_hot(codes, n_classes):
    return torch.nn.functional.one_hot(torch.as_tensor(codes), n_classes).float()


def test_compositional_guidance_combines_the_predictions():
    denoiser = LabelEcho([3, 2])
    x = torch.zeros(4, 2)
    t = torch.zeros(4, dtype=torch.long)
    guidance = ClassifierFreeGuidance(
        denoiser,
        denoiser.null_labels,
        [one_hot([0, 1, 2, 2], 3), one_hot([1, 1, 0, 0], 2)],
        [2.0, 0.5],
    )
    eps = guidance(x, t)
    # null predicts 0; condition 0 alone predicts label + 1; condition 1 alone 10 * (label + 1)
    expected = 2.0 * torch.tensor([1.0, 2.0, 3.0, 3.0]) + 0.5 * torch.tensor([20, 20, 10, 10.0])
    torch.testing.assert_close(eps, expected.unsqueeze(-1).expand(4, 2))
    assert denoiser.calls == 1  # all predictions in one batch


def test_interpolation_weights_blend_the_conditional_predictions():
    denoiser = LabelEcho([3, 2])
    weights = torch.zeros(3, 3)
    w = torch.tensor([0.0, 0.5, 1.0])
    weights[:, 0], weights[:, 2] = 1 - w, w
    guidance = ClassifierFreeGuidance(denoiser, denoiser.null_labels, [weights, None], [1.0, 1.0])
    eps = guidance(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))
    # (1 - w) * 1 + w * 3 for the class-0 -> class-2 blend
    torch.testing.assert_close(eps.view(-1), torch.tensor([1.0, 2.0, 3.0]))


def test_zero_scales_give_the_unconditional_prediction():
    denoiser = LabelEcho([3, 2])
    guidance = ClassifierFreeGuidance(
        denoiser, denoiser.null_labels, [one_hot([1, 2], 3), one_hot([0, 1], 2)], [0.0, 0.0]
    )
    x = torch.randn(2, 3)
    torch.testing.assert_close(guidance(x, torch.zeros(2, dtype=torch.long)), x)


def test_conditional_denoiser_uses_its_labels():
    torch.manual_seed(0)
    denoiser = SkipMLPDenoiser(4, (32, 16, 8), n_classes=[3, 2]).eval()
    x, t = torch.randn(5, 4), torch.full((5,), 10)
    null = denoiser.null_labels.expand(5, -1)
    torch.testing.assert_close(denoiser(x, t), denoiser(x, t, null))
    labels = torch.tensor([[0, 1]] * 5)
    assert not torch.allclose(denoiser(x, t, labels), denoiser(x, t))
    assert list(denoiser.null_labels) == [3, 2]


@pytest.mark.parametrize(
    ("dropout", "training", "expect_null"),
    [(1.0, True, True), (1.0, False, False), (0.0, True, False)],
)
def test_condition_dropout_only_in_training(dropout, training, expect_null):
    module = LatentDiffusionModule(
        4, (32, 16, 8), n_classes=[3], condition_registry_keys=["c"], condition_dropout=dropout
    )
    module.train(training)
    labels = torch.zeros(6, 1, dtype=torch.long)
    out = module.inference(torch.randn(6, 4), labels)["labels"]
    assert bool((out == 3).all()) is expect_null
    assert bool((out == 0).all()) is (not expect_null)


@pytest.fixture(scope="module")
def free_model():
    scvi.settings.seed = 0
    adata = scvi_diffusion.data.pbmc68k_two_factor()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", tissue_key="tissue")
    model = ScDiffusion(adata, n_latent=6, guidance="classifier_free")
    return quiet_train(model, max_epochs=3)


def test_classifier_free_model_trains_no_classifiers(free_model):
    assert free_model.guidance == "classifier_free"
    assert not any(key.startswith("classifier") for key in free_model.history)
    assert len(free_model.module.guidance.classifiers) == 0
    assert free_model.module.diffusion.is_conditional
    assert "classifier-free guidance" in free_model._model_summary_string


def test_classifier_free_generation(free_model):
    syn = free_model.generate(n=12, cell_type="CD19+ B", tissue="control", seed=0, **GEN)
    assert syn.n_obs == 12 and (syn.obs["cell_type"] == "CD19+ B").all()
    params = syn.uns["scdiffusion"]
    assert params["guidance"] == "classifier_free"
    assert params["guidance_scale"] == {"cell_type": 1.5, "tissue": 1.5}
    scaled = free_model.generate(
        n=12, cell_type="CD19+ B", guidance_scale={"tissue": 0.0}, seed=0, **GEN
    )
    assert scaled.uns["scdiffusion"]["guidance_scale"] == {"cell_type": 1.5, "tissue": 0.0}
    traj = free_model.generate(
        n=22,
        interpolate={"cell_type": ("CD34+", "CD19+ B")},
        conditions={"tissue": "control"},
        seed=0,
        **GEN,
    )
    assert np.unique(traj.obs["interpolation_weight"]).size == 11
    assert (traj.obs["tissue"] == "control").all()


def test_classifier_free_save_load(free_model, tmp_path):
    before = free_model.generate(n=10, cell_type="CD14+ Monocyte", seed=3, **GEN)
    free_model.save(str(tmp_path / "model"))
    loaded = ScDiffusion.load(str(tmp_path / "model"), adata=free_model.adata)
    assert loaded.guidance == "classifier_free"
    after = loaded.generate(n=10, cell_type="CD14+ Monocyte", seed=3, **GEN)
    np.testing.assert_array_equal(before.X.toarray(), after.X.toarray())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"guidance": "free"}, "Unknown guidance 'free'.*classifier_free"),
        ({"guidance": "classifier_free", "condition_dropout": 1.5}, "condition_dropout"),
        ({"guidance": "classifier_free", "condition_dropout": 0}, "condition_dropout"),
    ],
)
def test_bad_guidance_arguments(kwargs, message):
    adata = scvi_diffusion.data.pbmc68k()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    with pytest.raises(ValueError, match=message):
        ScDiffusion(adata, **kwargs)


class InteractionEcho(LabelEcho):
    """A fake denoiser whose conditions interact: with both given, their product is added."""

    def forward(self, x, t, labels=None):
        eps = super().forward(x, t, labels)
        if labels is None:
            return eps
        both = (labels != self.null_labels).all(dim=1)
        product = ((labels[:, 0] + 1) * (labels[:, 1] + 1)).float()
        return eps + torch.where(both, product, 0.0).unsqueeze(-1)


def test_joint_and_compositional_guidance_agree_without_interactions():
    """``eps_J + sum_k (s_k - 1)(eps_J - eps_J-k)`` is the compositional prediction when the
    conditions add up; with an interaction only the joint one keeps it."""
    weights = [one_hot([0, 1, 2], 3), one_hot([1, 0, 1], 2)]
    x, t = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)
    additive = LabelEcho([3, 2])
    joint, compositional = (
        ClassifierFreeGuidance(additive, additive.null_labels, weights, [2.0, 0.5], composition)
        for composition in ("joint", "compositional")
    )
    torch.testing.assert_close(joint(x, t), compositional(x, t))
    interacting = InteractionEcho([3, 2])
    plain = ClassifierFreeGuidance(
        interacting, interacting.null_labels, weights, [1.0, 1.0], "joint"
    )
    # the plain joint model: both shifts and their product
    expected = torch.tensor([1 + 20 + 2, 2 + 10 + 2, 3 + 20 + 6.0])
    torch.testing.assert_close(plain(x, t), expected.unsqueeze(-1).expand(3, 2))
    # a scale of 0 leaves a condition out: the other one alone
    alone = ClassifierFreeGuidance(
        interacting, interacting.null_labels, weights, [1.0, 0.0], "joint"
    )
    torch.testing.assert_close(alone(x, t)[:, 0], torch.tensor([1.0, 2.0, 3.0]))


def test_joint_guidance_blends_the_interpolated_condition():
    denoiser = InteractionEcho([3, 2])
    weights = torch.zeros(3, 3)
    w = torch.tensor([0.0, 0.5, 1.0])
    weights[:, 0], weights[:, 2] = 1 - w, w
    guidance = ClassifierFreeGuidance(
        denoiser, denoiser.null_labels, [weights, one_hot([0, 0, 0], 2)], [1.0, 1.0], "joint"
    )
    eps = guidance(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))
    # (1 - w) * J(class 0, 0) + w * J(class 2, 0): J(c, 0) = (c + 1) + 10 + (c + 1)
    start, end = 1 + 10 + 1.0, 3 + 10 + 3.0
    torch.testing.assert_close(eps.view(-1), (1 - w) * start + w * end)
    with pytest.raises(ValueError, match="one condition per cell"):
        ClassifierFreeGuidance(
            denoiser, denoiser.null_labels, [weights, torch.full((3, 2), 0.5)], [1, 1], "joint"
        )
    with pytest.raises(ValueError, match="composition"):
        ClassifierFreeGuidance(denoiser, denoiser.null_labels, [weights, None], [1, 1], "mixed")


def test_analogy_guidance_adds_the_groups_change():
    """``eps_J(own) + sum_g c_g (eps_J(g, target) - eps_J(g, own values))``."""
    denoiser = InteractionEcho([3, 2])
    own = torch.tensor([[2, 0]])  # the cell: class 2 of condition 0, value 0 of condition 1
    target = torch.tensor([[[0, 1]], [[1, 1]]])  # two groups with value 1
    source = torch.tensor([[[0, 0]], [[1, 0]]])  # the same groups with value 0
    coefficients = torch.tensor([[0.75], [0.75]])  # scale 1.5 over two groups
    guidance = AnalogyGuidance(denoiser, own, target, source, coefficients)
    eps = guidance(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))
    # J(c, v) = (c + 1) + 10 (v + 1) + (c + 1)(v + 1); change in group c: 10 + (c + 1)
    change = np.mean([10 + 1, 10 + 2])
    assert eps.item() == pytest.approx(3 + 10 + 3 + 1.5 * change)
