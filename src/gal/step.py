"""The GAL step: Algorithm 1 with Eqs. 3-7 of the paper.

For a feature tensor ``z`` of shape ``[..., d]`` (h acts on the last dimension; every leading
position is one "sample" row) and a mean-reduced loss ``l``:

* ``grad = dl/dz``                                   (Alg. 1 line 4)
* ``v = h(z)``                                        (Eq. 3, line 5)
* ``v~ = alpha * ||grad_i|| * v_i / ||v_i||``          (Eq. 4; norms per row, safe epsilon)
* ``g = grad + v~``                                   (Eq. 5, line 6)
* ``eta~ = beta * lr``, lr the optimizer's *current* learning rate
* tentative loss ``l(z - eta~ g)``                    (line 7)
* remainder ``r = l(z - eta~ g) - l(z) + eta~ <grad, g>``  (Eq. 7); h is trained on ``|r|`` (obj. 6)
* the model receives ``g`` or ``grad`` through z by the update policy (lines 7-10).

Everything stays on the device: decisions use :func:`torch.where`, and no ``.item()``,
``bool(tensor)`` or ``.cpu()`` is called inside the step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gal.adjuster import NoiseAdjuster, build_adjuster
from gal.compiled_step import TracedStep, compile_kwargs, functional_params

POLICIES = ("leq", "lt", "always", "never")
GRANULARITIES = ("batch", "sample")
FIRST_ORDER = ("sum", "sample_mean", "element_mean")
NOISE_SCALING = ("eq4", "unit")

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


def _accept(policy: str, tentative: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """Update policy of Alg. 1 lines 7-10 (Fig. 8a) as a boolean tensor."""
    if policy == "leq":
        return tentative <= loss
    if policy == "lt":
        return tentative < loss
    if policy == "always":
        return torch.ones_like(loss, dtype=torch.bool)
    return torch.zeros_like(loss, dtype=torch.bool)


def _scaled(t: torch.Tensor, scaler: Any, weight: float) -> torch.Tensor:
    """``t`` times ``scaler``'s loss scale (AMP) and ``weight`` (e.g. 1/accumulation steps)."""
    if scaler is not None:
        t = scaler.scale(t)
    return t * weight if weight != 1.0 else t


