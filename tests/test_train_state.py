"""experiments.common.TrainState: a run's resumable state by name (run_epochs' checkpoint)."""

from __future__ import annotations

import torch

from experiments.common import TrainState


def _parts(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()  # momentum buffers exist
    gen = torch.Generator().manual_seed(seed)
    return model, opt, gen


def test_state_round_trip_by_name_skips_absent_parts():
    model, opt, gen = _parts(0)
    torch.randn(5, generator=gen)  # the data order has moved on
    saved = TrainState({"model": model, "opt": opt, "adjuster": None}, {"data": gen},
                       {"train_seconds": 12.5})
    st = saved.get()
    assert sorted(st) == ["data", "model", "opt", "train_seconds"]  # no key for an absent part
    m2, o2, g2 = _parts(1)
    restored = TrainState({"model": m2, "opt": o2, "adjuster": None}, {"data": g2}, {"train_seconds": 0.0})
    restored.set(st)
    for a, b in zip(model.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    buf = opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(o2.state_dict()["state"][0]["momentum_buffer"], buf)
    assert torch.equal(torch.randn(3, generator=g2), torch.randn(3, generator=gen))  # same data order
    assert restored.counters == {"train_seconds": 12.5}
