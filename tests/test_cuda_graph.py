"""The CUDA-graph replay of GAL's compiled step (gal.cuda_graph): buffer handling on the CPU with
a capture that replays by re-running the function on the captured buffers, and on CUDA (skipped
here) the replayed compiled step against the eager step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gal import GradientAdjuster
from gal.cuda_graph import GraphReplay
from tests.test_gal_cost import _train_few


def step(p: torch.Tensor, z: torch.Tensor, y: torch.Tensor, eta: torch.Tensor):
    """A stand-in for a compiled step: reads every input, returns fresh tensors."""
    return (p * z + eta, (z * y.unsqueeze(1)).sum(0) * p, (eta * y.double().mean()).reshape(()))


def _one_step(compile_step, h=None):
    """One GAL step of a double Linear model: the stats, the gradients, the adjuster."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    adj = GradientAdjuster(3, arch=(8, 4), h=h, alpha=0.3, beta=2.0, seed=1,
                           compile_step=compile_step).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=gen)
    s = adj.backward(model(x), y, F.cross_entropy, lr=0.1)
    grads = [p.grad.clone() for p in (*model.parameters(), *adj.parameters())]
    return torch.stack(list(s.as_dict().values())), grads, adj


class ReplayOnBuffers:
    """A CPU capture: ``replay`` recomputes the outputs in place from the buffers' current
    contents (what a CUDA graph does); counts the replays."""

    def __init__(self) -> None:
        self.replays = 0

    def __call__(self, fn, inputs):
        outputs = tuple(fn(*inputs))

        def replay() -> None:
            self.replays += 1
            for o, new in zip(outputs, fn(*inputs), strict=True):
                o.copy_(new)

        return outputs, replay


def test_replay_reads_new_inputs_and_parameters_in_place() -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    args0 = (p, torch.randn(4, 3, dtype=torch.float64, generator=gen), torch.tensor([0, 1, 2, 1]),
             torch.tensor(0.1, dtype=torch.float64))
    cap = ReplayOnBuffers()
    rep = GraphReplay(step, args0, [True, False, False, False], capture=cap)
    assert rep.static[0].data_ptr() == p.data_ptr()  # h's parameter is read where it lives
    assert all(rep.static[i].data_ptr() != args0[i].data_ptr() for i in (1, 2, 3))
    kept = []
    for i in range(4):
        with torch.no_grad():
            p.mul_(0.5).add_(0.25)  # an optimizer's in-place update between steps
        args = (p, torch.randn(4, 3, dtype=torch.float64, generator=gen),
                torch.randint(0, 3, (4,), generator=gen), torch.tensor(0.1 / (i + 1), dtype=torch.float64))
        out = rep(*args)
        want = step(*(a.detach() for a in args))
        for o, w in zip(out, want, strict=True):
            torch.testing.assert_close(o, w, rtol=0, atol=0)
        assert all(o.data_ptr() != s.data_ptr() for o, s in zip(out, rep.outputs, strict=True))
        kept.append((out, want))
    assert cap.replays == 4
    for out, want in kept:  # earlier outputs are not overwritten by later replays
        for o, w in zip(out, want, strict=True):
            torch.testing.assert_close(o, w, rtol=0, atol=0)


def test_replay_recaptures_on_a_replaced_parameter_and_checks_arity() -> None:
    p = torch.ones(3)
    z, y, eta = torch.ones(2, 3), torch.tensor([1, 2]), torch.tensor(0.5)
    rep = GraphReplay(step, (p, z, y, eta), [True, False, False, False], capture=ReplayOnBuffers())
    q = torch.full((3,), 2.0)  # a new parameter tensor (p.data = ..., assign=True): captured again
    torch.testing.assert_close(rep(q, z, y, eta)[0], q * z + eta)
    assert rep.captures == 2 and rep.static[0].data_ptr() == q.data_ptr()
    torch.testing.assert_close(p, torch.ones(3))  # the old storage is never written
    with pytest.raises(TypeError, match="expected 4 tensors"):
        rep(q, z, y)
    with pytest.raises(ValueError, match="in_place has 2 flags"):
        GraphReplay(step, (p, z, y, eta), [True, False], capture=ReplayOnBuffers())


