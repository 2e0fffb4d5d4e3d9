"""GAL's cost (Table VII, Sec. VI-C): a guard on the operators one GAL step dispatches, the opt-in
compiled step, cheaper checkpoints and per-step logging, the benchmark's report, and (under
CUDA) a few GAL steps with host synchronisation forbidden.

The operator counts are a regression guard, not a timing test: they are deterministic for a given
torch version, and each must stay at or below the committed figure.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference_h import linear_stack

from benchmarks import gal_cost
from experiments.common import DIAGNOSTICS, EpochAverager
from gal import GradientAdjuster
from gal_suite.records import RunWriter, load_history

#: aten operators of one ``GradientAdjuster.backward`` (Alg. 1 lines 3-16 without the optimizer
#: step, the Linear head's backward included) on the fixed case of :func:`_fixed_case`, measured
#: with torch 2.14. Before the step was slimmed they were 163 / 155 / 186 / 178; h's flat
#: parameter adds 3 (its split into layers) and saves 35 in an Adam step
#: (:func:`test_flat_h_costs_fewer_operators_per_whole_step`).
COMMITTED_MAX_OPS = {
    ("batch", True): 145,
    ("batch", False): 140,
    ("sample", True): 181,
    ("sample", False): 173,
}


def _fixed_case(granularity: str, compare_vanilla: bool):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 10)
    adj = GradientAdjuster(10, arch=(100, 32, 16), alpha=1e-3, beta=1.0, granularity=granularity,
                           compare_vanilla=compare_vanilla)
    x, y = torch.randn(16, 8), torch.randint(0, 10, (16,))
    return model, adj, x, y


@pytest.mark.parametrize("granularity,compare_vanilla", sorted(COMMITTED_MAX_OPS))
def test_gal_step_operator_count_does_not_grow(granularity: str, compare_vanilla: bool) -> None:
    model, adj, x, y = _fixed_case(granularity, compare_vanilla)
    z = model(x)
    n = gal_cost.count_ops(lambda: adj.backward(z, y, F.cross_entropy, lr=0.1))
    limit = COMMITTED_MAX_OPS[(granularity, compare_vanilla)]
    assert n <= limit, (f"one GAL step ({granularity}, compare_vanilla={compare_vanilla}) now "
                        f"dispatches {n} aten operators, more than the committed {limit}")
    assert model.weight.grad is not None and all(p.grad is not None for p in adj.parameters())


def test_flat_h_costs_fewer_operators_per_whole_step() -> None:
    """GAL's backward plus the Adam step run fewer operators with h's one flat parameter than
    with h written as separate ``nn.Linear`` layers holding the same numbers (far fewer counting
    the kernels inside the foreach ops, which loop over tensors on CPU), and both give the same
    parameters."""
    counts, params = {}, {}
    for flat in (True, False):
        model, adj, x, y = _fixed_case("batch", True)
        if not flat:
            adj.h = linear_stack(adj.h)
        opt = torch.optim.Adam([*model.parameters(), *adj.parameters()], lr=1e-3, foreach=True)

        def step(adj=adj, model=model, x=x, y=y, opt=opt) -> None:
            adj.backward(model(x), y, F.cross_entropy, lr=1e-3)
            opt.step()
            opt.zero_grad()

        step()  # the optimizer's state exists from here on
        counts[flat] = (gal_cost.count_ops(step), gal_cost.profiler_ops(step))
        params[flat] = torch.cat([p.detach().reshape(-1) for p in adj.h.parameters()])
    (top_flat, all_flat), (top_sep, all_sep) = counts[True], counts[False]
    assert top_flat < top_sep, counts
    # the profiler also sees the per-tensor kernels inside the foreach ops (CPU), 7 tensors fewer
    assert all_flat < all_sep - 100, counts
    assert torch.equal(params[True], params[False])


def test_op_counter_counts() -> None:
    a = torch.ones(3)
    assert gal_cost.count_ops(lambda: (a + 1) * 2) == 2
    assert gal_cost.count_flops(lambda: torch.ones(4, 5) @ torch.ones(5, 6)) == 2 * 4 * 5 * 6


def _train_few(compile_step, loss_fn=F.cross_entropy, sizes=(6, 6, 6, 5), device="cpu"):
    """GAL steps of a double Linear model (the last batch smaller, the learning rate GAL sees
    decaying); the stats and the parameters."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double().to(device)
    adj = GradientAdjuster(3, arch=(8, 4), alpha=0.3, beta=2.0, seed=1,
                           compile_step=compile_step).double().to(device)
    opt = torch.optim.SGD([*model.parameters(), *adj.parameters()], lr=0.1)
    gen = torch.Generator().manual_seed(0)
    stats = []
    for i, n in enumerate(sizes):
        x = torch.randn(n, 4, generator=gen, dtype=torch.float64).to(device)
        y = torch.randint(0, 3, (n,), generator=gen).to(device)
        s = adj.backward(model(x), y, loss_fn, lr=0.1 / (i + 1))
        stats.append(torch.stack([v.double() for v in s.as_dict().values()]))
        opt.step()
        opt.zero_grad()
    params = torch.cat([p.detach().reshape(-1) for g in opt.param_groups for p in g["params"]])
    return torch.stack(stats), params, adj


