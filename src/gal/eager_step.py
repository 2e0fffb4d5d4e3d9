"""The eager GAL steps: one decision on the batch (single process or DDP) or one per row.

Each computes ``dl/dz`` with autograd (Alg. 1 line 4) and the rest of Algorithm 1 with the
functions of :mod:`gal.algorithm`; h's objective (6) keeps its autograd graph, so the caller
back-propagates it. ``s`` is the adjuster (:class:`gal.step.GradientAdjuster`), ``world`` the
number of ranks and ``all_reduce`` a sum over them (used only when ``world > 1``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gal.algorithm import (
    GALStats,
    LossFn,
    StepSettings,
    accept,
    adjusted_gradient,
    batch_decide,
    batch_remainder,
    choose,
    first_order_scale,
    first_order_term,
    h_forward,
    mean_loss,
    nan_like,
    remainder,
    row_cosine,
    tentative_point,
    unit_noise,
)

AllReduce = Callable[[torch.Tensor], torch.Tensor]
StepResult = tuple[torch.Tensor, torch.Tensor, GALStats]


def per_row_losses(values: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-row losses from ``loss_fn(..., reduction="none")`` as a flat ``[N]`` vector.

    Accepted shapes: ``z.shape[:-1]`` (one value per row), anything with N elements (e.g. a
    trailing singleton as ``mse_loss`` gives on ``[B, 1]``), or ``z.shape`` (element-wise losses,
    averaged over the last dimension so that their mean equals the mean-reduced loss).
    """
    n = z.numel() // z.shape[-1]
    if values.shape == z.shape and z.shape[-1] != 1:
        values = values.mean(dim=-1)
    if values.numel() != n:
        raise ValueError(
            f"loss_fn(z, y, reduction='none') returned shape {tuple(values.shape)}; granularity="
            f"'sample' needs one loss per row of z, i.e. shape {tuple(z.shape[:-1])} "
            f"(or {tuple(z.shape)} for element-wise losses)"
        )
    return values.reshape(n)