def _per_row(values: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
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


class GradientAdjuster(nn.Module):
    """Gradient Adjustment Learning for any model, loss and optimizer (Algorithm 1).

    Args:
        dim: feature dimension d that h sees (last dimension of z).
        arch: hidden widths of h (Sec. V-B notation), e.g. ``(100, 32, 16)``.
        alpha: magnitude ratio of Eq. 4 (``alpha=0`` is standard training, bit for bit).
        beta: tentative-rate scalar, ``eta~ = beta * lr``.
        policy: ``"leq"`` (line 7, default), ``"lt"`` (line 7 with ``<``), ``"always"`` (line 8),
            ``"never"`` (line 10, standard training).
        granularity: ``"batch"`` - one decision per step on the reduced loss, as the authors' code
            does; ``"sample"`` - one decision per row, as Algorithm 1 is written ("for each pair").
            In ``sample`` granularity each row's tentative step is the *same vector* as in
            ``batch`` granularity (``eta~ * g_i``, with ``g`` from the batch-mean loss), the
            tentative loss, acceptance and remainder are per row (``r_i`` uses the per-row loss
            ``l_i`` and its gradient ``N * grad_i``, so that ``mean_i r_i`` equals the batch ``r``
            for a separable loss), and h is trained on the mean of the per-row ``|r_i|``.
            ``loss_fn`` is then also called as ``loss_fn(z, y, reduction="none")``.
        first_order: the first-order term of Eq. 7. ``"sum"`` (default, the paper): the full inner
            product ``eta~ <dl/dz, g>`` summed over rows and dims (dl/dz of the mean loss already
            carries 1/N). ``"sample_mean"``: the authors' CIFAR/ImageNet code, which averages the
            per-row inner products over the N rows (an extra 1/N). ``"element_mean"``: the
            authors' 3D-example code, which averages over all N*d coordinates.
        adjuster: ``"mlp"`` (default), ``"cnn"`` (Table VIII), ``"uniform"``/``"normal"``
            (Table VI noise, no parameters).
        activation: activation between h's layers; ``None`` reproduces the authors' code.
        noise_scaling: for noise adjusters, ``"eq4"`` (``alpha*|grad|*v/|v|``) or ``"unit"``
            (``alpha*v/|v|``), Table VI's two rows.
        seed: seed of h's private RNG (initialisation and noise); the global RNG is never used.
        eps: safe epsilon of the normalisation ``v/||v||`` in Eq. 4.
        compare_vanilla: also evaluate ``l(z - eta~ dl/dz)`` for the Fig. 8b diagnostic (one extra
            loss evaluation; turn off for expensive losses).
        h: a custom module to use as h (overrides ``adjuster``/``arch``/``activation``).
        distributed: ``None`` (auto: on when torch.distributed is initialised with >1 rank),
            ``True`` or ``False``. When on, losses, decisions and the remainder are those of the
            *global* batch (one small all-reduce per step) and h's gradients are summed across
            ranks, so N ranks reproduce one process with the same global batch. Do not wrap the
            adjuster itself in DistributedDataParallel. Assumes equal shard sizes on every rank
            (e.g. ``drop_last=True``), as the global mean is the mean of the ranks' means; noise
            adjusters draw from the same seed on every rank.
        process_group: process group for the distributed reductions (default: world).
        compile_step: opt-in compilation of GAL's whole extra work in the single-process
            ``batch`` step: ``dl/dz`` (line 4), Eqs. 3-7, lines 5-10 and the gradient of
            objective (6) w.r.t. h, written with :mod:`torch.func` as one function of tensors,
            traced to one graph per input signature and compiled by a :func:`torch.compile`
            backend (:class:`gal.compiled_step.TracedStep`); no autograd graph is built for the
            loss or h, h's gradients are accumulated directly, and a call has no TorchDynamo
            guards to evaluate. ``False`` (default, eager), ``True`` (inductor), a backend name
            (e.g. ``"aot_eager"``) or a dict of :func:`torch.compile` keyword arguments
            (``backend``, ``mode``, ``options``, e.g. ``{"options": {"cpp_wrapper": True}}``).
            The first step compiles (seconds); a new batch size compiles once more. Pass the
            same ``loss_fn`` object every step (a new function object is a new graph), and do
            not change h's modules after the first step. ``sample`` granularity, distributed
            runs, noise adjusters and a partly frozen h stay eager. Numerics equal the eager
            step up to floating-point reassociation.
        precision: dtype the step (Eqs. 3-7, lines 4-10) is computed in; ``None`` (default): z's
            dtype (float32 for fp16/bf16 features). ``torch.float64`` resolves the remainder r
            of Eq. 7 when it is below float32's resolution of the loss (about 1e-7 of its
            value: small ``eta~``, e.g. DETR's boxes); the gradient sent into the model is cast
            back to z's dtype. h keeps its parameters' dtype.
    """

    def __init__(
        self,
        dim: int,
        arch: Sequence[int] = (100, 32, 16),
        alpha: float = 1e-3,
        beta: float = 1.0,
        policy: str = "leq",
        granularity: str = "batch",
        first_order: str = "sum",
        adjuster: str = "mlp",
        activation: str | None = "relu",
        noise_scaling: str = "eq4",
        seed: int = 0,
        eps: float = 1e-12,
        compare_vanilla: bool = True,
        h: nn.Module | None = None,
        distributed: bool | None = None,
        process_group: Any = None,
        compile_step: bool | str | Mapping[str, Any] = False,
        precision: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("policy", policy, POLICIES),
            ("granularity", granularity, GRANULARITIES),
            ("first_order", first_order, FIRST_ORDER),
            ("noise_scaling", noise_scaling, NOISE_SCALING),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0 (Eq. 4 uses alpha in [0, 1]), got {alpha}")
        self.dim = int(dim)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.policy = policy
        self.granularity = granularity
        self.first_order = first_order
        self.noise_scaling = noise_scaling
        self.eps = float(eps)
        self.compare_vanilla = bool(compare_vanilla)
        self.distributed = distributed
        self.process_group = process_group
        self.h = h if h is not None else build_adjuster(adjuster, dim, arch, activation, seed)
        if not isinstance(compile_step, bool | str | Mapping):
            raise ValueError(f"compile_step must be a bool, a backend name or a dict of torch.compile "
                             f"keyword arguments, got {compile_step!r}")
        if compile_step:
            compile_kwargs(compile_step)  # unknown keys fail here, not at the first step
        self.compile_step = compile_step
        if precision is not None and not (isinstance(precision, torch.dtype) and precision.is_floating_point):
            raise ValueError(f"precision must be a floating torch.dtype or None, got {precision!r}")
        self.precision = precision

    # -- optional torch.compile of the step ------------------------------------------------
    _COMPILED_KEY = "_gal_compiled_core"

    @property
    def _compiled(self) -> TracedStep | None:
        """The :class:`~gal.compiled_step.TracedStep` of *this* instance (built on first use), or
        None when ``compile_step`` is off.

        Kept in ``__dict__`` with the owner's id, so a deep copy builds its own and pickling
        drops it (:meth:`__getstate__`).
        """
        if not self.compile_step:
            return None
        owner, fn = self.__dict__.get(self._COMPILED_KEY, (None, None))
        if owner != id(self) or fn is None:
            fn = TracedStep(self, self.compile_step)
            self.__dict__[self._COMPILED_KEY] = (id(self), fn)
        return fn

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop(self._COMPILED_KEY, None)
        return state

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, alpha={self.alpha}, beta={self.beta}, policy={self.policy!r}, "
            f"granularity={self.granularity!r}, first_order={self.first_order!r}"
        )

    # -- distributed helpers -------------------------------------------------------------
    def _world_size(self) -> int:
        if self.distributed is False:
            return 1
        if not (dist.is_available() and dist.is_initialized()):
            if self.distributed:
                raise RuntimeError(
                    "GradientAdjuster(distributed=True) needs torch.distributed to be initialised "
                    "(call torch.distributed.init_process_group first, e.g. under torchrun)"
                )
            return 1
        return dist.get_world_size(self.process_group)

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.process_group)
        return t

    # -- the step ------------------------------------------------------------------------
    def adjust(
        self,
        z: torch.Tensor,
        y: Any,
        loss_fn: LossFn,
        lr: float | torch.Tensor,
        *,
        scaler: Any = None,
        weight: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, GALStats]:
        """Compute the gradient to send into the model, h's objective and the diagnostics.

        Returns ``(chosen, h_objective, stats)``: ``chosen`` has z's shape and dtype and is the
        gradient of this rank's loss w.r.t. z under the update policy (``g`` or ``dl/dz``);
        ``h_objective`` is a scalar whose gradient w.r.t. h's parameters is this rank's share of
        ``d|r|/dtheta`` (objective 6). Both are multiplied by ``scaler``'s scale and ``weight``
        (in float32, before the cast to z's dtype, so fp16 gradients do not underflow).
        :meth:`backward` back-propagates both; call this directly when the model has other
        losses to combine (e.g. DETR's classification terms).
        """
        chosen, h_objective, h_grads, stats = self._adjust(z, y, loss_fn, lr, scaler, weight)
        if h_grads is not None:  # compiled step: a scalar whose gradient is h_grads, valued |r|
            linear = sum((p * gr).sum() for p, gr in h_grads)
            h_objective = _scaled(stats.abs_remainder, scaler, weight) + (linear - linear.detach())
        return chosen, h_objective, stats

    def _adjust(
        self, z: torch.Tensor, y: Any, loss_fn: LossFn, lr: float | torch.Tensor, scaler: Any,
        weight: float,
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[tuple[nn.Parameter, torch.Tensor]] | None,
               GALStats]:
        """:meth:`adjust`, with h's gradients as ``(parameter, gradient)`` pairs (``h_grads``)
        instead of ``h_objective`` when the compiled step made them."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"z has last dimension {z.shape[-1]}, the adjuster was built for dim={self.dim}")
        world = self._world_size()
        compute_dtype = self.precision or (
            torch.float32 if z.dtype in (torch.float16, torch.bfloat16) else z.dtype)
        h_objective: torch.Tensor | None = None
        h_grads: list[tuple[nn.Parameter, torch.Tensor]] | None = None
        params = (functional_params(self.h) if self.compile_step and world == 1
                  and self.granularity == "batch" else None)
        with torch.autocast(device_type=z.device.type, enabled=False):
            zs = z.detach().to(compute_dtype)
            if params is not None:
                with torch.no_grad():  # torch.func computes the gradients inside
                    chosen, grads, fields = self._compiled(params, zs, y, loss_fn, self._eta(lr, zs))
                h_grads, stats = list(zip(params.values(), grads, strict=True)), GALStats(*fields)
            else:
                step = self._sample_step if self.granularity == "sample" else self._batch_step
                chosen, h_objective, stats = step(zs.requires_grad_(True), y, loss_fn, lr, world)
            if world > 1:  # back to this rank's loss scale (DDP averages model grads over ranks)
                chosen = chosen * world
            chosen = _scaled(chosen, scaler, weight)
            if h_objective is not None:
                h_objective = _scaled(h_objective, scaler, weight)
            if h_grads is not None:
                h_grads = [(p, _scaled(gr, scaler, weight)) for p, gr in h_grads]
        return chosen.to(z.dtype), h_objective, h_grads, stats

    def _mean_loss(self, loss_fn: LossFn, zs: torch.Tensor, y: Any) -> torch.Tensor:
        loss = loss_fn(zs, y)
        if loss.ndim != 0:
            raise ValueError(
                f"loss_fn(z, y) must return the mean-reduced scalar loss (got shape {tuple(loss.shape)})"
            )
        return loss

    def _h_forward(self, zd: torch.Tensor, h: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   ) -> torch.Tensor:
        """``v = h(z)`` (Eq. 3) in z's dtype; h sees its parameters' dtype."""
        h = self.h if h is None else h
        p = next(self.h.parameters(), None)
        if p is not None and p.dtype != zd.dtype:
            return h(zd.to(p.dtype)).to(zd.dtype)
        return h(zd)

    def _adjusted_gradient(
        self, zd: torch.Tensor, grad: torch.Tensor, v: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(direction, ||grad||, v~, g)`` of Eqs. 3-5 for detached features ``zd`` and ``grad``.

        ``direction = v / ||v||`` and ``||grad||`` are per row (keepdim); they are returned so that
        the cosine diagnostic reuses them instead of recomputing both norms. ``v`` defaults to
        ``h(zd)``.
        """
        if v is None:
            v = self._h_forward(zd)
        direction = F.normalize(v, dim=-1, eps=self.eps)  # v / ||v|| (Eq. 4)
        grad_norm = torch.linalg.vector_norm(grad, dim=-1, keepdim=True)
        if isinstance(self.h, NoiseAdjuster) and self.noise_scaling == "unit":
            v_tilde = self.alpha * direction
        else:
            v_tilde = self.alpha * grad_norm * direction
        return direction, grad_norm, v_tilde, grad + v_tilde  # Eq. 5

    def _row_cosine(
        self, direction: torch.Tensor, grad: torch.Tensor, grad_norm: torch.Tensor
    ) -> torch.Tensor:
        """Per-row cosine between ``v~`` and ``dl/dz`` (Fig. 6, right), shape ``z.shape[:-1]``.

        ``v~_i`` is a non-negative multiple of ``v_i / ||v_i||`` (Eq. 4), so its cosine with
        ``grad_i`` is ``<v_i/||v_i||, grad_i> / ||grad_i||``: two cheap ops on tensors the step
        already has instead of a full cosine similarity (0 where ``v~_i`` or ``grad_i`` is 0, and
        everywhere when ``alpha = 0``).
        """
        dots = (direction * grad).sum(dim=-1)
        if self.alpha == 0.0:
            return torch.zeros_like(dots)
        return dots / grad_norm.squeeze(-1).clamp_min(self.eps)

    def _first_order_scale(self, n_global: int) -> float:
        """Factor on the inner product in Eq. 7 for the chosen convention."""
        return {"sum": 1.0, "sample_mean": 1.0 / n_global,
                "element_mean": 1.0 / (n_global * self.dim)}[self.first_order]

    def _batch_step(
        self, zs: torch.Tensor, y: Any, loss_fn: LossFn, lr: float | torch.Tensor, world: int
    ) -> tuple[torch.Tensor, torch.Tensor, GALStats]:
        """One decision on the (global) batch-mean loss, as the authors' code does."""
        loss = self._mean_loss(loss_fn, zs, y)
        (grad,) = torch.autograd.grad(loss, zs)
        if world == 1:
            return self._batch_core(zs.detach(), grad, loss.detach(), y, loss_fn, self.beta * lr)
        n_global = zs.numel() // self.dim * world
        grad = grad / world  # gradient of the *global* batch-mean loss (equal shard sizes)
        zd, loss = zs.detach(), loss.detach()
        direction, grad_norm, _, g = self._adjusted_gradient(zd, grad)
        eta = self.beta * lr
        loss_t = loss_fn(zd - eta * g, y)  # tentative loss (line 7)
        first = eta * self._first_order_scale(n_global) * (grad * g).sum()
        with torch.no_grad():
            cos_sum = self._row_cosine(direction, grad, grad_norm).sum()
            loss_v = loss_fn(zd - eta * grad, y) if self.compare_vanilla else self._nan(zd)
            sums = self._all_reduce(torch.stack([loss, loss_t, first, cos_sum, loss_v]))
        g_loss, g_loss_t, g_first = sums[0] / world, sums[1] / world, sums[2]
        r = g_loss_t - g_loss + g_first  # Eq. 7 for the global batch
        # this rank's share of d|r|/dtheta; the shares are summed across ranks
        h_objective = torch.sign(r) * (loss_t / world + first)
        accept = _accept(self.policy, g_loss_t, g_loss)
        with torch.no_grad():
            chosen = torch.where(accept, g, grad)
        beats = (g_loss_t < sums[4] / world).to(zd.dtype) if self.compare_vanilla else self._nan(zd)
        stats = GALStats(g_loss, g_loss_t, r, r.abs(), accept.to(zd.dtype), sums[3] / n_global, beats)
        return chosen, h_objective, stats

    def _eta(self, lr: float | torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """``eta~ = beta * lr`` as a 0-dim tensor, for the compiled step (no recompile per lr)."""
        eta = self.beta * lr
        if not isinstance(eta, torch.Tensor):
            return torch.full((), eta, dtype=zs.dtype, device=zs.device)
        return eta

    @staticmethod
    def _nan(like: torch.Tensor) -> torch.Tensor:
        return torch.full((), float("nan"), device=like.device, dtype=like.dtype)

    def _batch_core(
        self, zd: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor, y: Any, loss_fn: LossFn,
        eta: float | torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, GALStats]:
        """The single-process batch step after ``dl/dz`` (Alg. 1 lines 5-10, Eqs. 3-7).

        Every tensor is computed once: ``r = l(z - eta~ g) - l(z) + eta~ <dl/dz, g>`` is both h's
        objective (its absolute value, objective 6) and the logged remainder; the diagnostics reuse
        the norms of Eq. 4 and run without autograd.
        """
        direction, grad_norm, _, g = self._adjusted_gradient(zd, grad)
        loss_t, r = self._remainder(zd, grad, g, loss, y, loss_fn, eta)
        h_objective = r.abs()  # objective (6)
        chosen, stats = self._decide(zd, grad, g, direction, grad_norm, loss, loss_t, r, y,
                                     loss_fn, eta)
        return chosen, h_objective, GALStats(*stats)

    def _remainder(
        self, zd: torch.Tensor, grad: torch.Tensor, g: torch.Tensor, loss: torch.Tensor, y: Any,
        loss_fn: LossFn, eta: float | torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(l(z - eta~ g), r)``: the tentative loss (line 7) and ``r`` of Eq. 7,
        ``r = l(z - eta~ g) - l(z) + eta~ <dl/dz, g>``."""
        loss_t = loss_fn(zd - eta * g, y)
        first = eta * self._first_order_scale(zd.numel() // self.dim) * (grad * g).sum()
        return loss_t, loss_t - loss + first

    def _decide(
        self, zd: torch.Tensor, grad: torch.Tensor, g: torch.Tensor, direction: torch.Tensor,
        grad_norm: torch.Tensor, loss: torch.Tensor, loss_t: torch.Tensor, r: torch.Tensor,
        y: Any, loss_fn: LossFn, eta: float | torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Lines 7-10 (the chosen gradient) and the fields of :class:`GALStats`, without autograd."""
        with torch.no_grad():
            loss_t, r = loss_t.detach(), r.detach()
            accept = _accept(self.policy, loss_t, loss)
            chosen = torch.where(accept, g, grad)  # lines 7-10
            cos = self._row_cosine(direction, grad, grad_norm).mean()
            if self.compare_vanilla:
                beats = (loss_t < loss_fn(zd - eta * grad, y)).to(zd.dtype)
            else:
                beats = self._nan(zd)
        return chosen, (loss, loss_t, r, r.abs(), accept.to(zd.dtype), cos, beats)

    def _sample_step(
        self, zs: torch.Tensor, y: Any, loss_fn: LossFn, lr: float | torch.Tensor, world: int
    ) -> tuple[torch.Tensor, torch.Tensor, GALStats]:
        """One decision per row, as Algorithm 1 is written ("for each pair (x, y)").

        The model's gradient is that of the mean-reduced ``loss_fn(z, y)`` (so weighted or
        masked losses train as they would without GAL); each row's remainder uses its own loss
        ``l_i`` and gradient ``dl_i/dz_i``: ``r_i = l_i(z_i - eta~ g_i) - l_i(z_i) + c eta~ <dl_i/dz_i, g_i>``
        with ``c`` = 1, 1/N or 1/(N d) by ``first_order``, so that ``mean_i r_i`` equals the
        batch ``r`` when the loss is the plain mean of the per-row losses.
        """
        n_rows = zs.numel() // self.dim
        n_global = n_rows * world
        per = _per_row(loss_fn(zs, y, reduction="none"), zs)
        loss = self._mean_loss(loss_fn, zs, y)
        (grad,) = torch.autograd.grad(loss, zs, retain_graph=True)
        (row_grad,) = torch.autograd.grad(per.sum(), zs)  # dl_i/dz_i: rows are independent
        if world > 1:
            grad = grad / world
        zd, loss, per = zs.detach(), loss.detach(), per.detach()
        direction, grad_norm, _, g = self._adjusted_gradient(zd, grad)
        eta = self.beta * lr
        per_t = _per_row(loss_fn(zd - eta * g, y, reduction="none"), zs)
        inner = (row_grad * g).sum(dim=-1).reshape(n_rows)
        r_rows = per_t - per + eta * self._first_order_scale(n_global) * inner
        accept = _accept(self.policy, per_t.detach(), per)
        with torch.no_grad():
            chosen = torch.where(accept.reshape(*zs.shape[:-1], 1), g, grad)
            cos = self._row_cosine(direction, grad, grad_norm)
        h_objective = r_rows.abs().sum() / n_global
        if self.compare_vanilla:
            with torch.no_grad():
                per_v = _per_row(loss_fn(zd - eta * grad, y, reduction="none"), zs)
            beats = (per_t.detach() < per_v).to(zd.dtype).sum()
        else:
            beats = self._nan(zd)
        r_rows = r_rows.detach()
        sums = torch.stack([
            loss, per_t.detach().sum(), r_rows.sum(), r_rows.abs().sum(),
            accept.to(zd.dtype).sum(), cos.sum(), beats,
        ])
        if world > 1:
            sums = self._all_reduce(sums)
        per_row_means = sums[1:] / n_global
        stats = GALStats(sums[0] / world, *per_row_means.unbind())
        return chosen, h_objective, stats

    def backward(
        self,
        z: torch.Tensor,
        y: Any,
        loss_fn: LossFn,
        lr: float | torch.Tensor,
        *,
        scaler: Any = None,
        weight: float = 1.0,
        extra: torch.Tensor | None = None,
    ) -> GALStats:
        """One GAL step's backward pass (Algorithm 1 lines 3-16, minus the optimizer step).

        Back-propagates the policy-chosen gradient (``g`` or ``dl/dz``) into the model through
        ``z`` and ``|r|`` (objective 6) into h's parameters; the caller then steps its
        optimizer(s) as usual.

        Args:
            z: the model's output features ``[..., d]`` (or a parameter tensor itself, Fig. 4).
            y: targets, passed through to ``loss_fn``.
            loss_fn: ``loss_fn(z, y)`` -> mean-reduced loss (and ``reduction="none"`` for
                ``granularity="sample"``).
            lr: the optimizer's current learning rate (``opt.param_groups[0]["lr"]``).
            scaler: a ``torch.amp.GradScaler``; both back-propagated gradients are scaled by it.
            weight: multiplies both gradients (e.g. ``1/accumulation_steps``).
            extra: a scalar loss of the same model that GAL does not adjust (e.g. DETR's class
                and auxiliary terms beside the adjusted box term, Sec. V-B), back-propagated
                in the same pass with its usual gradient (scaled by ``scaler`` and ``weight`` too).

        Returns:
            :class:`GALStats` (detached tensors; ``stats.loss`` is the reduced loss).
        """
        chosen, h_objective, h_grads, stats = self._adjust(z, y, loss_fn, lr, scaler, weight)
        trains_h = h_objective is not None and h_objective.requires_grad and any(
            p.requires_grad for p in self.h.parameters())
        model_out, model_grad = [z], [chosen]
        if extra is not None:
            extra = _scaled(extra, scaler, weight)
            model_out.append(extra)
            model_grad.append(None)
        if self._world_size() > 1 and trains_h:
            params = [p for p in self.h.parameters() if p.requires_grad]
            torch.autograd.backward(model_out, model_grad)
            grads = torch.autograd.grad(h_objective, params, allow_unused=True)
            grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads, strict=True)]
            flat = self._all_reduce(torch.cat([gr.reshape(-1) for gr in grads]))
            offset = 0
            for p in params:
                part = flat[offset:offset + p.numel()].view_as(p)
                offset += p.numel()
                if p.grad is None:
                    p.grad = part.clone()
                else:
                    p.grad.add_(part)
        elif trains_h:
            torch.autograd.backward([*model_out, h_objective], [*model_grad, None])
        else:
            torch.autograd.backward(model_out, model_grad)
            if h_grads is not None:  # the compiled step's d|r|/dtheta, accumulated as autograd would
                for p, gr in h_grads:
                    if p.grad is None:
                        p.grad = gr
                    else:
                        p.grad.add_(gr)
        return stats
