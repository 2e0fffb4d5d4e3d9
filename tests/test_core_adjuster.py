"""h(z; theta) modules (Eq. 3, Sec. V-B, Tables VI and VIII) and the optimizer factory."""

from __future__ import annotations

import pytest
import torch
from reference_h import linear_stack

from gal import CNNAdjuster, MLPAdjuster, build_optimizer, count_parameters, param_groups
from gal.optim import OPTIMIZERS


@pytest.mark.parametrize("dim,arch,expected", [
    (10, (100, 32, 16), 5030),      # Table I: "5K"
    (100, (256, 64, 32), 47684),    # Table II: "47K"
])
def test_mlp_parameter_counts_match_paper(dim, arch, expected):
    # (d*a1 + a1) + (a1*a2 + a2) + ... + (ak*d + d), written out independently
    widths = [dim, *arch, dim]
    by_hand = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert by_hand == expected
    assert count_parameters(MLPAdjuster(dim, arch)) == expected
    assert count_parameters(MLPAdjuster(dim, arch, activation=None)) == expected


def test_mlp_structure_relu_between_layers_none_after_last():
    h = MLPAdjuster(4, (6, 5), activation="relu", seed=0)
    assert h.shapes == ((6, 4), (5, 6), (4, 5)) and isinstance(h.act, torch.nn.ReLU)
    z = torch.randn(3, 7, 4)
    manual = z
    for k, (w, b) in enumerate(h.layers()):
        manual = manual @ w.T + b
        if k < 2:
            manual = manual.clamp_min(0)
    torch.testing.assert_close(h(z), manual)


def test_mlp_flat_parameter_is_the_nn_linear_initialisation():
    """One flat parameter holding, layer by layer, what ``nn.Linear`` draws from h's seed."""
    h = MLPAdjuster(4, (6, 5), seed=3)
    assert [n for n, _ in h.named_parameters()] == ["flat"]
    state = torch.get_rng_state()
    torch.manual_seed(3)
    ref = [torch.nn.Linear(a, b) for a, b in ((4, 6), (6, 5), (5, 4))]
    torch.set_rng_state(state)
    for (w, b), lin in zip(h.layers(), ref, strict=True):
        assert torch.equal(w, lin.weight) and torch.equal(b, lin.bias)
        assert w.data_ptr() >= h.flat.data_ptr()  # views of the flat parameter, not copies


@pytest.mark.parametrize("opt_name,kw", [("adam", {"weight_decay": 1e-2}), ("sgd", {"momentum": 0.9}),
                                         ("rmsproptf", {"alpha": 0.9, "eps": 1e-3})])
def test_mlp_flat_parameter_trains_as_separate_layers_bit_for_bit(opt_name, kw):
    """Every optimizer here updates element by element, so one flat parameter trains exactly as
    the separate ``nn.Linear`` parameters would (checked against a second implementation)."""
    h = MLPAdjuster(3, (8, 4), seed=1)
    ref = linear_stack(h)
    opt_h = build_optimizer(opt_name, h.parameters(), 1e-2, **kw)
    opt_r = build_optimizer(opt_name, ref.parameters(), 1e-2, **kw)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        z = torch.randn(16, 3, generator=gen)
        for m, o in ((h, opt_h), (ref, opt_r)):
            (m(z) ** 2).sum().backward()
            o.step()
            o.zero_grad()
    flat_ref = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])
    assert torch.equal(h.flat.detach(), flat_ref)


def test_mlp_loads_a_state_dict_of_separate_layers():
    """Checkpoints written when h had one ``nn.Linear`` per layer (``net.<i>.weight``) load."""
    h = MLPAdjuster(3, (5,), seed=2)
    old = {f"net.{i}.{t}": v for i, lin in ((0, 0), (2, 1))
           for t, v in zip(("weight", "bias"), h.layers()[lin], strict=True)}
    fresh = MLPAdjuster(3, (5,), seed=9)
    fresh.load_state_dict({k: v.clone() for k, v in old.items()})
    assert torch.equal(fresh.flat, h.flat)