def test_replay_buffers_keep_strides_and_a_failed_capture_runs_uncaptured() -> None:
    p, y, eta = torch.ones(3), torch.tensor([1, 2]), torch.tensor(0.5)
    wide = torch.arange(12.0).reshape(2, 6)
    z = wide[:, :3]  # a non-dense view: the compiled step is specialised to its strides
    rep = GraphReplay(step, (p, z, y, eta), [True, False, False, False], capture=ReplayOnBuffers())
    assert rep.static[1].stride() == z.stride() == (6, 1)
    torch.testing.assert_close(rep(p, z, y, eta)[0], p * z + eta)

    def broken(fn, inputs):
        raise RuntimeError("operation not permitted when stream is capturing")

    with pytest.warns(UserWarning, match="capture failed"):
        rep = GraphReplay(step, (p, z, y, eta), [True, False, False, False], capture=broken)
    for o, w in zip(rep(p, z + 1, y, eta), step(p, z + 1, y, eta), strict=True):
        torch.testing.assert_close(o, w, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_compiled_step_matches_eager() -> None:
    """compile_step={"mode": "reduce-overhead"} on CUDA: the step replayed from a CUDA graph
    gives the eager step's numbers over steps with a changing learning rate and a smaller last
    batch (a second signature, a second graph)."""
    se, pe, _ = _train_few(False, sizes=(6, 6, 6, 6, 5), device="cuda")
    sc, pc, adj = _train_few({"mode": "reduce-overhead"}, sizes=(6, 6, 6, 6, 5), device="cuda")
    assert any(type(f).__name__ == "GraphReplay" for f in adj._compiled.entries.values())
    torch.testing.assert_close(sc, se, rtol=1e-10, atol=1e-13, equal_nan=True)
    torch.testing.assert_close(pc, pe, rtol=1e-10, atol=1e-13)


def test_cuda_graph_modes_on_cpu_compile_without_inductor_graphs(monkeypatch) -> None:
    """On the CPU ``mode="reduce-overhead"`` compiles as the default mode: inductor is handed the
    traced graph without its own CUDA graphs (GAL replays its own on CUDA) and no replay wraps
    it; the step equals the eager one. (Inductor is replaced by the traced graph itself here, to
    keep the test fast; tests/test_gal_cost.py compiles with inductor.)"""
    import torch._inductor

    seen = []

    def fake_compile(gm, inputs, options=None):
        seen.append(options)
        return gm

    monkeypatch.setattr(torch._inductor, "compile", fake_compile)

    se, ge, _ = _one_step(False)
    sc, gc, adj = _one_step({"mode": "max-autotune"})
    assert seen == [{"max_autotune": True, "coordinate_descent_tuning": True}]
    assert not any(isinstance(f, GraphReplay) for f in adj._compiled.entries.values())
    torch.testing.assert_close(sc, se, rtol=1e-12, atol=1e-15, equal_nan=True)
    for a, b in zip(gc, ge, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    _one_step({"mode": "reduce-overhead"})
    assert seen[-1] is None  # no options left once inductor's CUDA graphs are taken out


def test_dynamo_fallback_turns_inductor_cuda_graphs_off(monkeypatch) -> None:
    """Where the step cannot be traced (here: h has a buffer) it goes through torch.compile; a
    CUDA-graph mode reaches it as inductor options without ``triton.cudagraphs`` (inductor's
    graphs would overwrite a step's outputs on the next step). torch.compile is replaced by the
    function itself, so the step equals the eager one."""
    seen = []

    def fake_torch_compile(fn, **kw):
        seen.append(kw)
        return fn

    monkeypatch.setattr(torch, "compile", fake_torch_compile)

    def h_with_buffer():
        h = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        h.register_buffer("calls", torch.zeros(()))
        return h.double()

    eager = _one_step(False, h=h_with_buffer())[0]
    with pytest.warns(UserWarning, match="h has buffers"):
        compiled = _one_step({"mode": "reduce-overhead"}, h=h_with_buffer())[0]
    assert seen == [{"options": {}}]
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-15, equal_nan=True)
