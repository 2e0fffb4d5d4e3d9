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

The arithmetic is written once, in :mod:`gal.algorithm`; :mod:`gal.eager_step` (single process,
DDP, one decision per row) and :mod:`gal.compiled_step` compose it. This module holds the
:class:`GradientAdjuster` that picks the path and back-propagates its result.

Everything stays on the device: decisions use :func:`torch.where`, and no ``.item()``,
``bool(tensor)`` or ``.cpu()`` is called inside the step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gal.adjuster import build_adjuster
from gal.algorithm import GALStats, LossFn
from gal.compiled_step import TracedStep, compile_kwargs, functional_params
from gal.eager_step import batch_step, sample_step

__all__ = ["FIRST_ORDER", "GRANULARITIES", "NOISE_SCALING", "POLICIES", "GALStats", "GradientAdjuster",
           "LossFn"]

POLICIES = ("leq", "lt", "always", "never")
GRANULARITIES = ("batch", "sample")
FIRST_ORDER = ("sum", "sample_mean", "element_mean")
NOISE_SCALING = ("eq4", "unit")


def _scaled(t: torch.Tensor, scaler: Any, weight: float) -> torch.Tensor:
    """``t`` times ``scaler``'s loss scale (AMP) and ``weight`` (e.g. 1/accumulation steps)."""
    if scaler is not None:
        t = scaler.scale(t)
    return t * weight if weight != 1.0 else t


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
            On CUDA, ``{"mode": "reduce-overhead"}`` replays the compiled step from one CUDA
            graph per input signature (:class:`gal.cuda_graph.GraphReplay`), so GAL's extra
            work costs one graph launch instead of about a hundred kernel launches.
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
                step = sample_step if self.granularity == "sample" else batch_step
                chosen, h_objective, stats = step(self, zs.requires_grad_(True), y, loss_fn, lr,
                                                  world, self._all_reduce)
            if world > 1:  # back to this rank's loss scale (DDP averages model grads over ranks)
                chosen = chosen * world
            chosen = _scaled(chosen, scaler, weight)
            if h_objective is not None:
                h_objective = _scaled(h_objective, scaler, weight)
            if h_grads is not None:
                h_grads = [(p, _scaled(gr, scaler, weight)) for p, gr in h_grads]
        return chosen.to(z.dtype), h_objective, h_grads, stats

    def _eta(self, lr: float | torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """``eta~ = beta * lr`` as a 0-dim tensor, for the compiled step (no recompile per lr)."""
        eta = self.beta * lr
        if not isinstance(eta, torch.Tensor):
            return torch.full((), eta, dtype=zs.dtype, device=zs.device)
        return eta

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
