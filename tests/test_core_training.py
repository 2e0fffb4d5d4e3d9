"""Training-loop properties of the GAL core: alpha=0 bit-identity and DDP equivalence."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from gal import GradientAdjuster, build_optimizer


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32, 10),
    )


def _train(optimizer: str, use_gal: bool, steps: int = 6) -> list[torch.Tensor]:
    torch.manual_seed(123)
    model = small_cnn()
    params = list(model.parameters())
    adj = None
    if use_gal:
        adj = GradientAdjuster(10, arch=(100, 32, 16), alpha=0.0, beta=1.0, seed=99)
        params += list(adj.parameters())
    kwargs = {"momentum": 0.9, "weight_decay": 5e-4} if optimizer == "sgd" else {}
    opt = build_optimizer(optimizer, params, lr=0.05 if optimizer == "sgd" else 1e-3, **kwargs)
    for _ in range(steps):
        x = torch.randn(8, 3, 12, 12)
        y = torch.randint(0, 10, (8,))
        z = model(x)
        if adj is None:
            F.cross_entropy(z, y).backward()
        else:
            adj.backward(z, y, F.cross_entropy, lr=opt.param_groups[0]["lr"])
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_alpha_zero_is_bit_identical_to_plain_training(optimizer):
    plain = _train(optimizer, use_gal=False)
    gal = _train(optimizer, use_gal=True)
    for a, b in zip(plain, gal, strict=True):
        assert torch.equal(a, b)


def test_alpha_positive_changes_training():
    """Guard against a vacuous identity: with alpha > 0 the trajectories differ."""
    torch.manual_seed(0)
    model = small_cnn()
    adj = GradientAdjuster(10, alpha=0.5, policy="always", seed=0)
    x, y = torch.randn(8, 3, 12, 12), torch.randint(0, 10, (8,))
    z = model(x)
    adj.backward(z, y, F.cross_entropy, lr=0.1)
    with_gal = model[-1].weight.grad.clone()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert not torch.allclose(with_gal, model[-1].weight.grad)


# --- DDP: 2 CPU ranks (gloo) == 1 process with the same global batch ----------------------------

GLOBAL_BATCH, STEPS, WORLD = 8, 4, 2


def _data():
    gen = torch.Generator().manual_seed(5)
    return [(torch.randn(GLOBAL_BATCH, 6, generator=gen), torch.randn(GLOBAL_BATCH, 4, generator=gen))
            for _ in range(STEPS)]


def _setup(granularity: str):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))
    # eta~ = beta * lr = 24 makes the global tentative MSE step 2*eta~/(N*d) = 1.5 (a descent step)
    # but a single rank's step, with twice the gradient, 3.0 (an overshoot): a rank deciding
    # alone would reject g where the global batch accepts it.
    adj = GradientAdjuster(4, arch=(8, 6), alpha=0.5, beta=48.0, granularity=granularity, seed=1)
    return model, adj


def _mse(z, y, reduction="mean"):
    return F.mse_loss(z, y, reduction=reduction)


def _run(model, adj, batches, lr=0.5, local_accepts=None):
    opt = build_optimizer("sgd", list(model.parameters()) + list(adj.parameters()), lr=lr, momentum=0.9)
    accepts = []
    for x, y in batches:
        z = model(x)
        if local_accepts is not None:  # what this rank alone would decide (no global reduction)
            alone = copy.deepcopy(adj)
            alone.distributed = False
            local_accepts.append(float(alone.adjust(z.detach(), y, _mse, lr)[2].accept_rate))
        stats = adj.backward(z, y, _mse, lr=lr)
        accepts.append(float(stats.accept_rate))
        opt.step()
        opt.zero_grad()
    return accepts


def _ddp_worker(rank: int, store: str, granularity: str, out_path: str) -> None:
    torch.set_num_threads(1)
    # a file store: no port picked, closed and re-bound (another process may take it meanwhile)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        model, adj = _setup(granularity)
        ddp = nn.parallel.DistributedDataParallel(model)
        shard = GLOBAL_BATCH // WORLD
        batches = [(x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard]) for x, y in _data()]
        local: list[float] = []
        accepts = _run(ddp, adj, batches, local_accepts=local)
        gathered = [None] * WORLD
        dist.all_gather_object(gathered, local)
        if rank == 0:
            torch.save({"model": model.state_dict(), "h": adj.state_dict(), "accepts": accepts,
                        "local": gathered}, out_path)
    finally:
        dist.destroy_process_group()
    # the rank's work is done and saved; leave without the interpreter's teardown, where gloo's
    # threads have aborted a rank now and then ("terminate called without an active exception")
    os._exit(0)


@pytest.mark.parametrize("granularity", ["batch", "sample"])
def test_ddp_two_ranks_equal_one_process(granularity, tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(_ddp_worker, args=(str(tmp_path / "store"), granularity, str(out)), nprocs=WORLD, join=True)
    ddp = torch.load(out)

    model, adj = _setup(granularity)
    accepts = _run(model, adj, _data())
    assert ddp["accepts"] == pytest.approx(accepts, abs=1e-6)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    for k, v in adj.state_dict().items():
        torch.testing.assert_close(ddp["h"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    # the test is not vacuous: some rank alone would have decided differently from the global
    # batch at some step, and h moved away from its initialisation
    assert any(loc != glob for rank_local in ddp["local"] for loc, glob in zip(rank_local, accepts, strict=True))
    fresh = _setup(granularity)[1].state_dict()
    assert any(not torch.allclose(fresh[k], v) for k, v in adj.state_dict().items())


@pytest.mark.parametrize("optimizer", ["sgd", "lookahead_sgd", "adabound", "rmsprop", "rmsproptf", "adam", "adamw"])
def test_gal_trains_with_every_factory_optimizer(optimizer):
    """GAL is optimizer-agnostic: each factory optimizer (torch, timm, pytorch-optimizer) lowers the loss."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 4))
    adj = GradientAdjuster(4, arch=(16,), alpha=0.01, beta=1.0, seed=0)
    lr = 0.2 if optimizer in ("sgd", "lookahead_sgd") else 1e-2
    opt = build_optimizer(optimizer, list(model.parameters()) + list(adj.parameters()), lr=lr)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=gen)
    y = (x @ torch.randn(6, 4, generator=gen)).argmax(dim=1)  # a learnable labelling
    first = None
    for _ in range(60):
        stats = adj.backward(model(x), y, F.cross_entropy, lr=opt.param_groups[0]["lr"])
        first = float(stats.loss) if first is None else first
        opt.step()
        opt.zero_grad()
    assert float(stats.loss) < 0.8 * first



