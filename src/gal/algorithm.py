"""Algorithm 1's arithmetic as functions of tensors: Eqs. 3-7 and the update policy of lines 7-10.

Every path of :class:`gal.step.GradientAdjuster` computes its step with these functions: the
eager single-process and DDP ``batch`` steps and the ``sample`` step (:mod:`gal.eager_step`)
and the compiled step (:mod:`gal.compiled_step`). Written once, in one operation order, the
paths cannot drift apart.

* ``v = h(z)``                                         (Eq. 3): :func:`h_forward`
* ``v~ = alpha * ||grad_i|| * v_i / ||v_i||``,
  ``g = grad + v~``                                    (Eqs. 4-5): :func:`adjusted_gradient`
* ``z - eta~ g``                                       (line 7): :func:`tentative_point`
* ``eta~ <dl/dz, g>``                                  (Eq. 7's first-order term): :func:`first_order_term`
* ``r = l(z - eta~ g) - l(z) + eta~ <dl/dz, g>``       (Eq. 7): :func:`remainder`
* accept ``g`` or keep ``dl/dz``                        (lines 7-10): :func:`accept`, :func:`choose`

:func:`batch_remainder` and :func:`batch_decide` compose them into the single-process ``batch``
step after ``dl/dz``, shared by the eager and the compiled step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from gal.adjuster import NoiseAdjuster

LossFn = Callable[..., torch.Tensor]


@dataclasses.dataclass(frozen=True)
class GALStats:
    """Per-step diagnostics, all detached 0-dim tensors on the feature's device (no host sync).

    Attributes:
        loss: the reduced loss ``l(z)`` (what a plain loop would log).
        tentative_loss: ``l(z - eta~ g)`` (line 7); in ``sample`` granularity the mean over rows.
        remainder: ``r`` of Eq. 7 (``sample``: mean of the per-row ``r_i``).
        abs_remainder: ``|r|``, the objective (6) h is trained on (``sample``: mean ``|r_i|``).
        accept_rate: fraction of adjusted updates accepted by the policy (lines 7-10).
        cosine: mean cosine similarity between ``v~`` and ``dl/dz`` (Fig. 6, right).
        g_beats_grad: fraction for which ``l(z - eta~ g) < l(z - eta~ dl/dz)`` (Fig. 8b);
            NaN when ``compare_vanilla=False``.
    """

    loss: torch.Tensor
    tentative_loss: torch.Tensor
    remainder: torch.Tensor
    abs_remainder: torch.Tensor
    accept_rate: torch.Tensor
    cosine: torch.Tensor
    g_beats_grad: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` for loggers; reduce (e.g. ``float()``) when you choose to sync."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class StepSettings(Protocol):
    """The settings of a GAL step that the step functions read (:class:`gal.step.GradientAdjuster`
    has them all)."""

    dim: int
    alpha: float
    beta: float
    eps: float
    policy: str
    first_order: str
    noise_scaling: str
    compare_vanilla: bool
    h: nn.Module


# -- Eqs. 3-5 -------------------------------------------------------------------------------
def mean_loss(loss_fn: LossFn, zs: torch.Tensor, y: Any) -> torch.Tensor:
    """``l(z)``, checked to be the mean-reduced scalar loss."""
    loss = loss_fn(zs, y)
    if loss.ndim != 0:
        raise ValueError(
            f"loss_fn(z, y) must return the mean-reduced scalar loss (got shape {tuple(loss.shape)})"
        )
    return loss


def h_forward(module: nn.Module, zd: torch.Tensor,
              h: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``v = h(z)`` (Eq. 3) in z's dtype; h sees its parameters' dtype.

    ``h`` calls ``module`` with other parameters (the compiled step's ``functional_call``);
    by default ``module`` itself.
    """
    h = module if h is None else h
    p = next(module.parameters(), None)
    if p is not None and p.dtype != zd.dtype:
        return h(zd.to(p.dtype)).to(zd.dtype)
    return h(zd)


def unit_noise(s: StepSettings) -> bool:
    """Whether Eq. 4 drops ``||grad||`` (noise adjusters with ``noise_scaling="unit"``, Table VI)."""
    return isinstance(s.h, NoiseAdjuster) and s.noise_scaling == "unit"


