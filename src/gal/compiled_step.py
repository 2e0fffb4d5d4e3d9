"""The opt-in compiled GAL step (``GradientAdjuster(compile_step=...)``).

Algorithm 1 lines 4-10 and the gradient of objective (6) w.r.t. h's parameters written as one
function of tensors with :mod:`torch.func` (``grad_and_value`` for ``dl/dz`` and for
``d|r|/dtheta``, ``functional_call`` for ``h``): :func:`functional_batch_step`. The eager step
(:func:`gal.eager_step.batch_core`) back-propagates ``|r|`` through h inside the model's
backward pass instead; both compute the same quantities (Eqs. 3-7), in the same order, with the
same functions of :mod:`gal.algorithm` (Eqs. 4-5 in ``adjusted_gradient``, Eq. 7 in
``batch_remainder``, lines 7-10 and the diagnostics in ``batch_decide``), so the two paths
cannot drift apart.

:class:`TracedStep` compiles that function once per input signature: it traces it to one aten
graph (:func:`~torch.fx.experimental.proxy_tensor.make_fx` on fake tensors) and hands the graph
to a :func:`torch.compile` backend directly (inductor: :func:`torch._inductor.compile`, "for FX
graphs captured without TorchDynamo"). A call then costs a dictionary lookup on the signature
and the compiled graph, with no TorchDynamo frame evaluation or guards: for the small models of
Table V those cost more than GAL's arithmetic (Table VII).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch.func import functional_call, grad_and_value

from gal.algorithm import (
    LossFn,
    StepSettings,
    adjusted_gradient,
    batch_decide,
    batch_remainder,
    h_forward,
    mean_loss,
    unit_noise,
)

#: ``torch.compile`` keyword arguments that ``compile_step`` accepts as a dict. ``fullgraph``
#: and ``dynamic`` are accepted and have no effect: the traced graph is always whole and
#: specialised to one signature.
COMPILE_KWARGS = ("backend", "mode", "options", "fullgraph", "dynamic")


def functional_batch_step(
    adj: StepSettings, params: dict[str, torch.Tensor], zd: torch.Tensor, y: Any,
    loss_fn: LossFn, eta: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    """One single-process ``batch`` GAL step as a pure function.

    Args:
        adj: the adjuster (:class:`gal.step.GradientAdjuster`: its settings and its module
            ``h``; h's parameters come from ``params``).
        params: ``{name: tensor}`` of h's parameters (``h.named_parameters()``).
        zd: detached features ``[..., d]`` in the step's dtype.
        y: targets for ``loss_fn``.
        loss_fn: mean-reduced loss ``loss_fn(z, y)``.
        eta: ``eta~ = beta * lr`` as a 0-dim tensor.

    Returns:
        ``(chosen, h_grads, stats)``: the gradient to send into the model through z (lines
        7-10), ``{name: d|r|/dtheta}`` (objective 6) and the seven fields of ``GALStats``.
    """
    grad, loss = grad_and_value(lambda z: mean_loss(loss_fn, z, y))(zd)  # line 4

    def objective(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h: Callable[[torch.Tensor], torch.Tensor] = lambda x: functional_call(adj.h, p, (x,))  # noqa: E731
        v = h_forward(adj.h, zd, h)  # Eq. 3
        direction, grad_norm, _, g = adjusted_gradient(v, grad, adj.alpha, adj.eps, unit_noise(adj))
        loss_t, r = batch_remainder(adj, zd, grad, g, loss, y, loss_fn, eta)
        return r.abs(), (direction, grad_norm, g, loss_t, r)

    h_grads, (_, (direction, grad_norm, g, loss_t, r)) = grad_and_value(objective, has_aux=True)(params)
    chosen, stats = batch_decide(adj, zd, grad, g, direction, grad_norm, loss, loss_t, r, y,
                                 loss_fn, eta)
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


def compile_kwargs(setting: bool | str | Mapping[str, Any]) -> dict[str, Any]:
    """``compile_step``'s value as :func:`torch.compile` keyword arguments (``True``: inductor;
    a string: that backend; a dict: its keys, which must be among :data:`COMPILE_KWARGS`)."""
    if isinstance(setting, Mapping):
        unknown = sorted(set(setting) - set(COMPILE_KWARGS))
        if unknown:
            raise ValueError(f"compile_step got unknown torch.compile arguments {unknown}; "
                             f"use {', '.join(COMPILE_KWARGS)}")
        kwargs = dict(setting)
        backend = kwargs.get("backend", "inductor")
        if backend != "inductor" and (kwargs.get("mode") or kwargs.get("options")):
            raise ValueError(f"compile_step: 'mode' and 'options' apply to the inductor backend, "
                             f"not {backend!r}")
        return kwargs
    return {"backend": "inductor" if setting is True else str(setting)}


#: input signatures :class:`TracedStep` traces before new ones go through TorchDynamo.
MAX_SIGNATURES = 8


def _tensor_key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.shape, t.dtype, t.device, t.requires_grad)


class TracedStep:
    """:func:`functional_batch_step` of one adjuster, compiled once per input signature.

    The signature is everything the traced graph depends on: the adjuster's settings, h (its
    identity, training flag and parameters' names, shapes and dtypes), ``loss_fn`` (its
    identity), and the shapes, dtypes and devices of the features, the targets (any pytree of
    tensors and hashable constants) and ``eta~``. A new signature (e.g. the last, smaller batch
    of an epoch) traces and compiles once more. Changing h's modules in place after the first
    step (other than its parameters' values) is not detected.

    Functions the tracer cannot follow (data-dependent Python control flow in ``loss_fn``), an
    h with buffers, targets holding unhashable constants and signatures beyond the first
    :data:`MAX_SIGNATURES` (e.g. a detector's targets, whose box count changes every batch) go
    through :func:`torch.compile` of the function instead (TorchDynamo, which splits the graph
    where it must and makes changing shapes dynamic), with a warning.
    """

    def __init__(self, adj: StepSettings, setting: bool | str | Mapping[str, Any]) -> None:
        self.adj = adj
        self.kwargs = compile_kwargs(setting)
        self.entries: dict[Hashable, Callable[..., Any]] = {}
        self._dynamo: Callable[..., Any] | None = None

    def _settings(self) -> tuple[Any, ...]:
        a = self.adj
        return (a.dim, a.alpha, a.eps, a.policy, a.first_order, a.noise_scaling,
                a.compare_vanilla, id(a.h), a.h.training)

    def __call__(self, params: dict[str, torch.Tensor], zd: torch.Tensor, y: Any,
                 loss_fn: LossFn, eta: torch.Tensor,
                 ) -> tuple[torch.Tensor, list[torch.Tensor], tuple[torch.Tensor, ...]]:
        """``(chosen, h's gradients in params' order, stats)`` of :func:`functional_batch_step`."""
        if isinstance(y, torch.Tensor):
            flat, spec, ykey = [y], None, _tensor_key(y)
        else:
            flat, spec = pytree.tree_flatten(y)
            ykey = (spec, tuple(_tensor_key(v) if isinstance(v, torch.Tensor) else v for v in flat))
        leaves = [v for v in flat if isinstance(v, torch.Tensor)]
        pkey = tuple((k, p.shape, p.dtype, p.device) for k, p in params.items())
        key: Hashable = (self._settings(), pkey, _tensor_key(zd), ykey, eta.dtype, eta.device,
                         loss_fn)
        why = None
        try:
            fn = self.entries.get(key)
        except TypeError:  # an unhashable constant among the targets
            key, why = ("unhashable targets", loss_fn), "the targets hold an unhashable constant"
            fn = self.entries.get(key)
        if fn is None:
            if why is None and len(self.entries) >= MAX_SIGNATURES:
                why = (f"{len(self.entries)} input signatures traced already (shapes that change "
                       "every step, or a new loss_fn object per step)")
            fn = self.entries[key] = self._build(params, zd, flat, spec, loss_fn, eta, why)
        n = len(params)
        out = fn(*params.values(), zd, *leaves, eta)
        return out[0], list(out[1:1 + n]), tuple(out[1 + n:])

    def _build(self, params: dict[str, torch.Tensor], zd: torch.Tensor, flat: list[Any],
               spec: pytree.TreeSpec | None, loss_fn: LossFn, eta: torch.Tensor, why: str | None,
               ) -> Callable[..., Any]:
        """The compiled step for one signature, called as ``fn(*h_params, zd, *y_tensors, eta)``
        and returning ``(chosen, *h_grads, *stats)``; traced unless ``why`` says why not.
        ``flat`` and ``spec`` are the targets' pytree leaves and structure (``spec`` None: the
        targets are the one tensor ``flat[0]``)."""
        from torch.fx.experimental.proxy_tensor import make_fx

        adj, names = self.adj, list(params)
        slots = [i for i, v in enumerate(flat) if isinstance(v, torch.Tensor)]
        n = len(names)

        def flat_step(fn: Callable[..., Any]) -> Callable[..., tuple[torch.Tensor, ...]]:
            """``fn`` (``functional_batch_step`` or its Dynamo-compiled form) on flat tensors."""
            def step(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
                leaves = list(flat)
                for i, v in zip(slots, args[n + 1:-1], strict=True):
                    leaves[i] = v
                y = leaves[0] if spec is None else pytree.tree_unflatten(leaves, spec)
                p = dict(zip(names, args[:n], strict=True))
                chosen, grads, stats = fn(adj, p, args[n], y, loss_fn, args[-1])
                return (chosen, *(grads[k] for k in names), *stats)
            return step

        if why is None and any(True for _ in adj.h.buffers()):
            why = "h has buffers"
        if why is None:
            inputs = [*params.values(), zd, *(flat[i] for i in slots), eta]
            inputs = [t.detach() for t in inputs]
            with torch.no_grad():
                try:
                    gm = make_fx(flat_step(functional_batch_step), tracing_mode="fake")(*inputs)
                except Exception as err:  # noqa: BLE001 - any tracing failure takes the Dynamo path
                    why = f"tracing failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
                else:
                    return self._compile(gm, inputs, n)
        if self._dynamo is None:  # warn once: a detector's targets would warn every batch
            warnings.warn(f"GradientAdjuster(compile_step=...): {why}; compiling the step with "
                          "torch.compile (TorchDynamo) instead", stacklevel=4)
            kw = dict(self.kwargs)
            if kw.get("backend", "inductor") == "inductor" and (kw.get("mode") or kw.get("options")):
                # no inductor CUDA graphs here: they overwrite a call's outputs on the next call
                kw["options"], _ = _inductor_options(kw.pop("mode", None), kw.get("options"))
            self._dynamo = torch.compile(functional_batch_step, **kw)
        return flat_step(self._dynamo)

    def _compile(self, gm: torch.fx.GraphModule, inputs: list[torch.Tensor],
                 n_params: int) -> Callable[..., Any]:
        """``gm`` compiled by the backend. Inductor modes that use CUDA graphs
        (``reduce-overhead``, ``max-autotune``) compile without inductor's own CUDA graphs and
        replay the compiled step from one graph per signature on CUDA
        (:class:`gal.cuda_graph.GraphReplay`, h's ``n_params`` parameters read in place); on
        the CPU they compile as the other modes."""
        kw = self.kwargs
        backend = kw.get("backend", "inductor")
        if backend != "inductor":
            from torch._dynamo import lookup_backend

            return lookup_backend(backend)(gm, inputs)
        import torch._inductor

        options, graphs = _inductor_options(kw.get("mode"), kw.get("options"))
        fn = torch._inductor.compile(gm, inputs, options=options or None)
        device = inputs[n_params].device
        if not (graphs and device.type == "cuda" and all(t.device == device for t in inputs)):
            return fn  # on the CPU, or an input elsewhere (a CPU lr is read once by a graph)
        from gal.cuda_graph import GraphReplay

        return GraphReplay(fn, inputs, [i < n_params for i in range(len(inputs))])


def _inductor_options(mode: str | None, options: Mapping[str, Any] | None,
                      ) -> tuple[dict[str, Any], bool]:
    """Inductor's options for ``mode`` plus ``options``, without inductor's own CUDA graphs
    (``triton.cudagraphs``), and whether they asked for CUDA graphs."""
    import torch._inductor

    out = dict(torch._inductor.list_mode_options(mode)) if mode else {}
    out.update(options or {})
    return out, bool(out.pop("triton.cudagraphs", False))