@pytest.mark.parametrize("name,dtype", [("adam", torch.float32), ("adamw", torch.float64)])
def test_factory_adam_is_foreach_with_the_per_tensor_numbers(name, dtype):
    """build_optimizer's Adam/AdamW use the multi-tensor update; two param groups of one
    optimizer give the same bits as two optimizers (h's "separate" optimizer) with the loop."""
    def train(make):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1)).to(dtype)
        h = nn.Sequential(nn.Linear(1, 8), nn.Linear(8, 1)).to(dtype)
        opts = make(list(m.parameters()), list(h.parameters()))
        g = torch.Generator().manual_seed(1)
        for _ in range(50):
            x, y = torch.randn(8, 6, generator=g, dtype=dtype), torch.randn(8, 1, generator=g, dtype=dtype)
            z = m(x)
            (F.mse_loss(z, y) + h(z.detach()).pow(2).mean()).backward()
            for o in opts:
                o.step()
                o.zero_grad(set_to_none=True)
        return [p.detach() for p in [*m.parameters(), *h.parameters()]]

    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    loop = train(lambda mp_, hp: [cls(mp_, lr=1e-2, weight_decay=1e-3, foreach=False),
                                  cls(hp, lr=1e-2, weight_decay=1e-3, foreach=False)])
    factory = train(lambda mp_, hp: [build_optimizer(name, [{"params": mp_}, {"params": hp}], 1e-2,
                                                     weight_decay=1e-3)])
    opt = build_optimizer(name, [torch.zeros(1, requires_grad=True)], 1e-2)
    assert opt.defaults["foreach"] is True
    assert all(torch.equal(a, b) for a, b in zip(loop, factory, strict=True))