def test_compiled_step_matches_eager_and_survives_copies() -> None:
    """compile_step (here the cheap "aot_eager" backend) gives the eager step's numbers, with a
    changing learning rate and a new batch size; deep copies and pickling keep working."""
    se, pe, _ = _train_few(False)
    sc, pc, adj = _train_few("aot_eager")
    assert adj._compiled is not None
    clone = copy.deepcopy(adj)
    assert clone._compiled is not adj._compiled
    torch.save(adj, io.BytesIO())  # the compiled function is not pickled
    torch.testing.assert_close(sc, se, rtol=1e-12, atol=1e-15, equal_nan=True)
    torch.testing.assert_close(pc, pe, rtol=1e-12, atol=1e-15)


def _compiled_vs_eager_adjust(adj_kw: dict, weight: float, scale: float | None):
    """``adjust`` eager and with ``compile_step="aot_eager"`` on one fixed double case."""
    out = {}
    for mode in (False, "aot_eager"):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3).double()
        adj = GradientAdjuster(3, seed=1, compile_step=mode, **adj_kw).double()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 3, (6,), generator=gen)
        scaler = None if scale is None else torch.amp.GradScaler("cpu", init_scale=scale)
        chosen, h_obj, stats = adj.adjust(model(x), y, F.cross_entropy, 0.1, scaler=scaler,
                                          weight=weight)
        grads = (torch.autograd.grad(h_obj, list(adj.h.parameters()))
                 if any(p.requires_grad for p in adj.h.parameters()) else ())
        out[mode] = (chosen, h_obj.detach(), grads, stats, adj)
    return out


