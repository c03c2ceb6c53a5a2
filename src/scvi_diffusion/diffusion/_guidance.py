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


class ClassifierFreeGuidance:
    """Compositional classifier-free guidance: a noise prediction from a conditional denoiser.

    With ``eps(x, t, labels)`` a denoiser trained with each condition randomly replaced by a
    null label (Ho & Salimans, 2022), the guided prediction is

    ``eps_null + sum_k s_k * (sum_c W_kc eps(x, t, y_k = c) - eps_null)``

    where ``eps_null`` gives no condition and ``eps(x, t, y_k = c)`` gives condition ``k`` only
    (compositional guidance, Liu et al., 2022; used by CFGen). With one-hot ``W_k`` and
    ``s_k = 1`` for a single condition this is the plain conditional prediction; larger scales
    sharpen the conditions; ``(1 - w, w)`` weights over two classes interpolate the conditional
    predictions (Gradient Interpolation). All predictions of a step run as one batch.

    Parameters
    ----------
    denoiser
        Called as ``denoiser(x_t, t, labels) -> eps``; ``labels`` is ``(n, n_conditions)``.
    null_labels
        The null label of each condition, ``(n_conditions,)``.
    target_weights
        One ``(n_cells, n_classes)`` weight matrix per condition (rows sum to 1, at most two
        non-zero entries), or None for a condition that is not guided.
    scales
        One guidance scale per condition.
    """

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        null_labels: torch.Tensor,
        target_weights: Sequence[torch.Tensor | None],
        scales: Sequence[float],
    ):
        self.denoiser = denoiser
        label_sets, coefficients = [], []
        n_cells = None
        for k, (weights, scale) in enumerate(zip(target_weights, scales, strict=True)):
            if weights is None or float(scale) == 0.0:
                continue
            n_cells = weights.shape[0]
            top = weights.topk(min(2, weights.shape[1]), dim=1)
            for values, classes in zip(top.values.T, top.indices.T, strict=True):
                if not bool((values > 0).any()):
                    continue
                labels = null_labels.expand(n_cells, -1).clone()
                labels[:, k] = classes
                label_sets.append(labels)
                coefficients.append(float(scale) * values)
        if label_sets:
            null = null_labels.expand(n_cells, -1)
            null_coefficient = 1.0 - torch.stack(coefficients).sum(0)
            self.labels = torch.cat([null, *label_sets])
            self.coefficients = torch.stack([null_coefficient, *coefficients]).unsqueeze(-1)
        else:
            self.labels = None
            self.coefficients = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return self.denoiser(x, t)
        n_passes = self.coefficients.shape[0]
        eps = self.denoiser(x.repeat(n_passes, 1), t.repeat(n_passes), self.labels)
        return (eps.view(n_passes, *x.shape) * self.coefficients).sum(0)