def adjusted_gradient(
    v: torch.Tensor, grad: torch.Tensor, alpha: float, eps: float, unit: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(direction, ||grad||, v~, g)`` of Eqs. 4-5 for ``v = h(z)`` and ``grad = dl/dz``.

    ``direction = v / ||v||`` and ``||grad||`` are per row (keepdim); they are returned so that
    the cosine diagnostic reuses them instead of recomputing both norms. ``unit``: ``v~ =
    alpha * v / ||v||`` (Table VI's unit-scaled noise).
    """
    direction = F.normalize(v, dim=-1, eps=eps)  # v / ||v|| (Eq. 4)
    grad_norm = torch.linalg.vector_norm(grad, dim=-1, keepdim=True)
    if unit:
        v_tilde = alpha * direction
    else:
        v_tilde = alpha * grad_norm * direction
    return direction, grad_norm, v_tilde, grad + v_tilde  # Eq. 5


def row_cosine(direction: torch.Tensor, grad: torch.Tensor, grad_norm: torch.Tensor,
               alpha: float, eps: float) -> torch.Tensor:
    """Per-row cosine between ``v~`` and ``dl/dz`` (Fig. 6, right), shape ``z.shape[:-1]``.

    ``v~_i`` is a non-negative multiple of ``v_i / ||v_i||`` (Eq. 4), so its cosine with
    ``grad_i`` is ``<v_i/||v_i||, grad_i> / ||grad_i||``: two cheap ops on tensors the step
    already has instead of a full cosine similarity (0 where ``v~_i`` or ``grad_i`` is 0, and
    everywhere when ``alpha = 0``).
    """
    dots = (direction * grad).sum(dim=-1)
    if alpha == 0.0:
        return torch.zeros_like(dots)
    return dots / grad_norm.squeeze(-1).clamp_min(eps)


# -- Eq. 7 ----------------------------------------------------------------------------------
def tentative_point(z: torch.Tensor, eta: float | torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """``z - eta~ * step``: the tentative features of line 7 (``step = g``), or those of the
    plain gradient step (``step = dl/dz``, Fig. 8b)."""
    return z - eta * step


def first_order_scale(first_order: str, n_global: int, dim: int) -> float:
    """Factor on the inner product in Eq. 7 for the chosen convention."""
    return {"sum": 1.0, "sample_mean": 1.0 / n_global,
            "element_mean": 1.0 / (n_global * dim)}[first_order]


def first_order_term(eta: float | torch.Tensor, scale: float, grad: torch.Tensor, g: torch.Tensor,
                     rows: bool = False) -> torch.Tensor:
    """``eta~ * scale * <grad, g>``, Eq. 7's first-order term: summed over rows and dims, or one
    per row (``rows``, shape ``z.shape[:-1]``)."""
    inner = (grad * g).sum(dim=-1) if rows else (grad * g).sum()
    return eta * scale * inner


def remainder(tentative: torch.Tensor, loss: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """``r = l(z - eta~ g) - l(z) + eta~ <dl/dz, g>`` (Eq. 7), from its three terms."""
    return tentative - loss + first


# -- lines 7-10 -----------------------------------------------------------------------------
def accept(policy: str, tentative: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """Update policy of Alg. 1 lines 7-10 (Fig. 8a) as a boolean tensor."""
    if policy == "leq":
        return tentative <= loss
    if policy == "lt":
        return tentative < loss
    if policy == "always":
        return torch.ones_like(loss, dtype=torch.bool)
    return torch.zeros_like(loss, dtype=torch.bool)


def choose(accepted: torch.Tensor, g: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Lines 7-10: ``g`` where the policy accepted it, else ``dl/dz``; ``accepted`` is one
    decision (0-dim) or one per row (shape ``z.shape[:-1]``)."""
    if accepted.ndim:
        accepted = accepted.reshape(*g.shape[:-1], 1)
    return torch.where(accepted, g, grad)


def nan_like(like: torch.Tensor) -> torch.Tensor:
    """A 0-dim NaN on ``like``'s device and dtype (a diagnostic that was not computed)."""
    return torch.full((), float("nan"), device=like.device, dtype=like.dtype)


# -- the single-process batch step after dl/dz (eager and compiled) -------------------------
def batch_remainder(
    s: StepSettings, zd: torch.Tensor, grad: torch.Tensor, g: torch.Tensor, loss: torch.Tensor,
    y: Any, loss_fn: LossFn, eta: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(l(z - eta~ g), r)``: the tentative loss (line 7) and ``r`` of Eq. 7,
    ``r = l(z - eta~ g) - l(z) + eta~ <dl/dz, g>``."""
    loss_t = loss_fn(tentative_point(zd, eta, g), y)
    first = first_order_term(eta, first_order_scale(s.first_order, zd.numel() // s.dim, s.dim),
                             grad, g)
    return loss_t, remainder(loss_t, loss, first)


def batch_decide(
    s: StepSettings, zd: torch.Tensor, grad: torch.Tensor, g: torch.Tensor,
    direction: torch.Tensor, grad_norm: torch.Tensor, loss: torch.Tensor, loss_t: torch.Tensor,
    r: torch.Tensor, y: Any, loss_fn: LossFn, eta: float | torch.Tensor,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Lines 7-10 (the chosen gradient) and the fields of :class:`GALStats`, without autograd."""
    with torch.no_grad():
        loss_t, r = loss_t.detach(), r.detach()
        accepted = accept(s.policy, loss_t, loss)
        chosen = choose(accepted, g, grad)  # lines 7-10
        cos = row_cosine(direction, grad, grad_norm, s.alpha, s.eps).mean()
        if s.compare_vanilla:
            beats = (loss_t < loss_fn(tentative_point(zd, eta, grad), y)).to(zd.dtype)
        else:
            beats = nan_like(zd)
    return chosen, (loss, loss_t, r, r.abs(), accepted.to(zd.dtype), cos, beats)