def test_mlp_without_activation_is_one_affine_map():
    """Authors' code: no activation, so h(z) = z A^T + c for a single matrix A."""
    h = MLPAdjuster(4, (6, 5), activation=None, seed=0)
    assert h.act is None
    eye = torch.eye(4)
    c = h(torch.zeros(1, 4))
    A = (h(eye) - c).T
    z = torch.randn(10, 4)
    torch.testing.assert_close(h(z), z @ A.T + c, rtol=1e-5, atol=1e-6)


def test_private_init_rng():
    state = torch.random.get_rng_state()
    a = MLPAdjuster(10, (100, 32, 16), seed=7)
    assert torch.equal(state, torch.random.get_rng_state())
    b = MLPAdjuster(10, (100, 32, 16), seed=7)
    c = MLPAdjuster(10, (100, 32, 16), seed=8)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


@pytest.mark.parametrize("dim,side", [(100, 10), (10, 4), (2, 2), (16, 4)])
def test_cnn_adjuster_square_layout_and_padding(dim, side):
    h = CNNAdjuster(dim, (8, 4), seed=0)
    assert h.side == side
    z = torch.randn(3, 5, dim)
    assert h(z).shape == (3, 5, dim)
    # zero padding: the map fed to the convs is the feature, row-major, then zeros
    seen = {}
    h.features[0].register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    h(z[0, :1])
    x = seen["x"].reshape(-1)
    torch.testing.assert_close(x[:dim], z[0, 0])
    assert torch.count_nonzero(x[dim:]) == 0


def test_cnn_parameter_count_by_hand():
    """Table VIII's CNN (256-64) on d=100: conv 1->256, conv 256->64 (3x3, bias), linear 64->100."""
    by_hand = (1 * 256 * 9 + 256) + (256 * 64 * 9 + 64) + (64 * 100 + 100)
    assert count_parameters(CNNAdjuster(100, (256, 64))) == by_hand


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_factory_builds_and_steps(name):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = build_optimizer(name, [p], lr=0.01)
    (p**2).sum().backward()
    opt.step()
    assert not torch.equal(p.detach(), torch.tensor([1.0, -2.0]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_optimizer_classes_come_from_libraries():
    import pytorch_optimizer
    import timm.optim

    p = [torch.nn.Parameter(torch.zeros(1))]
    assert isinstance(build_optimizer("lookahead_sgd", p, lr=0.1, k=5, la_alpha=0.8),
                      pytorch_optimizer.Lookahead)
    assert isinstance(build_optimizer("adabound", p, lr=0.1), pytorch_optimizer.AdaBound)
    assert isinstance(build_optimizer("rmsproptf", p, lr=0.1), timm.optim.RMSpropTF)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer("adagrad2", p, lr=0.1)


def test_sgd_step_closed_form():
    """One SGD step with momentum 0: p <- p - lr * grad (used by the Fig. 4 baseline)."""
    p = torch.nn.Parameter(torch.tensor([3.0]))
    opt = build_optimizer("sgd", [p], lr=0.1)
    (p**2).sum().backward()
    opt.step()
    assert p.item() == pytest.approx(3.0 - 0.1 * 6.0)


def test_param_groups_layouts():
    model = torch.nn.Linear(3, 2)
    h = MLPAdjuster(2, (4,))
    shared = param_groups(model, h)
    assert len(shared) == 1 and len(shared[0]["params"]) == 2 + 1  # h: one flat parameter
    own = param_groups(model, h, h_lr=0.016, h_weight_decay=1e-5)
    assert len(own) == 2 and own[1]["lr"] == 0.016 and own[1]["weight_decay"] == 1e-5
    opt = build_optimizer("rmsproptf", own, lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.016
