"""The opt-in compiled GAL step (``GradientAdjuster(compile_step=...)``).

Algorithm 1 lines 4-10 and the gradient of objective (6) w.r.t. h's parameters written as one
function of tensors with :mod:`torch.func` (``grad_and_value`` for ``dl/dz`` and for
``d|r|/dtheta``, ``functional_call`` for ``h``), so that :func:`torch.compile` turns the whole of
GAL's extra work into one compiled call without autograd state: no autograd graph is built for
the loss or for h, and h's gradients come back as tensors that the caller accumulates. The eager
step (:meth:`GradientAdjuster._batch_core`) back-propagates ``|r|`` through h inside the model's
backward pass instead; both compute the same quantities (Eqs. 3-7), in the same order.

The functions here only use the adjuster's own helpers (Eq. 4 in ``_adjusted_gradient``, Eq. 7
in ``_remainder``, lines 7-10 and the diagnostics in ``_decide``), so the two paths cannot drift
apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.func import functional_call, grad_and_value

if TYPE_CHECKING:
    from gal.step import GradientAdjuster, LossFn


def functional_batch_step(
    adj: GradientAdjuster, params: dict[str, torch.Tensor], zd: torch.Tensor, y: Any,
    loss_fn: LossFn, eta: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    """One single-process ``batch`` GAL step as a pure function.

    Args:
        adj: the adjuster (its settings and its module ``h``; h's parameters come from
            ``params``).
        params: ``{name: tensor}`` of h's parameters (``h.named_parameters()``).
        zd: detached features ``[..., d]`` in the step's dtype.
        y: targets for ``loss_fn``.
        loss_fn: mean-reduced loss ``loss_fn(z, y)``.
        eta: ``eta~ = beta * lr`` as a 0-dim tensor.

    Returns:
        ``(chosen, h_grads, stats)``: the gradient to send into the model through z (lines
        7-10), ``{name: d|r|/dtheta}`` (objective 6) and the seven fields of ``GALStats``.
    """
    grad, loss = grad_and_value(lambda z: adj._mean_loss(loss_fn, z, y))(zd)  # line 4

    def objective(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h: Callable[[torch.Tensor], torch.Tensor] = lambda x: functional_call(adj.h, p, (x,))  # noqa: E731
        direction, grad_norm, _, g = adj._adjusted_gradient(zd, grad, adj._h_forward(zd, h))
        loss_t, r = adj._remainder(zd, grad, g, loss, y, loss_fn, eta)
        return r.abs(), (direction, grad_norm, g, loss_t, r)

    h_grads, (_, (direction, grad_norm, g, loss_t, r)) = grad_and_value(objective, has_aux=True)(params)
    chosen, stats = adj._decide(zd, grad, g, direction, grad_norm, loss, loss_t, r, y, loss_fn, eta)
    return chosen, h_grads, stats


def functional_params(h: torch.nn.Module) -> dict[str, torch.nn.Parameter] | None:
    """h's parameters by name when :func:`functional_batch_step` applies to h, else None.

    It applies when h has parameters and all of them train; parameter-free noise adjusters
    (Table VI) and a partly frozen h stay on the eager step.
    """
    params = dict(h.named_parameters())
    if params and all(p.requires_grad for p in params.values()):
        return params
    return None
