"""What ``benchmarks/gal_cost.py`` measures (Table VII): the cases (a task's model, loss, batch,
GAL settings and optimizer, on random data of the real shapes) and the arms built from a case
(baseline, GAL, GAL without the Fig. 8b comparison, compiled GAL), each with its own training
step."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from experiments.common import DIAGNOSTICS, EpochAverager
from experiments.engine import optimizer_step
from gal import GradientAdjuster
from gal.optim import build_optimizer
from gal_suite.config import load_config

REGRESSION_CASES = ("boston", "diabetes", "california")
#: Table III (Sec. V-B): GAL arch per ImageNet model; alpha = beta = 0.001
IMAGENET_ARCH = {"resnet50": (512, 128), "efficientnet_b2": (512, 256)}

LossFn = Callable[..., torch.Tensor]


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One benchmark case: a model, its loss, batch, GAL settings and optimizer factory."""

    name: str
    kind: str  # "regression" | "classification"
    description: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss_fn: LossFn
    dim: int
    arch: tuple[int, ...]
    alpha: float
    beta: float
    lr: float
    optimizer: str
    optimizer_kwargs: dict[str, Any]
    h_optimizer: str  # "shared" (h in the model's optimizer) | "separate" (its own, Alg. 1 l. 14)
    paper_setting: str  # which Table VII row it stands for ("ImageNet", "CIFAR-10", "-")
    amp: bool = False
    index_batches: bool = False  # regression: index the batch out of the training tensor
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        """Images (rows) per step: the batch size, also when batches are indexed out of x."""
        return int(self.extra.get("batch_size", self.y.shape[0]))


def regression_case(name: str, device: torch.device) -> Case:
    from experiments.regression import CONFIG_PATH, build_regressor, mse_loss

    cfg = load_config(CONFIG_PATH, "cpu")
    ds = cfg["datasets"][name]
    in_dim = {"boston": 13, "diabetes": 10, "california": 8}[name]
    bs = int(ds["batch_size"])
    g = torch.Generator().manual_seed(0)
    n_train = 4 * bs
    X = torch.randn(n_train, in_dim, generator=g).to(device)
    Y = torch.randn(n_train, 1, generator=g).to(device)
    torch.manual_seed(0)
    model = build_regressor(in_dim, ds["hidden"]).to(device)
    return Case(
        name=name, kind="regression",
        description=f"Table V {name}: MLP {tuple(ds['hidden'])}, h {tuple(ds['adjuster_arch'])}, "
                    f"batch {bs}, {cfg['train']['optimizer']} (h: {cfg['gal']['h_optimizer']})",
        model=model, x=X, y=Y, loss_fn=mse_loss, dim=1, arch=tuple(ds["adjuster_arch"]),
        alpha=float(cfg["gal"]["alpha"]), beta=float(cfg["gal"]["beta"]),
        lr=float(cfg["train"]["lr"]), optimizer=str(cfg["train"]["optimizer"]),
        optimizer_kwargs={"weight_decay": float(cfg["train"]["weight_decay"])},
        h_optimizer=str(cfg["gal"]["h_optimizer"]), paper_setting="-", index_batches=True,
        extra={"batch_size": bs, "hidden": list(ds["hidden"])},
    )


def cifar_case(device: torch.device) -> Case:
    from experiments.classification import CONFIG_PATH
    from experiments.engine import make_criterion
    from experiments.models import build_model

    cfg = load_config(CONFIG_PATH, "cpu")
    ds_key = cfg["run"]["table1"]["dataset"]
    ds = cfg["datasets"][ds_key]
    name = cfg["model"]["name"]
    bs, size = int(cfg["train"]["batch_size"]), int(cfg["train"]["image_size"])
    ncls = int(ds["num_classes"])
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(name, ncls).to(device)
    opt = dict(cfg["optimizers"]["sgd"])
    lr = float(opt.pop("lr"))
    return Case(
        name="cifar_cpu_profile", kind="classification",
        description=f"Table I cpu profile: {name}, GAL {tuple(ds['gal_arch'])}, batch {bs} at "
                    f"{size} px, SGD, label smoothing {cfg['train']['label_smoothing']}",
        model=model, x=torch.randn(bs, 3, size, size, generator=g).to(device),
        y=torch.randint(0, ncls, (bs,), generator=g).to(device),
        loss_fn=make_criterion(float(cfg["train"]["label_smoothing"])), dim=ncls,
        arch=tuple(ds["gal_arch"]), alpha=float(ds["gal"]["sgd"]["alpha"]),
        beta=float(ds["gal"]["sgd"]["beta"]), lr=lr, optimizer="sgd", optimizer_kwargs=opt,
        h_optimizer=str(cfg["gal"]["h_optimizer"]), paper_setting="CIFAR-10",
        extra={"model": name, "batch_size": bs, "image_size": size, "dataset": ds_key},
    )


