"""Guidance for the samplers: classifier guidance and classifier-free guidance.

:class:`ClassifierGuidance` is a guidance function (the gradient the samplers add to the score)
and :class:`ClassifierFreeGuidance` a noise-prediction function; either is passed to a sampler
(:func:`~scvi_diffusion.diffusion.run_sampler`), which knows nothing about classifiers
or labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


class ClassifierGuidance:
    """Gradient of a weighted sum of classifier log-probabilities.

    For each condition ``k`` with classifier ``f_k``, target weights ``W_k`` (one row per cell:
    one-hot for a requested class, ``(1 - w, w)`` over two classes for Gradient Interpolation)
    and scale ``s_k``, returns ``sum_k s_k * grad_x sum_c W_kc log p_k(c | x_t, t)``.
    Classifiers were trained on ``t < horizon`` only, so no guidance is given above it.

    Parameters
    ----------
    classifiers
        One classifier per condition, called as ``f(x_t, t) -> logits``.
    target_weights
        One ``(n_cells, n_classes)`` weight matrix per classifier.
    scales
        One guidance scale per classifier.
    horizon
        Guidance is applied for ``t < horizon``.
    """

    def __init__(
        self,
        classifiers: Sequence[nn.Module],
        target_weights: Sequence[torch.Tensor],
        scales: Sequence[float],
        horizon: int,
    ):
        self.terms = [
            (clf, w, float(s))
            for clf, w, s in zip(classifiers, target_weights, scales, strict=True)
            if float(s) != 0.0
        ]
        self.horizon = horizon

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        if not self.terms or int(t[0]) >= self.horizon:
            return None
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            objective = x_in.new_zeros(())
            for clf, weights, scale in self.terms:
                log_probs = torch.log_softmax(clf(x_in, t), dim=-1)
                objective = objective + scale * (weights * log_probs).sum()
            (grad,) = torch.autograd.grad(objective, x_in)
        return grad


COMPOSITIONS = ("compositional", "joint")
"""How classifier-free guidance combines several conditions (see
:class:`ClassifierFreeGuidance`)."""


class ClassifierFreeGuidance:
    """Classifier-free guidance: a noise prediction from a conditional denoiser.

    With ``eps(x, t, labels)`` a denoiser trained with each condition randomly replaced by a
    null label (Ho & Salimans, 2022), several conditions combine in one of two ways:

    - ``"compositional"`` (Liu et al., 2022; as CFGen): each condition alone,
      ``eps_null + sum_k s_k * (sum_c W_kc eps(x, t, y_k = c) - eps_null)``, where
      ``eps(x, t, y_k = c)`` gives condition ``k`` only. It assumes the conditions act
      independently, which lets it reach combinations never seen in training;
    - ``"joint"``: all conditions at once, each sharpened given the others,
      ``eps_J + sum_k (s_k - 1) * (eps_J - eps_J-k)``, where ``eps_J`` gives every condition
      and ``eps_J-k`` every condition but ``k``. With every ``s_k = 1`` it is the plain joint
      conditional model, which knows how the conditions interact (a drug's effect in one
      patient rather than its average over patients).

    With a single condition both are ``eps_null + s * (eps_y - eps_null)``. Larger scales
    sharpen a condition; a scale of 0 leaves it out (``"joint"``: as if not given). ``(1 - w,
    w)`` weights over two classes interpolate the conditional predictions (Gradient
    Interpolation; ``"joint"`` allows it for one condition per cell). All predictions of a
    step run as one batch.

    Parameters
    ----------
    denoiser
        Called as ``denoiser(x_t, t, labels) -> eps``; ``labels`` is ``(n, n_conditions)``.
    null_labels
        The null label of each condition, ``(n_conditions,)``.
    target_weights
        One ``(n_cells, n_classes)`` weight matrix per condition (rows sum to 1, at most two
        non-zero entries; a zero row gives that cell no target), or None for a condition that
        is not guided; for a continuous condition, each cell's value ``(n_cells,)`` (NaN: no
        target), which the denoiser takes after the categorical labels.
    scales
        One guidance scale per condition.
    composition
        ``"compositional"`` or ``"joint"``.
    """

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        null_labels: torch.Tensor,
        target_weights: Sequence[torch.Tensor | None],
        scales: Sequence[float],
        composition: str = "compositional",
    ):
        if composition not in COMPOSITIONS:
            raise ValueError(f"`composition` must be one of {COMPOSITIONS}, got {composition!r}.")
        self.denoiser = denoiser
        guided = [
            (k, weights, float(scale))
            for k, (weights, scale) in enumerate(zip(target_weights, scales, strict=True))
            if weights is not None and float(scale) != 0.0
        ]
        self.labels = None
        self.coefficients = None
        if not guided:
            return
        if composition == "joint":
            label_sets, coefficients = _joint_passes(null_labels, guided)
        else:
            label_sets, coefficients = _compositional_passes(null_labels, guided)
        self.labels = torch.cat(label_sets)
        self.coefficients = torch.stack(coefficients).unsqueeze(-1)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return self.denoiser(x, t)
        return _weighted_passes(self.denoiser, self.labels, self.coefficients, x, t)


class AnalogyGuidance:
    """Guidance toward a combination of conditions by analogy with groups that show it.

    ``eps_J(base) + sum_g c_g * (eps_J(target_g) - eps_J(source_g))``: the joint prediction
    of each cell's own combination plus the change that the requested conditions make in
    other groups of cells (``target_g`` and ``source_g`` differ only in the changed
    conditions), weighted by ``c_g`` (the guidance scale over the number of groups; 0 pads).

    Parameters
    ----------
    denoiser
        Called as ``denoiser(x_t, t, labels) -> eps``.
    base
        Each cell's own labels, ``(n_cells, n_conditions)``.
    target, source
        Each group's labels with the requested and with the own values, ``(n_groups,
        n_cells, n_conditions)``.
    coefficients
        ``(n_groups, n_cells)``.
    """

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        base: torch.Tensor,
        target: torch.Tensor,
        source: torch.Tensor,
        coefficients: torch.Tensor,
    ):
        self.denoiser = denoiser
        self.labels = torch.cat([base, *target, *source])
        ones = torch.ones_like(coefficients[:1])
        self.coefficients = torch.cat([ones, coefficients, -coefficients]).unsqueeze(-1)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return _weighted_passes(self.denoiser, self.labels, self.coefficients, x, t)


def _weighted_passes(denoiser, labels, coefficients, x: torch.Tensor, t: torch.Tensor):
    """``sum_p coefficients[p] * eps(x, t, labels[p])``: the passes, one per label set of
    ``labels`` (stacked), run as one batch; ``coefficients`` is ``(n_passes, n_cells, 1)``."""
    n_passes = coefficients.shape[0]
    eps = denoiser(x.repeat(n_passes, 1), t.repeat(n_passes), labels)
    return (eps.view(n_passes, *x.shape) * coefficients).sum(0)


def _top_two(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two largest weights of each row and their classes, ``(2, n_cells)`` each; for a
    continuous condition (``weights`` is each cell's value), weight 1 on the value where it is
    given and 0 on the second."""
    if weights.ndim == 1:
        given = (~torch.isnan(weights)).to(torch.float32)
        return torch.stack([given, torch.zeros_like(given)]), torch.stack([weights, weights])
    top = weights.topk(min(2, weights.shape[1]), dim=1)
    values, classes = top.values.T, top.indices.T
    if values.shape[0] == 1:
        values = torch.cat([values, torch.zeros_like(values)])
        classes = torch.cat([classes, classes])
    return values, classes


