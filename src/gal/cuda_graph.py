"""CUDA-graph replay of GAL's compiled step (``compile_step={"mode": "reduce-overhead"}``).

GAL's extra work (Algorithm 1 lines 4-10, Eqs. 3-7 and the gradient of objective (6) w.r.t. h)
is about a hundred small kernels per step whose FLOPs are a tiny fraction of a CNN's step (Table
VII): on a GPU their launches, not their arithmetic, are what it costs. :class:`GraphReplay`
captures the compiled step of one input signature into one CUDA graph and replays it, so a step
costs one graph launch plus two grouped copies: the step's new inputs into the graph's buffers
and the graph's outputs into fresh tensors (so an output stays valid after the next step, as
the eager step's do).

h's parameters are read by the graph where they live (optimizers update them in place); when a
parameter's storage changes (``p.data = ...``, ``load_state_dict(assign=True)``) the step is
captured again. The capture is injectable (:func:`cuda_capture` by default) so the buffer
handling is tested on the CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

__all__ = ["Capture", "GraphReplay", "cuda_capture"]

#: ``capture(fn, inputs)`` -> ``(outputs, replay)``: runs ``fn(*inputs)`` once into ``outputs``;
#: ``replay()`` recomputes them in place from the current contents of ``inputs``
Capture = Callable[[Callable[..., Sequence[torch.Tensor]], Sequence[torch.Tensor]],
                   tuple[Sequence[torch.Tensor], Callable[[], None]]]


def cuda_capture(fn: Callable[..., Sequence[torch.Tensor]], inputs: Sequence[torch.Tensor],
                 warmup: int = 2) -> tuple[Sequence[torch.Tensor], Callable[[], None]]:
    """Warm ``fn`` up on a side stream, then capture ``fn(*inputs)`` into a
    :class:`torch.cuda.CUDAGraph` (the pattern of PyTorch's CUDA-graph notes: lazy library
    initialisation happens outside the capture), on the inputs' device whichever device is
    current, in ``thread_local`` error mode (a DataLoader's pin-memory thread may call CUDA
    meanwhile)."""
    device = next(t.device for t in inputs if t.is_cuda)
    with torch.cuda.device(device):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = tuple(fn(*inputs))

    def replay() -> None:
        with torch.cuda.device(device):
            graph.replay()

    return outputs, replay


def _buffer(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` with its strides (the compiled step is specialised to them)."""
    out = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device=t.device)
    return out.copy_(t.detach())


class GraphReplay:
    """``fn`` (a compiled step of one input signature) replayed from one captured graph.

    ``inputs``: example inputs in call order; those flagged in ``in_place`` (h's parameters)
    are read where they live, the others are copied into buffers owned by the graph. A call
    copies the other arguments into those buffers (one grouped copy), replays, and returns
    copies of the outputs (one grouped copy). When an ``in_place`` argument's storage is not
    the captured one, the step is captured again on the new tensors. A capture that fails
    leaves ``fn`` uncaptured, with a warning.
    """

    def __init__(self, fn: Callable[..., Sequence[torch.Tensor]], inputs: Sequence[torch.Tensor],
                 in_place: Sequence[bool], capture: Capture = cuda_capture) -> None:
        if len(in_place) != len(inputs):
            raise ValueError(f"in_place has {len(in_place)} flags for {len(inputs)} inputs")
        self.fn, self.in_place, self.capture = fn, tuple(in_place), capture
        self.captures = 0
        self.replay: Callable[[], None] | None = None
        self._capture(inputs)

    def _capture(self, inputs: Sequence[torch.Tensor]) -> None:
        self.static = [t.detach() if keep else _buffer(t)
                       for t, keep in zip(inputs, self.in_place, strict=True)]
        self.captures += 1
        try:
            with torch.no_grad():
                self.outputs, self.replay = self.capture(self.fn, self.static)
        except RuntimeError as err:
            warnings.warn(f"GAL's compiled step: CUDA-graph capture failed ({err}); running it "
                          "without a graph", stacklevel=2)
            self.replay = None

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(args) != len(self.static):
            raise TypeError(f"expected {len(self.static)} tensors, got {len(args)}")
        if self.replay is None:
            return tuple(self.fn(*args))
        if any(keep and a.data_ptr() != buf.data_ptr()
               for a, buf, keep in zip(args, self.static, self.in_place, strict=True)):
            self._capture(args)  # a parameter moved: read the new storage, never write the old
            if self.replay is None:
                return tuple(self.fn(*args))
        dst = [buf for buf, keep in zip(self.static, self.in_place, strict=True) if not keep]
        src = [a.detach() for a, keep in zip(args, self.in_place, strict=True) if not keep]
        with torch.no_grad():
            if dst:
                torch._foreach_copy_(dst, src)
            self.replay()
            out = [torch.empty_like(o) for o in self.outputs]
            torch._foreach_copy_(out, list(self.outputs))
        return tuple(out)