def _adjusted(s: StepSettings, zd: torch.Tensor, grad: torch.Tensor,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eqs. 3-5 with h itself: ``(direction, ||grad||, v~, g)``."""
    return adjusted_gradient(h_forward(s.h, zd), grad, s.alpha, s.eps, unit_noise(s))


def batch_step(s: StepSettings, zs: torch.Tensor, y: Any, loss_fn: LossFn,
               lr: float | torch.Tensor, world: int, all_reduce: AllReduce) -> StepResult:
    """One decision on the (global) batch-mean loss, as the authors' code does."""
    loss = mean_loss(loss_fn, zs, y)
    (grad,) = torch.autograd.grad(loss, zs)
    if world == 1:
        return batch_core(s, zs.detach(), grad, loss.detach(), y, loss_fn, s.beta * lr)
    n_global = zs.numel() // s.dim * world
    grad = grad / world  # gradient of the *global* batch-mean loss (equal shard sizes)
    zd, loss = zs.detach(), loss.detach()
    direction, grad_norm, _, g = _adjusted(s, zd, grad)
    eta = s.beta * lr
    loss_t = loss_fn(tentative_point(zd, eta, g), y)  # tentative loss (line 7)
    first = first_order_term(eta, first_order_scale(s.first_order, n_global, s.dim), grad, g)
    with torch.no_grad():
        cos_sum = row_cosine(direction, grad, grad_norm, s.alpha, s.eps).sum()
        loss_v = loss_fn(tentative_point(zd, eta, grad), y) if s.compare_vanilla else nan_like(zd)
        sums = all_reduce(torch.stack([loss, loss_t, first, cos_sum, loss_v]))
    g_loss, g_loss_t, g_first = sums[0] / world, sums[1] / world, sums[2]
    r = remainder(g_loss_t, g_loss, g_first)  # Eq. 7 for the global batch
    # this rank's share of d|r|/dtheta; the shares are summed across ranks
    h_objective = torch.sign(r) * (loss_t / world + first)
    accepted = accept(s.policy, g_loss_t, g_loss)
    with torch.no_grad():
        chosen = choose(accepted, g, grad)
    beats = (g_loss_t < sums[4] / world).to(zd.dtype) if s.compare_vanilla else nan_like(zd)
    stats = GALStats(g_loss, g_loss_t, r, r.abs(), accepted.to(zd.dtype), sums[3] / n_global, beats)
    return chosen, h_objective, stats


def batch_core(s: StepSettings, zd: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor, y: Any,
               loss_fn: LossFn, eta: float | torch.Tensor) -> StepResult:
    """The single-process batch step after ``dl/dz`` (Alg. 1 lines 5-10, Eqs. 3-7).

    Every tensor is computed once: ``r = l(z - eta~ g) - l(z) + eta~ <dl/dz, g>`` is both h's
    objective (its absolute value, objective 6) and the logged remainder; the diagnostics reuse
    the norms of Eq. 4 and run without autograd. The compiled step computes the same with the
    same functions (:func:`gal.compiled_step.functional_batch_step`).
    """
    direction, grad_norm, _, g = _adjusted(s, zd, grad)
    loss_t, r = batch_remainder(s, zd, grad, g, loss, y, loss_fn, eta)
    h_objective = r.abs()  # objective (6)
    chosen, stats = batch_decide(s, zd, grad, g, direction, grad_norm, loss, loss_t, r, y,
                                 loss_fn, eta)
    return chosen, h_objective, GALStats(*stats)


def sample_step(s: StepSettings, zs: torch.Tensor, y: Any, loss_fn: LossFn,
                lr: float | torch.Tensor, world: int, all_reduce: AllReduce) -> StepResult:
    """One decision per row, as Algorithm 1 is written ("for each pair (x, y)").

    The model's gradient is that of the mean-reduced ``loss_fn(z, y)`` (so weighted or
    masked losses train as they would without GAL); each row's remainder uses its own loss
    ``l_i`` and gradient ``dl_i/dz_i``: ``r_i = l_i(z_i - eta~ g_i) - l_i(z_i) + c eta~ <dl_i/dz_i, g_i>``
    with ``c`` = 1, 1/N or 1/(N d) by ``first_order``, so that ``mean_i r_i`` equals the
    batch ``r`` when the loss is the plain mean of the per-row losses.
    """
    n_rows = zs.numel() // s.dim
    n_global = n_rows * world
    per = per_row_losses(loss_fn(zs, y, reduction="none"), zs)
    loss = mean_loss(loss_fn, zs, y)
    (grad,) = torch.autograd.grad(loss, zs, retain_graph=True)
    (row_grad,) = torch.autograd.grad(per.sum(), zs)  # dl_i/dz_i: rows are independent
    if world > 1:
        grad = grad / world
    zd, loss, per = zs.detach(), loss.detach(), per.detach()
    direction, grad_norm, _, g = _adjusted(s, zd, grad)
    eta = s.beta * lr
    per_t = per_row_losses(loss_fn(tentative_point(zd, eta, g), y, reduction="none"), zs)
    first = first_order_term(eta, first_order_scale(s.first_order, n_global, s.dim), row_grad, g,
                             rows=True).reshape(n_rows)
    r_rows = remainder(per_t, per, first)
    accepted = accept(s.policy, per_t.detach(), per)
    with torch.no_grad():
        chosen = choose(accepted, g, grad)
        cos = row_cosine(direction, grad, grad_norm, s.alpha, s.eps)
    h_objective = r_rows.abs().sum() / n_global
    if s.compare_vanilla:
        with torch.no_grad():
            per_v = per_row_losses(loss_fn(tentative_point(zd, eta, grad), y, reduction="none"), zs)
        beats = (per_t.detach() < per_v).to(zd.dtype).sum()
    else:
        beats = nan_like(zd)
    r_rows = r_rows.detach()
    sums = torch.stack([
        loss, per_t.detach().sum(), r_rows.sum(), r_rows.abs().sum(),
        accepted.to(zd.dtype).sum(), cos.sum(), beats,
    ])
    if world > 1:
        sums = all_reduce(sums)
    per_row_means = sums[1:] / n_global
    stats = GALStats(sums[0] / world, *per_row_means.unbind())
    return chosen, h_objective, stats