def _compositional_passes(null_labels: torch.Tensor, guided) -> tuple[list, list]:
    """Labels and per-cell coefficients of compositional guidance: the null pass, then one
    pass per condition and class with a non-zero weight."""
    n_cells = guided[0][1].shape[0]
    null = null_labels.expand(n_cells, -1)
    label_sets, coefficients = [], []
    for k, weights, scale in guided:
        for values, classes in zip(*_top_two(weights), strict=True):
            if not bool((values > 0).any()):
                continue
            labels = null.clone()
            labels[:, k] = classes
            label_sets.append(labels)
            coefficients.append(scale * values)
    null_coefficient = 1.0 - torch.stack(coefficients).sum(0)
    return [null, *label_sets], [null_coefficient, *coefficients]


def _joint_passes(null_labels: torch.Tensor, guided) -> tuple[list, list]:
    """Labels and per-cell coefficients of joint guidance.

    Each cell's joint label takes every guided condition's top class (null where its weight
    row is zero); a cell whose weights split between two classes of one condition
    (interpolation) is the mixture of two joint labels, the ``branch`` of the second class
    weighted by its weight. Each branch has its joint pass and, for every condition with a
    scale other than 1, the same labels without that condition.
    """
    n_cells = guided[0][1].shape[0]
    values, classes = zip(*(_top_two(weights) for _, weights, _ in guided), strict=True)
    mixed = torch.stack([v[1] > 0 for v in values])  # (n_guided, n_cells)
    if bool((mixed.sum(0) > 1).any()):
        raise ValueError("Joint guidance interpolates one condition per cell at most.")
    device = guided[0][1].device
    branch_weights = [torch.ones(n_cells, device=device), torch.zeros(n_cells, device=device)]
    for v, m in zip(values, mixed, strict=True):
        branch_weights[0] = torch.where(m, v[0], branch_weights[0])
        branch_weights[1] = torch.where(m, v[1], branch_weights[1])
    label_sets, coefficients = [], []
    for branch, weight in enumerate(branch_weights):
        if branch and not bool(mixed.any()):
            break
        joint = null_labels.expand(n_cells, -1).clone()
        for (k, _, _), v, c, m in zip(guided, values, classes, mixed, strict=True):
            given = v[0] > 0
            chosen = torch.where(m & (branch == 1), c[1], c[0])
            joint[:, k] = torch.where(given, chosen, null_labels[k])
        sharpening = [(k, scale) for k, _, scale in guided if scale != 1.0]
        label_sets.append(joint)
        coefficients.append(weight * (1.0 + sum(scale - 1.0 for _, scale in sharpening)))
        for k, scale in sharpening:
            without = joint.clone()
            without[:, k] = null_labels[k]
            label_sets.append(without)
            coefficients.append(weight * (1.0 - scale))
    return label_sets, coefficients
