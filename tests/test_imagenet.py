"""Table III task (ImageNet, Sec. V-B): config and per-model overrides, the step schedule, seeded
augmentation, h's param group, EMA through checkpoint/resume, the smoke profile end to end to
the rendered table, and torchrun DDP (2 processes == 1 process; a bad world size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from resume_helpers import interrupt_at_epoch

from experiments import classification as C
from experiments.augment import TensorAugment
from experiments.classification_setup import lr_lambda
from experiments.image_data import DataError, ImageSet, TensorLoader
from gal_suite.config import ConfigError, load_config
from tests.test_classification import _synthetic, make_imagefolder

REPO = Path(__file__).resolve().parents[1]
TIMING = ("train_time_s", "s_per_image", "images_per_s")


pytestmark = pytest.mark.usefixtures("gal_cache")  # tests/conftest.py


def _h_count(d: int, arch: list[int]) -> int:
    """Parameters of h = Linear(d, a1), ..., Linear(ak, d) with biases, by hand."""
    widths = [d, *arch, d]
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=False))


def _smoke_over(tmp_path: Path) -> dict:
    root = tmp_path / "smokedata"
    if not root.exists():
        make_imagefolder(root)
    return {"datasets.smoke.data.root": str(root)}


def _cfg(profile: str = "smoke", over: dict | None = None) -> dict:
    return load_config(C.IMAGENET_CONFIG_PATH, profile, over or {})


# --------------------------------------------------------------------------- config
def test_config_profiles_and_model_overrides(tmp_path):
    assert C.config_for(3) == C.IMAGENET_CONFIG_PATH and C.config_for(1) == C.CONFIG_PATH
    paper = _cfg("paper")
    plan = C.plan_runs(paper, 3, "paper")
    assert [(s.model, s.method) for s in plan[:2]] == [("resnet50", "baseline"), ("resnet50", "gal")]
    assert len(plan) == 2 * 3 * 2 and {s.optimizer for s in plan} == {"rmsproptf"}
    spec = plan[1]
    assert spec.label == "table3/paper/imagenet/resnet50/rmsproptf/gal/seed-0"
    assert spec.run_dir(tmp_path) == tmp_path / spec.label
    r50 = C.run_settings(paper, spec)
    eff = C.run_settings(paper, C.RunSpec(3, "paper", "imagenet", "rmsproptf", "gal", 0, "efficientnet_b2"))
    assert r50["model"]["name"] == "resnet50" and r50["gal"]["arch"] == [512, 128]
    assert (eff["model"]["name"], eff["model"]["drop_rate"], eff["model"]["drop_path_rate"]) == (
        "efficientnet_b2", 0.3, 0.2)
    assert eff["gal"]["arch"] == [512, 256] and r50["model"]["drop_rate"] == 0.0
    # the paper's h counts (Table III: 0.70M, 0.90M at d = 1000) from these archs
    assert _h_count(1000, r50["gal"]["arch"]) == 707_176 and _h_count(1000, eff["gal"]["arch"]) == 900_840
    assert (r50["gal"]["alpha"], r50["gal"]["beta"], r50["gal"]["h_optimizer"], r50["gal"]["h_lr"]) == (
        0.001, 0.001, "group", 0.016)
    tr = r50["train"]
    assert (tr["epochs"], tr["batch_size"], tr["ema_decay"], tr["random_erasing"]) == (90, 800, 0.9999, 0.2)
    assert r50["opt"] == {"lr": 0.016, "alpha": 0.9, "eps": 1e-3, "momentum": 0.9, "weight_decay": 1e-5,
                          "filter_bias_and_bn": True}
    assert paper["datasets"]["imagenet"]["data"]["root"] is None  # no default data
    with pytest.raises(DataError, match=r"--set datasets\.imagenet\.data\.root=/path/to/imagenet"):
        C.load_data(paper, "imagenet")
    cpu = _cfg("cpu")
    assert {s.model for s in C.plan_runs(cpu, 3, "cpu")} == {"resnet50", "efficientnet_b2"}
    c0 = "resnet50"
    cs = C.run_settings(cpu, C.RunSpec(3, "cpu", "tiny100_64", "rmsproptf", "gal", 0, c0))
    assert cs["model"]["name"] == "resnet10t" and cs["model"]["kwargs"]["stem_width"] == 16
    assert cs["gal"]["arch"] == [256, 64] and cs["num_classes"] == 100 and cs["data"]["image_size"] == 64
    ce = C.run_settings(cpu, C.RunSpec(3, "cpu", "tiny100_64", "rmsproptf", "gal", 0, "efficientnet_b2"))
    assert ce["model"]["name"] == "tinynet_e" and ce["gal"]["arch"] == [256, 128]
    assert (ce["model"]["drop_rate"], ce["model"]["drop_path_rate"]) == (0.0, 0.0)
    assert C.record_config(cpu, C.RunSpec(3, "cpu", "tiny100_64", "rmsproptf", "gal", 0, c0), cs, {}, 1, 2)[
        "dataset_label"] == "Tiny-ImageNet-100 (64 px)"
    smoke = _cfg("smoke", {"models.efficientnet_b2.train": {"image_size": 20}})
    s = C.run_settings(smoke, C.RunSpec(3, "smoke", "smoke", "rmsproptf", "baseline", 0, "efficientnet_b2"))
    assert s["model"]["name"] == "test_efficientnet" and s["train"]["image_size"] == 20
    with pytest.raises(ConfigError, match="unknown train key"):
        C.run_settings(_cfg("smoke", {"models.resnet50.train": {"imagesize": 2}}),
                       C.RunSpec(3, "smoke", "smoke", "rmsproptf", "gal", 0, "resnet50"))
    with pytest.raises(ConfigError, match="unknown models"):
        C.plan_runs(smoke, 3, "smoke", models=["vgg"])
    # the other tables keep their run directories, labels and config
    old = C.RunSpec(1, "cpu", "cifar10_jpeg", "sgd", "gal", 0)
    assert old.label == "table1/cpu/cifar10_jpeg/sgd/gal/seed-0"
    assert old.run_dir("r") == Path("r/table1/cpu/cifar10_jpeg/sgd/gal/seed-0")
    with pytest.raises(ConfigError, match="does not vary the model"):
        C.plan_runs(load_config(C.CONFIG_PATH, "smoke"), 1, "smoke", models=["resnet50"])


# --------------------------------------------------------------------------- schedule
def test_step_schedule_by_hand_and_as_timm():
    sched = {"kind": "step", "warmup_epochs": 3.0, "warmup_lr": 1e-6, "decay_epochs": 2.4,
             "decay_rate": 0.97, "per_epoch": True}
    spe, base = 5, 0.016
    f = lr_lambda(sched, spe, 10, base_lr=base)
    warm = [1e-6 + e * (base - 1e-6) / 3 for e in range(3)]      # linear from the warm-up lr
    exps = {3: 1, 4: 1, 5: 2, 6: 2, 7: 2, 8: 3, 9: 3}             # floor(e / 2.4)
    for e in range(10):
        want = warm[e] if e < 3 else base * 0.97 ** exps[e]
        for step in range(e * spe, (e + 1) * spe):                # constant within an epoch
            assert base * f(step) == pytest.approx(want, rel=1e-12), (e, step)
    # the same numbers as timm's StepLRScheduler, per group; warmup_prefix=False is the 2020 timm
    # the authors vendored (the decay counts epochs from 0, warm-up included)
    from timm.scheduler import StepLRScheduler

    p = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [p[0]]}, {"params": [p[1]], "lr": 0.032}], lr=base)
    timm_s = StepLRScheduler(opt, decay_t=2.4, decay_rate=0.97, warmup_t=3, warmup_lr_init=1e-6,
                             warmup_prefix=False)
    ours = torch.optim.lr_scheduler.LambdaLR(
        torch.optim.SGD([{"params": [p[0]]}, {"params": [p[1]], "lr": 0.032}], lr=base),
        [lr_lambda(sched, spe, 10, base_lr=b) for b in (base, 0.032)])
    for e in range(10):
        timm_s.step(e)
        got = [g["lr"] for g in ours.optimizer.param_groups]
        assert got == pytest.approx([g["lr"] for g in opt.param_groups], rel=1e-12), e
        for _ in range(spe):
            ours.optimizer.step()
            ours.step()
    # per_epoch false: the fractional epoch (the cpu profile's compressed schedule)
    g = lr_lambda({**sched, "per_epoch": False, "warmup_epochs": 0.5, "decay_epochs": 0.25}, 4, 2,
                  base_lr=base)
    assert base * g(1) == pytest.approx(1e-6 + 0.25 * (base - 1e-6) / 0.5)
    assert g(3) == pytest.approx(0.97 ** 3) and g(7) == pytest.approx(0.97 ** 7)
    with pytest.raises(ConfigError, match="choose multistep, onecycle or step"):
        lr_lambda({"kind": "cosine"}, 1, 1)


# --------------------------------------------------------------------------- augmentation
def _aug_loader(ds, seed, **kw):
    aug = TensorAugment(crop_size=12, ra_ops=2, ra_magnitude=9, ra_std=0.5, erase_prob=0.5)
    return TensorLoader(ds, 8, train=True, mean=[0.5] * 3, std=[0.25] * 3, flip=True, resize=12,
                        generator=torch.Generator().manual_seed(seed), augment=aug, drop_last=True, **kw)


def test_augmentation_is_seeded_paired_and_sliced_like_one_process():
    ds = _synthetic(n=32, size=16)
    a, b, other = (list(_aug_loader(ds, s)) for s in (5, 5, 6))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.shape == (8, 3, 12, 12)
    assert not torch.equal(a[0][0], other[0][0])
    # the global RNG (dropout, drop-path) is untouched by the augmentation draws
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    list(_aug_loader(ds, 5))
    assert torch.equal(torch.rand(3), before)
    # erasing fills boxes with N(0, 1) draws: some images carry values no normalised pixel can take
    plain = TensorLoader(ds, 8, train=False, mean=[0.5] * 3, std=[0.25] * 3)
    lo, hi = (0 - 127.5) / 63.75, (255 - 127.5) / 63.75
    assert all(float(x.min()) >= lo - 1e-6 and float(x.max()) <= hi + 1e-6 for x, _ in plain)
    xs = torch.cat([x for x, _ in a])
    off_grid = ((xs * 63.75 + 127.5) - (xs * 63.75 + 127.5).round()).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert 0 < int(off_grid.sum()) < len(xs)
    # two DDP ranks (each augmenting its half) give exactly the one-process global batch
    r0, r1 = (list(_aug_loader(ds, 5, rank=r, world=2)) for r in (0, 1))
    for (x, y), (x0, y0), (x1, y1) in zip(a, r0, r1, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_arms_of_a_seed_get_the_same_augmented_batches(tmp_path):
    cfg = _cfg("smoke", _smoke_over(tmp_path))
    train, test = C.load_data(cfg, "smoke")
    batches = {}
    for method in ("baseline", "gal"):
        s = C.run_settings(cfg, C.RunSpec(3, "smoke", "smoke", "rmsproptf", method, 1, "resnet50"))
        run = C.build_run(s, train, test, seed=1)
        assert run.train_loader.augment is not None and run.train_loader.augment.on_uint8
        batches[method] = list(run.train_loader)
    for (xb, yb), (xg, yg) in zip(batches["baseline"], batches["gal"], strict=True):
        assert torch.equal(xb, xg) and torch.equal(yb, yg)


def test_eval_centre_crop_by_hand():
    ds = ImageSet(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8), torch.arange(4), list("abcd"), "t")
    (x, _), = TensorLoader(ds, 4, train=False, mean=[0.0] * 3, std=[1 / 255] * 3, resize=16, crop_pct=0.875)
    big = F.interpolate(ds.images.float(), size=(18, 18), mode="bilinear", align_corners=False)  # floor(16/0.875)
    torch.testing.assert_close(x, big[..., 1:17, 1:17])


# --------------------------------------------------------------------------- optimizer groups
def test_h_own_param_group_and_no_decay_group(tmp_path):
    cfg = _cfg("smoke", _smoke_over(tmp_path) | {"gal.h_lr": 0.5, "gal.h_weight_decay": 0.25})
    train, test = C.load_data(cfg, "smoke")
    run = C.build_run(C.run_settings(cfg, C.RunSpec(3, "smoke", "smoke", "rmsproptf", "gal", 0, "resnet50")),
                      train, test, seed=0)
    nodecay, decay, h = run.optimizer.param_groups
    assert {id(p) for p in h["params"]} == {id(p) for p in run.adjuster.parameters()}
    assert (h["initial_lr"], h["weight_decay"]) == (0.5, 0.25)
    assert nodecay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-5
    assert all(p.ndim <= 1 for p in nodecay["params"]) and all(p.ndim > 1 for p in decay["params"])
    n_model = sum(1 for _ in run.model.parameters())
    assert len(nodecay["params"]) + len(decay["params"]) == n_model
    # the CIFAR configs keep one shared group (model + h)
    cifar = load_config(C.CONFIG_PATH, "smoke", {"datasets.smoke.data.root": _smoke_over(tmp_path)[
        "datasets.smoke.data.root"]})
    run = C.build_run(C.run_settings(cifar, C.RunSpec(1, "smoke", "smoke", "sgd", "gal", 0)), train, test, 0)
    assert len(run.optimizer.param_groups) == 1 and run.ema is None


# --------------------------------------------------------------------------- EMA, resume, end to end
def _metrics(path: Path) -> dict:
    m = json.loads((path / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in TIMING}


def _interrupt_at_epoch_2(spec: C.RunSpec, cfg: dict, root: Path, monkeypatch) -> None:
    """Run ``spec`` in this process until epoch 2 starts (a kill after epoch 1's checkpoint)."""
    interrupt_at_epoch(C, spec, cfg, root, monkeypatch)


def test_ema_survives_checkpoint_resume_bit_for_bit(tmp_path, monkeypatch):
    cfg = _cfg("smoke", _smoke_over(tmp_path))
    spec = C.RunSpec(3, "smoke", "smoke", "rmsproptf", "gal", 0, "efficientnet_b2")  # dropout + drop-path
    assert C.run_one(spec, cfg, tmp_path / "a") == "complete"
    _interrupt_at_epoch_2(spec, cfg, tmp_path / "b", monkeypatch)
    partial = Path(str(spec.run_dir(tmp_path / "b")) + ".partial")
    ck = torch.load(partial / "checkpoint.pt", weights_only=False)
    ema, model = ck["task"]["ema"], ck["task"]["model"]
    assert ck["epoch"] == 1 and set(ema) == {f"module.{k}" for k in model}
    assert any(not torch.equal(ema[f"module.{k}"], v) for k, v in model.items() if v.is_floating_point())
    assert C.run_one(spec, cfg, tmp_path / "b") == "complete"
    a, b = spec.run_dir(tmp_path / "a"), spec.run_dir(tmp_path / "b")
    assert json.loads((b / "provenance.json").read_text())["resumed"]
    ma = _metrics(a)
    assert ma == _metrics(b)
    assert ma["val_loss"] != ma["val_loss_raw"]  # the EMA weights are what is reported
    cols = ["epoch", "train_loss", "val_loss", "val_loss_raw", "accept_rate", "lr"]
    ha, hb = ((p / "history.csv").read_text().splitlines() for p in (a, b))
    head = ha[0].split(",")
    for ra, rb in zip(ha[1:], hb[1:], strict=True):
        va, vb = ra.split(","), rb.split(",")
        assert [va[head.index(c)] for c in cols] == [vb[head.index(c)] for c in cols]


def test_smoke_profile_end_to_end_to_table3(tmp_path):
    runs = tmp_path / "runs"
    counts = C.run_table(3, "smoke", seeds=1, runs_root=runs, overrides=_smoke_over(tmp_path), progress=False)
    assert counts == {"complete": 6, "failed": 0, "skipped": 0}
    d = runs / "table3" / "smoke" / "smoke"
    import yaml

    for key, net, arch in (("resnet50", "test_resnet", [16, 8]), ("efficientnet_b2", "test_efficientnet", [16, 16])):
        rec = d / key / "rmsproptf" / "gal" / "seed-0"
        conf = yaml.safe_load((rec / "config.yaml").read_text())
        assert (conf["model_key"], conf["model"], conf["table"]) == (key, net, 3)
        import timm

        assert conf["n_params"] == sum(p.numel() for p in timm.create_model(net, num_classes=10).parameters())
        assert conf["h_params"] == _h_count(10, arch)
        m = json.loads((rec / "metrics.json").read_text())
        assert m["acc_top1"] == 100.0 - m["error_top1"] and m["acc_top5"] == 100.0 - m["error_top5"]
        base, a0 = (_metrics(d / key / "rmsproptf" / meth / "seed-0") for meth in ("baseline", "gal_alpha0"))
        assert base == a0  # GAL with alpha = 0 trains exactly like the baseline
    from gal_suite.tables import render_table

    md = Path(render_table(3, runs, tmp_path / "tables")["md"]).read_text()
    assert "# Table III" in md and "h params ours" in md and "test_resnet (ResNet-50 stand-in)" in md
    row = next(r for r in md.splitlines() if "test_resnet" in r and "GAL (proposed)" in r)
    cells = [c.strip() for c in row.split("|")]
    assert str(_h_count(10, [16, 8])) in cells and "0.70M" in cells and "23.5M" in cells
    assert "76.53 ± 0.03" in cells  # the paper's ResNet-50 GAL top-1, beside ours
    assert "✓ = baseline exactly on 1/1 seeds" in md


# --------------------------------------------------------------------------- torchrun
def _env(tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1",
           "GAL_CACHE": str(tmp_path / "cache")}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _torchrun(tmp_path: Path, n: int, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "experiments.classification", "--table", "3", "--profile", "smoke", "--no-progress", *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=600)


def _same_run(a: Path, b: Path) -> None:
    """Metrics and final weights (model, EMA, h) of two runs equal up to float summation order."""
    ma, mb = _metrics(a), _metrics(b)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert ma[k] == pytest.approx(mb[k], rel=1e-4, abs=1e-5), k
    ca, cb = (torch.load(p / "checkpoint.pt", weights_only=False)["task"] for p in (a, b))
    for part in ("model", "ema", "adjuster"):
        assert ca[part].keys() == cb[part].keys()
        for k, v in cb[part].items():
            torch.testing.assert_close(ca[part][k], v, rtol=1e-4, atol=1e-5, msg=f"{part}.{k}")


def test_torchrun_two_processes_equal_one_process(tmp_path, monkeypatch):
    """BatchNorm is replaced by GroupNorm (timm's norm_layer) for this test: with BatchNorm each
    process normalises by its own half batch (SyncBatchNorm needs CUDA), which is what the
    authors' 8-GPU runs did too, but is not the one-process computation. Also: a run interrupted
    after epoch 1 resumes under torchrun with every rank at epoch 2 (rank 0's checkpoint)."""
    over = _smoke_over(tmp_path) | {"train.keep_checkpoint": True,
                                    "models.resnet50.kwargs": {"norm_layer": "groupnorm1"}}
    sets = [a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, dict) else v}")]
    sel = ["--seeds", "1", "--models", "resnet50", "--methods", "gal"]
    out = _torchrun(tmp_path, 2, [*sel, "--runs-root", str(tmp_path / "ddp"), *sets])
    assert out.returncode == 0, out.stderr[-3000:]
    C.run_table(3, "smoke", seeds=1, models=["resnet50"], methods=["gal"], runs_root=tmp_path / "one",
                overrides=over, progress=False)
    rel = Path("table3/smoke/smoke/resnet50/rmsproptf/gal/seed-0")
    ddp, one = tmp_path / "ddp" / rel, tmp_path / "one" / rel
    assert json.loads((ddp / "provenance.json").read_text())["launch"]["world_size"] == 2
    _same_run(ddp, one)
    co = torch.load(one / "checkpoint.pt", weights_only=False)["task"]
    fresh = C.build_run(C.run_settings(_cfg("smoke", over), C.RunSpec(3, "smoke", "smoke", "rmsproptf", "gal", 0,
                                                                      "resnet50")),
                        *C.load_data(_cfg("smoke", over), "smoke"), seed=0)
    moved = [k for k, v in fresh.model.state_dict().items() if not torch.allclose(v, co["model"][k])]
    assert moved  # not vacuous: training changed the weights
    spec = C.RunSpec(3, "smoke", "smoke", "rmsproptf", "gal", 0, "resnet50")
    _interrupt_at_epoch_2(spec, _cfg("smoke", over), tmp_path / "resumed", monkeypatch)
    out = _torchrun(tmp_path, 2, [*sel, "--runs-root", str(tmp_path / "resumed"), *sets])
    assert out.returncode == 0, out.stderr[-3000:]
    res = tmp_path / "resumed" / rel
    prov = json.loads((res / "provenance.json").read_text())
    assert prov["resumed"] and prov["launch"]["world_size"] == 2
    _same_run(res, one)


def test_world_size_not_dividing_the_batch_is_one_clear_error(tmp_path, monkeypatch, capsys):
    args = ["--table", "3", "--profile", "smoke", "--runs-root", str(tmp_path / "r"), "--no-progress",
            "--set", f"datasets.smoke.data.root={_smoke_over(tmp_path)['datasets.smoke.data.root']}"]
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    assert C.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("not divisible by the torchrun world size 3") == 1 and len(err.strip().splitlines()) == 1
    assert not torch.distributed.is_initialized() and not (tmp_path / "r").exists()
    out = _torchrun(tmp_path, 3, args[4:])
    assert out.returncode != 0
    both = out.stdout + out.stderr
    assert both.count("train.batch_size 16 (the global batch) is not divisible by the torchrun world size 3") == 1