@pytest.mark.parametrize(("weight", "scale"), [(1.0, None), (0.5, 8.0)])
def test_compiled_adjust_gives_h_objective_with_eager_value_and_gradient(weight, scale) -> None:
    """The compiled step returns h's gradients as tensors; ``adjust`` turns them into a scalar
    valued ``weight * scale * |r|`` whose gradient w.r.t. h is the eager one (objective 6)."""
    out = _compiled_vs_eager_adjust({"arch": (8, 4), "alpha": 0.3, "beta": 2.0}, weight, scale)
    (ce, he, ge, se, _), (cc, hc, gc, sc, adj) = out[False], out["aot_eager"]
    assert adj._compiled is not None
    torch.testing.assert_close(cc, ce, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(hc, he, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(torch.stack(list(sc.as_dict().values())),
                               torch.stack(list(se.as_dict().values())), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(hc, se.abs_remainder * weight * (scale or 1.0), rtol=1e-12, atol=0)
    assert len(gc) == len(ge) == 1  # h's flat parameter
    for a, b in zip(gc, ge, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-15)
        assert b.abs().sum() > 0


def test_traced_step_with_inductor_matches_eager_and_compiles_once_per_signature() -> None:
    """compile_step=True: the step is traced and compiled by inductor without TorchDynamo, once
    per input signature (here two batch sizes), and gives the eager step's numbers."""
    se, pe, _ = _train_few(False)
    sc, pc, adj = _train_few(True)
    traced = adj._compiled
    assert traced is not None and traced._dynamo is None and len(traced.entries) == 2
    torch.testing.assert_close(sc, se, rtol=1e-10, atol=1e-14, equal_nan=True)
    torch.testing.assert_close(pc, pe, rtol=1e-10, atol=1e-14)


def _branchy_loss(z: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    loss = F.cross_entropy(z, y, reduction=reduction)
    return loss if bool((loss >= 0).all()) else -loss  # data-dependent Python branch


def test_traced_step_falls_back_to_dynamo_when_tracing_fails() -> None:
    """A loss with a data-dependent Python branch cannot be traced to one graph: the step warns
    once per signature and goes through torch.compile (TorchDynamo), with the eager numbers."""
    se, pe, _ = _train_few(False, _branchy_loss)
    with pytest.warns(UserWarning, match="tracing failed"):
        sc, pc, adj = _train_few("aot_eager", _branchy_loss)
    assert adj._compiled is not None and adj._compiled._dynamo is not None
    torch.testing.assert_close(sc, se, rtol=1e-12, atol=1e-15, equal_nan=True)
    torch.testing.assert_close(pc, pe, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="unknown torch.compile arguments"):
        GradientAdjuster(3, compile_step={"backend": "inductor", "bogus": 1})
    with pytest.raises(ValueError, match="apply to the inductor backend"):
        GradientAdjuster(3, compile_step={"backend": "aot_eager", "options": {"cpp_wrapper": True}})


def test_traced_step_hands_signatures_beyond_the_limit_to_dynamo(monkeypatch) -> None:
    """Shapes that change every step (a detector's targets) stop being traced one by one after
    MAX_SIGNATURES; the rest go through TorchDynamo, with one warning and the eager numbers."""
    import gal.compiled_step as cs

    monkeypatch.setattr(cs, "MAX_SIGNATURES", 2)
    sizes = (6, 5, 4, 3)
    se, pe, _ = _train_few(False, sizes=sizes)
    with pytest.warns(UserWarning, match="2 input signatures traced already"):
        sc, pc, adj = _train_few("aot_eager", sizes=sizes)
    traced = adj._compiled
    assert traced is not None and traced._dynamo is not None and len(traced.entries) == 4
    torch.testing.assert_close(sc, se, rtol=1e-12, atol=1e-15, equal_nan=True)
    torch.testing.assert_close(pc, pe, rtol=1e-12, atol=1e-15)


def test_compiled_step_falls_back_to_eager_without_trainable_h() -> None:
    """Noise adjusters (no parameters) and a frozen h take the eager step under compile_step."""
    noise = _compiled_vs_eager_adjust({"adjuster": "normal", "alpha": 0.3}, 1.0, None)
    torch.testing.assert_close(noise["aot_eager"][0], noise[False][0], rtol=0, atol=0)
    assert noise["aot_eager"][4].__dict__.get(GradientAdjuster._COMPILED_KEY) is None
    h = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    adj = GradientAdjuster(3, h=h, compile_step="aot_eager").double()
    h[0].weight.requires_grad_(False)
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    adj.backward(z, torch.zeros(5, dtype=torch.long), F.cross_entropy, 0.1)
    assert adj.__dict__.get(GradientAdjuster._COMPILED_KEY) is None
    assert h[0].weight.grad is None and h[0].bias.grad is not None
    with pytest.raises(ValueError, match="compile_step"):
        GradientAdjuster(3, compile_step=3)


def test_epoch_averager_stacks_and_matches_per_key_sums() -> None:
    gen = torch.Generator().manual_seed(0)
    steps = [{k: torch.rand((), generator=gen) for k in ("train_loss", *DIAGNOSTICS)}
             for _ in range(7)]
    steps[3] = {"train_loss": torch.tensor(0.5), "cosine": torch.tensor(0.25)}  # other keys
    avg = EpochAverager()
    for s in steps:
        avg.add({**s, "ignored": torch.tensor(1.0)})
    means = avg.means()
    for k in ("train_loss", *DIAGNOSTICS):
        total = torch.zeros((), dtype=torch.float64)
        for s in steps:
            if k in s:
                total = total + s[k].double()
        assert means[k] == pytest.approx(float(total / len(steps)), rel=1e-15, abs=0)
    assert EpochAverager().means() == {}


def test_checkpoint_appends_history_and_resumes(tmp_path: Path) -> None:
    """The partial history.csv grows by appending; a new column rewrites it; a resume restores
    the history (one JSON string in the checkpoint) and the final history.csv is the full pandas
    one."""
    run = tmp_path / "r" / "seed-0"
    w = RunWriter(run, device="cpu")
    w.start({"task": "t"}, profile="cpu", seed=0)
    partial_csv = w.partial_dir / "history.csv"
    w.log({"epoch": 1, "loss": 0.5})
    w.save_checkpoint({"epoch": 1})
    w.log({"epoch": 2, "loss": float("nan")})
    w.save_checkpoint({"epoch": 2})
    assert partial_csv.read_text().splitlines() == ["epoch,loss", "1,0.5", "2,"]
    w.log({"epoch": 3, "loss": 0.25, "extra": 1.0})  # new column: full rewrite
    w.save_checkpoint({"epoch": 3})
    assert partial_csv.read_text().splitlines()[0] == "epoch,loss,extra"
    raw = torch.load(w.checkpoint_path, weights_only=True)
    assert isinstance(raw["__gal_records_history__"], str)
    assert len(json.loads(raw["__gal_records_history__"])) == 3
    w.log({"epoch": 4, "loss": 0.125, "extra": 2.0})  # lost by the "kill"

    w2 = RunWriter(run, device="cpu")
    assert w2.load_checkpoint()["epoch"] == 3
    w2.start({"task": "t"}, profile="cpu", seed=0)
    w2.log({"epoch": 4, "loss": 0.1, "extra": 3.0})
    w2.save_checkpoint({"epoch": 4})
    assert [r.split(",")[0] for r in partial_csv.read_text().splitlines()[1:]] == ["1", "2", "3", "4"]
    assert w2.finish({"m": 1.0}) == "complete"
    hist = load_history(run)
    assert hist["epoch"].tolist() == [1, 2, 3, 4] and hist["loss"].isna().tolist()[1]


def test_benchmark_report_on_a_tiny_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gal_cost.json"
    assert gal_cost.main(["--cases", "boston", "--seconds", "0.2", "--out", str(out),
                          "--note", "test"]) == 0
    rep = json.loads(out.read_text())
    for key in ("hardware", "threads", "torch", "git_commit", "command", "load_average", "cases"):
        assert key in rep
    (case,) = rep["cases"]
    assert case["name"] == "boston" and case["kind"] == "regression"
    assert set(case["step"]["s_per_image"]) == {"baseline", "gal", "gal_no_compare"}
    assert case["step"]["gal"]["ratio"] > 0 and case["extra_work"]["ratio"] > 0
    assert 0 < case["flops"]["bound"] < 1 and case["flops"]["gal"] > case["flops"]["baseline"]
    assert case["ops"]["gal_step"] > case["ops"]["baseline_step"] > 0
    assert case["target"]["met"] == (case["step"]["gal"]["ratio"] <= 1.5)
    printed = capsys.readouterr().out
    assert "[target] boston: GAL step" in printed and ("met" in printed)
    assert rep["complete"] is True


def test_benchmark_report_keeps_finished_cases_when_cut_short(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The report is written after every case (complete: false until the last), so a run cut
    short by a time limit (here: the second case fails to build) keeps what it measured."""
    real = gal_cost.build_case

    def build(name, device, **kw):
        if name == "diabetes":
            raise KeyboardInterrupt  # as a timeout's signal would end it
        return real(name, device, **kw)

    monkeypatch.setattr(gal_cost, "build_case", build)
    out = tmp_path / "gal_cost.json"
    with pytest.raises(KeyboardInterrupt):
        gal_cost.main(["--cases", "boston,diabetes", "--seconds", "0.2", "--out", str(out)])
    rep = json.loads(out.read_text())
    assert rep["complete"] is False and [c["name"] for c in rep["cases"]] == ["boston"]


def test_benchmark_classification_target_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny stand-in for the classification case: the target carries the A/A comparison,
    whether the spread resolves the limit, and GAL's extra work against the same limit."""
    def tiny(device: torch.device) -> gal_cost.Case:
        torch.manual_seed(0)
        return gal_cost.Case(
            name="tiny_cls", kind="classification", description="tiny", paper_setting="CIFAR-10",
            model=torch.nn.Linear(8, 10), x=torch.randn(16, 8), y=torch.randint(0, 10, (16,)),
            loss_fn=F.cross_entropy, dim=10, arch=(16,), alpha=1e-3, beta=1.0, lr=0.1,
            optimizer="sgd", optimizer_kwargs={"momentum": 0.9}, h_optimizer="shared")

    monkeypatch.setattr(gal_cost, "cifar_case", tiny)
    out = tmp_path / "g.json"
    assert gal_cost.main(["--cases", "cifar_cpu_profile", "--seconds", "0.2", "--out", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert set(case["step"]["s_per_image"]) == {"baseline", "gal", "gal_no_compare", "baseline_repeat"}
    t = case["target"]
    assert t["limit_pct"] == pytest.approx(100 * max(0.01, 2 * case["flops"]["bound"]))
    assert t["met"] == (t["value_pct"] <= t["limit_pct"])
    assert t["extra_work_pct"] == pytest.approx(100 * case["extra_work"]["ratio"])
    assert t == gal_cost.classification_target(
        case["step"]["gal"]["paired_ratio"], case["step"]["baseline_repeat"]["paired_ratio"],
        case["flops"]["bound"], case["extra_work"]["ratio"])
    assert "A/A baseline vs itself" in capsys.readouterr().out


def test_classification_target_rule() -> None:
    q = lambda lo, med, hi: {"q25": lo, "median": med, "q75": hi}  # noqa: E731
    t = gal_cost.classification_target(q(1.001, 1.004, 1.006), q(0.998, 1.001, 1.003), 2e-3, 3e-3)
    assert t["limit_pct"] == pytest.approx(1.0) and t["value_pct"] == pytest.approx(0.4)
    assert t["met"] and t["resolved"] and t["extra_work_met"]
    assert t["extra_work_pct"] == pytest.approx(0.3)
    # a 2x FLOP bound above 1% is the limit; a wide A/A spread or a biased A/A: not resolved
    t = gal_cost.classification_target(q(1.01, 1.02, 1.03), q(0.97, 1.0, 1.03), 0.015, 0.05)
    assert t["limit_pct"] == pytest.approx(3.0) and t["met"] and not t["resolved"]
    assert not t["extra_work_met"]
    t = gal_cost.classification_target(q(1.0, 1.001, 1.002), q(0.97, 0.971, 0.972), 0.0, 0.001)
    assert t["met"] and not t["resolved"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("granularity", ["batch", "sample"])
def test_cuda_gal_steps_without_host_sync(granularity: str) -> None:
    """Under torch.cuda.set_sync_debug_mode("error") a few whole GAL training steps (forward,
    GradientAdjuster.backward, per-step logging, optimizer step) run without a host sync."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10)).to(dev)
    adj = GradientAdjuster(10, arch=(100, 32, 16), alpha=1e-2, granularity=granularity).to(dev)
    opt = torch.optim.SGD([*model.parameters(), *adj.parameters()], lr=0.1, momentum=0.9)
    xs = torch.randn(4, 64, 16, device=dev)
    ys = torch.randint(0, 10, (4, 64), device=dev)
    avg = EpochAverager()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in zip(xs, ys, strict=True):
            avg.add_stats(adj.backward(model(x), y, F.cross_entropy, lr=opt.param_groups[0]["lr"]))
            opt.step()
            opt.zero_grad(set_to_none=True)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(v == v for k, v in avg.means().items() if k != "g_beats_grad")
