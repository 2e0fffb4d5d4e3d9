"""GradientAdjuster against an independent NumPy implementation and finite differences.

Covers both granularities, all four policies, the three first-order conventions of Eq. 7 and
both activation choices of h (Alg. 1, Eqs. 3-7).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference_gal import mlp_forward, reference_step
from torch.overrides import TorchFunctionMode

from gal import GradientAdjuster

N, D = 6, 3
ARCH = (5, 4)
# eta~ = beta*lr = 18 puts the plain tentative MSE step right at overshoot (2*eta/(N*D) = 2), so the
# adjusted step is accepted on some rows and rejected on others.
ALPHA, BETA, LR = 0.7, 20.0, 0.9


def mse_loss(z, y, reduction="mean"):
    return F.mse_loss(z, y, reduction=reduction)


def _problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(N, D, generator=gen, dtype=torch.float64)
    y = torch.randn(N, D, generator=gen, dtype=torch.float64)
    return z, y


def _np_weights(adj: GradientAdjuster) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(w.detach().numpy().copy(), b.detach().numpy().copy()) for w, b in adj.h.layers()]


CASES = list(itertools.product(
    ["batch", "sample"], ["leq", "lt", "always", "never"], ["sum", "sample_mean", "element_mean"],
    ["relu", None],
))


@pytest.mark.parametrize("granularity,policy,first_order,activation", CASES)
def test_step_matches_reference_and_finite_differences(granularity, policy, first_order, activation):
    alpha, beta, lr = ALPHA, BETA, LR
    adj = GradientAdjuster(D, arch=ARCH, alpha=alpha, beta=beta, policy=policy,
                           granularity=granularity, first_order=first_order,
                           activation=activation, seed=3).double()
    z0, y = _problem()
    z = z0.clone().requires_grad_(True)
    stats = adj.backward(z, y, mse_loss, lr=lr)

    weights = _np_weights(adj)
    relu = activation == "relu"
    zn, yn = z0.numpy(), y.numpy()

    def ref(ws):
        return reference_step(zn, yn, lambda q: mlp_forward(q, ws, relu), alpha=alpha, beta=beta,
                              lr=lr, policy=policy, granularity=granularity,
                              first_order=first_order)

    expected = ref(weights)
    # gradient sent into the model through z (Alg. 1 lines 7-10)
    np.testing.assert_allclose(z.grad.numpy(), expected["chosen"], rtol=1e-12, atol=1e-15)
    for key in ("loss", "tentative_loss", "remainder", "accept_rate", "cosine", "g_beats_grad"):
        np.testing.assert_allclose(float(getattr(stats, key)), expected[key], rtol=1e-9, atol=1e-14,
                                   err_msg=key)
    assert float(stats.abs_remainder) == pytest.approx(expected["objective"], rel=1e-9, abs=1e-14)

    # d|r|/dtheta by central finite differences of the NumPy objective
    grads = adj.h.flat.grad.split(adj.h.sizes)  # per-layer views of h's flat gradient
    step = 1e-6
    for li, shape in enumerate(adj.h.shapes):
        for pi, (grad, arr_index) in enumerate(((grads[2 * li].view(shape), 0), (grads[2 * li + 1], 1))):
            fd = np.zeros(grad.shape)
            for idx in np.ndindex(*grad.shape):
                plus = [(w.copy(), b.copy()) for w, b in weights]
                minus = [(w.copy(), b.copy()) for w, b in weights]
                plus[li][arr_index][idx] += step
                minus[li][arr_index][idx] -= step
                fd[idx] = (ref(plus)["objective"] - ref(minus)["objective"]) / (2 * step)
            np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-5, atol=1e-9,
                                       err_msg=f"layer {li} param {pi}")


def test_cases_exercise_both_decisions():
    """The reference problem is not trivial: acceptance differs across rows in sample mode."""
    z0, y = _problem()
    adj = GradientAdjuster(D, arch=ARCH, alpha=ALPHA, beta=BETA, granularity="sample", seed=3).double()
    stats = adj.backward(z0.clone().requires_grad_(True), y, mse_loss, lr=LR)
    assert 0.0 < float(stats.accept_rate) < 1.0


def test_leq_and_lt_differ_on_a_tie():
    """beta=0 makes the tentative loss equal the loss: line 7 (<=) accepts g, line 7 (<) does not."""
    z0, y = _problem()
    grads = {}
    for policy in ("leq", "lt"):
        adj = GradientAdjuster(D, arch=ARCH, alpha=0.5, beta=0.0, policy=policy, seed=1).double()
        z = z0.clone().requires_grad_(True)
        stats = adj.backward(z, y, mse_loss, lr=0.1)
        grads[policy] = z.grad.clone()
        assert float(stats.accept_rate) == (1.0 if policy == "leq" else 0.0)
    vanilla = 2 * (z0 - y) / (N * D)
    torch.testing.assert_close(grads["lt"], vanilla, rtol=0, atol=1e-15)
    assert not torch.allclose(grads["leq"], vanilla)


def test_sample_remainders_average_to_batch_remainder():
    """For a separable loss, mean_i r_i (sample granularity) equals r (batch granularity)."""
    z0, y = _problem(5)
    out = {}
    for gran in ("batch", "sample"):
        adj = GradientAdjuster(D, arch=ARCH, alpha=0.3, beta=1.0, granularity=gran, seed=2).double()
        out[gran] = adj.backward(z0.clone().requires_grad_(True), y, mse_loss, lr=0.5)
    assert float(out["sample"].remainder) == pytest.approx(float(out["batch"].remainder), rel=1e-10)
    assert float(out["sample"].loss) == pytest.approx(float(out["batch"].loss), rel=1e-12)


def test_eq4_scaling_norm_and_cross_entropy_leading_dims():
    """Eq. 4: ||g_i - grad_i|| = alpha * ||grad_i|| per row, for z of shape [B, Q, d]."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (2, 4), generator=gen)

    def ce(zz, yy, reduction="mean"):
        return F.cross_entropy(zz.reshape(-1, 5), yy.reshape(-1), reduction=reduction)

    adj = GradientAdjuster(5, arch=(8,), alpha=0.25, policy="always", seed=0).double()
    adj.backward(z, y, ce, lr=0.1)
    zs = z.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ce(zs, y), zs)
    diff = (z.grad - grad).norm(dim=-1)
    torch.testing.assert_close(diff, 0.25 * grad.norm(dim=-1), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("dist,scaling", list(itertools.product(["uniform", "normal"], ["eq4", "unit"])))
def test_noise_adjusters(dist, scaling):
    """Table VI: v ~ U(-1,1) or N(0,1), scaled by Eq. 4 or by alpha*v/||v|| only."""
    z0, y = _problem()
    adj = GradientAdjuster(D, adjuster=dist, noise_scaling=scaling, alpha=0.1, policy="always",
                           seed=4).double()
    assert len(list(adj.parameters())) == 0
    z = z0.clone().requires_grad_(True)
    before = torch.random.get_rng_state()
    adj.backward(z, y, mse_loss, lr=0.1)
    assert torch.equal(before, torch.random.get_rng_state()), "noise must not use the global RNG"
    grad = 2 * (z0 - y) / (N * D)
    norms = (z.grad - grad).norm(dim=-1)
    expected = 0.1 * grad.norm(dim=-1) if scaling == "eq4" else torch.full((N,), 0.1, dtype=torch.float64)
    torch.testing.assert_close(norms, expected, rtol=1e-10, atol=1e-15)
    # the noise itself follows the private generator: reproducible from the seed
    gen = torch.Generator().manual_seed(4)
    v = torch.randn(N, D, generator=gen, dtype=torch.float64) if dist == "normal" else \
        torch.rand(N, D, generator=gen, dtype=torch.float64) * 2 - 1
    direction = (z.grad - grad) / norms[:, None]
    torch.testing.assert_close(direction, v / v.norm(dim=-1, keepdim=True), rtol=1e-8, atol=1e-12)


def test_parameter_as_feature_3d_example():
    """Fig. 4: z is the parameter (x, y) itself; the chosen gradient lands in p.grad."""
    def f(p, _=None):
        x, yy = p[0], p[1]
        return -torch.sin(x**2) * torch.cos(3 * yy**2) * torch.exp(-(x * yy) ** 2) - torch.exp(-(x + yy) ** 2)

    p = torch.tensor([0.75, 1.0], dtype=torch.float64, requires_grad=True)
    adj = GradientAdjuster(2, arch=(64, 24), alpha=0.0, beta=1.0).double()
    stats = adj.backward(p, None, f, lr=0.1)
    (expected,) = torch.autograd.grad(f(p), p)
    assert torch.equal(p.grad, expected)
    assert float(stats.loss) == pytest.approx(float(f(p).detach()))


class _NoHostSync(TorchFunctionMode):
    """Fails on any tensor-to-host conversion."""

    FORBIDDEN = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "cpu", "numpy"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.FORBIDDEN:
            self.calls.append(name)
            raise AssertionError(f"host synchronisation inside the GAL step: Tensor.{name}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("granularity", ["batch", "sample"])
@pytest.mark.parametrize("policy", ["leq", "lt", "always", "never"])
def test_no_host_sync_inside_step(granularity, policy):
    model = torch.nn.Linear(4, 3)
    adj = GradientAdjuster(3, arch=(8, 4), alpha=0.1, granularity=granularity, policy=policy)
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    mode = _NoHostSync()
    with mode:
        z = model(x)
        adj.backward(z, y, F.cross_entropy, lr=0.1)
    assert mode.calls == []
    # the detector itself works
    with pytest.raises(AssertionError), _NoHostSync():
        torch.ones(()).item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_cuda_debug_mode():
    model = torch.nn.Linear(4, 3).cuda()
    adj = GradientAdjuster(3, arch=(8, 4), alpha=0.1).cuda()
    x, y = torch.randn(5, 4, device="cuda"), torch.randint(0, 3, (5,), device="cuda")
    z = model(x)
    torch.cuda.set_sync_debug_mode("error")
    try:
        adj.backward(z, y, F.cross_entropy, lr=0.1)
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_weight_and_grad_scaler_scale_both_gradients():
    """Gradient accumulation weight and AMP GradScaler multiply model and h gradients alike."""
    z0, y = _problem()
    grads = {}
    for name, kwargs in (("plain", {}), ("weight", {"weight": 0.25}),
                         ("scaler", {"scaler": torch.amp.GradScaler("cpu", init_scale=8.0)})):
        adj = GradientAdjuster(D, arch=ARCH, alpha=0.5, seed=0).double()
        z = z0.clone().requires_grad_(True)
        adj.backward(z, y, mse_loss, lr=0.5, **kwargs)
        grads[name] = [z.grad] + [p.grad for p in adj.parameters()]
    for a, b in zip(grads["plain"], grads["weight"], strict=True):
        torch.testing.assert_close(b, 0.25 * a, rtol=1e-12, atol=0)
    for a, b in zip(grads["plain"], grads["scaler"], strict=True):
        torch.testing.assert_close(b, 8.0 * a, rtol=1e-12, atol=0)


def test_extra_loss_backpropagates_with_its_plain_gradient():
    """``extra`` (an unadjusted term of the same model, as DETR's class loss beside its box
    term) adds exactly its own gradient, times ``weight``, in the same pass; h is unaffected."""
    z0, y = _problem()
    w0 = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grads = {}
    for name in ("without", "with"):
        adj = GradientAdjuster(D, arch=ARCH, alpha=0.5, seed=0).double()
        w = w0.clone().requires_grad_(True)
        z = z0 * w  # the model: z depends on w, and so does the extra term
        extra = (w ** 3).sum() if name == "with" else None
        adj.backward(z, y, mse_loss, lr=0.5, weight=0.5, extra=extra)
        grads[name] = (w.grad, [p.grad for p in adj.parameters()])
    # by hand: d/dw of 0.5 * sum(w^3) is 1.5 w^2
    torch.testing.assert_close(grads["with"][0], grads["without"][0] + 1.5 * w0 ** 2, rtol=1e-12, atol=0)
    for a, b in zip(grads["with"][1], grads["without"][1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_autocast_bf16_runs_in_fp32_and_returns_model_dtype():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4)
    adj = GradientAdjuster(4, arch=(8,), alpha=0.1, seed=0)
    x, y = torch.randn(16, 6), torch.randint(0, 4, (16,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model(x)
        assert z.dtype == torch.bfloat16
        stats = adj.backward(z, y, F.cross_entropy, lr=0.1)
    assert stats.loss.dtype == torch.float32
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()
    assert all(p.grad is not None for p in adj.parameters())


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="policy"):
        GradientAdjuster(3, policy="sometimes")
    with pytest.raises(ValueError, match="granularity"):
        GradientAdjuster(3, granularity="token")
    with pytest.raises(ValueError, match="first_order"):
        GradientAdjuster(3, first_order="mean")
    adj = GradientAdjuster(3, arch=(4,))
    with pytest.raises(ValueError, match="dim=3"):
        adj.backward(torch.randn(2, 5, requires_grad=True), None, lambda z, y: z.sum(), lr=0.1)
    with pytest.raises(ValueError, match="mean-reduced"):
        adj.backward(torch.randn(2, 3, requires_grad=True), None, lambda z, y: z, lr=0.1)
    adj_s = GradientAdjuster(3, arch=(4,), granularity="sample")
    with pytest.raises(ValueError, match="one loss per row"):
        adj_s.backward(torch.randn(2, 3, requires_grad=True), None,
                       lambda z, y, reduction="mean": z.sum() if reduction == "mean" else z.sum(0),
                       lr=0.1)


def test_fp16_grad_scaler_scales_before_the_cast():
    """fp16 features: the scaled gradient must equal plain AMP's fp16(scale * dl/dz) exactly,
    even where the unscaled gradient would underflow in fp16."""
    gen = torch.Generator().manual_seed(0)
    z16 = (torch.randn(4096, 16, generator=gen) * 1e-2).half()
    y = torch.zeros(4096, 16)

    def loss_fn(z, yy, reduction="mean"):
        return F.mse_loss(z.float(), yy, reduction=reduction)

    plain = z16.clone().requires_grad_(True)
    scaler = torch.amp.GradScaler("cpu", init_scale=65536.0)
    scaler.scale(loss_fn(plain, y)).backward()
    assert (plain.grad == 0).float().mean() < 0.01  # scaled: representable
    unscaled = (2 * z16.float() / z16.numel()).half()
    assert (unscaled == 0).float().mean() > 0.05  # unscaled fp16 would underflow

    gal = z16.clone().requires_grad_(True)
    adj = GradientAdjuster(16, arch=(8,), alpha=0.0)
    adj.backward(gal, y, loss_fn, lr=0.1, scaler=torch.amp.GradScaler("cpu", init_scale=65536.0))
    assert torch.equal(gal.grad, plain.grad)


def test_building_h_leaves_cuda_rng_alone(monkeypatch):
    """h's private init must not reseed the CUDA generators (GPU bit-identity at alpha=0)."""
    def forbidden(*a, **k):
        raise AssertionError("building h reseeded a CUDA generator")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", forbidden)
    monkeypatch.setattr(torch.cuda, "manual_seed", forbidden)
    GradientAdjuster(10, arch=(100, 32, 16), seed=3)
    GradientAdjuster(100, adjuster="cnn", arch=(8,), seed=3)


def test_sample_granularity_keeps_weighted_loss_gradient():
    """With a class-weighted CE, sample granularity at alpha=0 trains on the weighted mean loss."""
    gen = torch.Generator().manual_seed(2)
    z0 = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (12,), generator=gen)
    w = torch.tensor([1.0, 5.0, 0.2, 2.0, 1.0], dtype=torch.float64)

    def wce(z, yy, reduction="mean"):
        return F.cross_entropy(z, yy, weight=w, reduction=reduction)

    plain = z0.clone().requires_grad_(True)
    wce(plain, y).backward()
    z = z0.clone().requires_grad_(True)
    adj = GradientAdjuster(5, arch=(4,), alpha=0.0, granularity="sample", seed=0).double()
    stats = adj.backward(z, y, wce, lr=0.1)
    torch.testing.assert_close(z.grad, plain.grad, rtol=0, atol=0)
    assert float(stats.loss) == pytest.approx(float(wce(z0, y)))


def test_float64_features_with_float32_h():
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    adj = GradientAdjuster(3, arch=(4,), alpha=0.5, policy="always")
    adj.backward(z, torch.zeros(4, 3, dtype=torch.float64), mse_loss, lr=0.1)
    assert z.grad.dtype == torch.float64
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in adj.parameters())


def test_precision_float64_resolves_the_remainder_of_float32_features():
    """At a small eta~ the remainder (Eq. 7) is below float32's resolution of the loss: with
    precision=float64 the step equals the float64 step on the same (float32) features."""
    torch.manual_seed(0)
    z32 = (torch.randn(64, 4) * 3).requires_grad_(True)
    y = torch.randn(64, 4)
    a64 = GradientAdjuster(4, arch=(8,), alpha=0.1, beta=1.0, precision=torch.float64, seed=3)
    ref = GradientAdjuster(4, arch=(8,), alpha=0.1, beta=1.0, seed=3)
    chosen, _, stats = a64.adjust(z32, y, mse_loss, lr=1e-5)
    c_ref, _, s_ref = ref.adjust(z32.double(), y.double(), mse_loss, lr=1e-5)
    assert chosen.dtype == torch.float32
    torch.testing.assert_close(chosen, c_ref.float())
    assert float(stats.remainder) == pytest.approx(float(s_ref.remainder), rel=1e-9)
    _, _, s32 = ref.adjust(z32, y, mse_loss, lr=1e-5)
    exact = float(s_ref.remainder)  # about 1e-10 here; float32 cannot resolve it
    assert abs(float(s32.remainder) - exact) > 10 * abs(exact)
    with pytest.raises(ValueError, match="precision"):
        GradientAdjuster(4, precision="float64")


def _train_line10(precision: torch.dtype | None, plain: bool = False) -> torch.Tensor:
    """200 SGD steps of a small MLP, fed by Algorithm 1 line 10 (policy ``never``) or, with
    ``plain``, by ``loss.backward()``; the model's parameters at the end."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    adj = GradientAdjuster(10, arch=(32,), alpha=1e-2, policy="never", precision=precision)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        x, y = torch.randn(256, 20, generator=gen), torch.randint(0, 10, (256,), generator=gen)
        z = model(x)
        if plain:
            F.cross_entropy(z, y).backward()
        else:
            adj.backward(z, y, F.cross_entropy, lr=0.05)
        opt.step()
        opt.zero_grad()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_line10_is_the_plain_gradient_exactly_in_z_dtype_and_to_rounding_in_float64():
    """Algorithm 1 line 10 feeds dl/dz to the model: in z's own dtype the model's trajectory is
    the plain one bit for bit; with the step in float64, dl/dz is rounded once more on its way
    back to float32, so the trajectories differ at the rounding level only (why Fig. 8(a)'s
    line 10 of the float64 analyses profiles is compared with the baseline as a noise floor)."""
    plain = _train_line10(None, plain=True)
    assert torch.equal(_train_line10(None), plain)
    diff = (_train_line10(torch.float64) - plain).abs().max().item()
    assert 0.0 < diff < 1e-5
