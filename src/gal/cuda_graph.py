"""CUDA-graph replay of GAL's compiled step (``compile_step={"mode": "reduce-overhead"}``).

GAL's extra work (Algorithm 1 lines 4-10, Eqs. 3-7 and the gradient of objective (6) w.r.t. h)
is about a hundred small kernels per step whose FLOPs are a tiny fraction of a CNN's step (Table
VII): on a GPU their launches, not their arithmetic, are what it costs. :class:`GraphReplay`
captures the compiled step of one input signature into one CUDA graph and replays it, so a step
costs one graph launch plus two grouped copies: the step's new inputs into the graph's buffers
and the graph's outputs into fresh tensors (so an output stays valid after the next step, as
the eager step's do).

h's parameters are read by the graph where they live (optimizers update them in place); an
input whose storage is the captured one is not copied. The capture is injectable
(:func:`cuda_capture` by default) so the buffer handling is tested on the CPU.
"""

from __future__ import annotations

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
    initialisation happens outside the capture)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = tuple(fn(*inputs))
    return outputs, graph.replay


class GraphReplay:
    """``fn`` (a compiled step of one input signature) replayed from one captured graph.

    ``inputs``: example inputs in call order; those flagged in ``in_place`` (h's parameters)
    are used as they are, the others are copied into buffers owned by the graph. A call copies
    the arguments whose storage is not the captured one into those buffers (one grouped copy),
    replays, and returns copies of the outputs (one grouped copy).
    """

    def __init__(self, fn: Callable[..., Sequence[torch.Tensor]], inputs: Sequence[torch.Tensor],
                 in_place: Sequence[bool], capture: Capture = cuda_capture) -> None:
        if len(in_place) != len(inputs):
            raise ValueError(f"in_place has {len(in_place)} flags for {len(inputs)} inputs")
        self.static = [t.detach() if keep else t.detach().clone()
                       for t, keep in zip(inputs, in_place, strict=True)]
        with torch.no_grad():
            self.outputs, self.replay = capture(fn, self.static)

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(args) != len(self.static):
            raise TypeError(f"expected {len(self.static)} tensors, got {len(args)}")
        dst, src = [], []
        for buf, a in zip(self.static, args, strict=True):
            if a.data_ptr() != buf.data_ptr():
                dst.append(buf)
                src.append(a.detach())
        with torch.no_grad():
            if dst:
                torch._foreach_copy_(dst, src)
            self.replay()
            out = [torch.empty_like(o) for o in self.outputs]
            torch._foreach_copy_(out, list(self.outputs))
        return tuple(out)