def timm_case(name: str, device: torch.device, batch: int, size: int, amp: bool) -> Case:
    import torch.nn.functional as F

    from experiments.models import build_model

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(name, 1000).to(device)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def ce(z: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(z.float(), y, reduction=reduction)

    return Case(
        name=name, kind="classification",
        description=f"timm {name} (Table III model), GAL {IMAGENET_ARCH[name]}, batch {batch} at "
                    f"{size} px, 1000 classes, RMSpropTF" + (", AMP fp16" if amp else ""),
        model=model, x=x, y=torch.randint(0, 1000, (batch,), generator=g).to(device), loss_fn=ce,
        dim=1000, arch=IMAGENET_ARCH[name], alpha=1e-3, beta=1e-3, lr=0.016 * batch / 256,
        optimizer="rmsproptf", optimizer_kwargs={"alpha": 0.9, "eps": 1e-3, "momentum": 0.9,
                                                 "weight_decay": 1e-5},
        h_optimizer="shared", paper_setting="ImageNet", amp=amp,
        extra={"model": name, "batch_size": batch, "image_size": size},
    )


# --------------------------------------------------------------------------- arms
@dataclass
class Arm:
    """One arm's own model copy, adjuster, optimizers and step function."""

    name: str
    model: nn.Module
    adjuster: GradientAdjuster | None
    optimizers: list[torch.optim.Optimizer]
    step: Callable[[], None]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compile_setting(device: torch.device) -> bool | dict[str, Any]:
    """``compile_step`` of the ``gal_compiled`` arm: inductor, with its C++ wrapper on CPU;
    on CUDA inductor's ``reduce-overhead`` mode, which replays GAL's compiled step from one CUDA
    graph per batch shape (:class:`gal.cuda_graph.GraphReplay`: one graph launch instead of
    about a hundred kernel launches per step).

    Through TorchDynamo the wrapper halved the compiled call's fixed cost (175 vs 290 us per
    Table V boston step); for the graph :class:`gal.compiled_step.TracedStep` hands to inductor
    directly the two cost the same (1.92 vs 1.96 ms per boston step, interleaved), and the
    wrapper compiles faster here (3.5 vs 7.9 s)."""
    return {"options": {"cpp_wrapper": True}} if device.type == "cpu" else {"mode": "reduce-overhead"}


def make_adjuster(case: Case, device: torch.device, **kw: Any) -> GradientAdjuster:
    return GradientAdjuster(case.dim, arch=case.arch, alpha=case.alpha, beta=case.beta, seed=0,
                            **kw).to(device)


def make_arm(case: Case, arm: str, device: torch.device) -> Arm:
    """Build one arm: ``baseline``, ``baseline_repeat`` (a second, independent baseline: the
    A/A comparison that shows the measurement's own noise), ``gal``, ``gal_no_compare`` or
    ``gal_compiled``."""
    model = copy.deepcopy(case.model)
    adj = None
    if not arm.startswith("baseline"):
        kw: dict[str, Any] = {}
        if arm == "gal_no_compare":
            kw["compare_vanilla"] = False
        elif arm == "gal_compiled":
            kw["compile_step"] = compile_setting(device)
        adj = make_adjuster(case, device, **kw)
    params = list(model.parameters())
    h_params = [] if adj is None else [p for p in adj.parameters() if p.requires_grad]
    # as the tasks do: h in the model's param group ("shared"; "separate" in Table V, where h's
    # own optimizer has the model's settings, is the same numbers in one group) or in a group
    # of its own ("group", ImageNet: h's own lr)
    groups = [{"params": params + h_params}] if case.h_optimizer != "group" or not h_params else [
        {"params": params}, {"params": h_params}]
    opts = [build_optimizer(case.optimizer, groups, case.lr, **case.optimizer_kwargs)]
    scaler = torch.amp.GradScaler(device.type) if case.amp else None
    avg = EpochAverager(("train_loss", *DIAGNOSTICS))
    n, bs = case.x.shape[0], case.batch
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(device)
    state = {"i": 0}
    loss_fn = case.loss_fn

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        if not case.index_batches:
            return case.x, case.y
        i = state["i"]
        state["i"] = (i + bs) % n
        idx = perm[i:i + bs]
        return case.x[idx], case.y[idx]

    def step() -> None:
        xb, yb = batch()
        with torch.autocast(device_type=device.type, enabled=case.amp):
            z = model(xb)
        if adj is None:
            loss = loss_fn(z, yb)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            avg.add({"train_loss": loss})
        else:
            avg.add_stats(adj.backward(z, yb, loss_fn, lr=opts[0].param_groups[0]["lr"], scaler=scaler))
        optimizer_step(model, opts[0], scaler=scaler)  # the engines' own step tail

    return Arm(arm, model, adj, opts, step)
