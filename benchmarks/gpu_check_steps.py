"""The steps of ``benchmarks/gpu_check.sh`` (see :mod:`benchmarks.gpu_check`): what each step
runs and imports, how much work it does (``Scale``), the plan of commands, and the CPU-side check
that a training step's config resolves (``--dry-run``). Standard library only at the top level.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the script the helper steps (``--env-info``, ``--prep``) run
GPU_CHECK = Path(__file__).with_name("gpu_check.py")

#: Python modules each step imports (checked by --dry-run)
BASE_NEEDS = ["torch", "numpy", "yaml", "pytorch_optimizer", "timm", "scipy", "pandas", "PIL"]
STEP_NEEDS = {
    "env": ["torch"],
    "tests_cuda": [*BASE_NEEDS, "pytest"],
    "prep": ["torch", "numpy", "PIL", "timm"],
    "table1": [*BASE_NEEDS, "torchvision", "tqdm"],
    "table1_noise": [*BASE_NEEDS, "torchvision", "tqdm"],
    "gal_cost": [*BASE_NEEDS],
    "table3": [*BASE_NEEDS, "torchvision", "tqdm"],
    "detr": [*BASE_NEEDS, "transformers", "pycocotools"],
}
STEPS = tuple(STEP_NEEDS)
RUN_STEPS = ("table1", "table1_noise", "table3", "detr")


@dataclass
class Scale:
    """How much each step does (``--quick`` halves the work)."""

    t1_subset: int = 12_800       # Table I training images: 40 steps of batch 320
    t1_val: int = 2_000           # per-epoch validation images (the final test uses all 10,000)
    t1_seeds: int = 2
    cost_seconds: float = 8.0     # gal_cost.py's interleaved rounds per case
    t3_per_class: int = 8         # generated ImageNet-shaped training images per class (x 1000)
    t3_batch: int = 128           # Table III global batch on one GPU (the paper's is 100 per GPU)
    t3_epochs: int = 3            # 3 x 62 = 186 steps
    detr_train: int = 48          # DETR images: 6 steps of batch 8
    detr_val: int = 16

    @classmethod
    def quick(cls) -> Scale:
        return cls(t1_subset=6_400, t1_val=1_000, t1_seeds=2, cost_seconds=4.0, t3_per_class=4,
                   t3_epochs=2, detr_train=24, detr_val=8)


@dataclass
class Step:
    name: str
    cmd: list[str]
    cap_s: float                   # this step's own time limit (the budget may cut it shorter)
    needs: list[str] = field(default_factory=list)
    background: bool = False       # prep: runs while the next steps use the GPU
    wait_for: str | None = None    # a background step that must have finished first

    def shell(self) -> str:
        return " ".join(shlex.quote(c) for c in self.cmd)


# --------------------------------------------------------------------------- the plan
def plan(args: argparse.Namespace, work: Path, scale: Scale) -> list[Step]:
    py = args.python
    runs = work / "runs"
    data = work / "data"
    weights = data / "resnet50_random_init.pth"
    no_prog = ["--no-progress", "--runs-root", str(runs)]
    t1_set = ["--set", "model.pretrained=false", "--set", "train.epochs=1",
              "--set", f"train.train_subset={scale.t1_subset}", "--set", f"train.val_subset={scale.t1_val}",
              "--set", "train.checkpoint_every=1000"]
    t1_sel = ["--profile", "paper", "--dataset", "cifar10_jpeg", "--optimizers", "sgd",
              "--seeds", str(scale.t1_seeds)]
    t3_set = ["--set", f"datasets.imagenet.data.root={data / 'imagenet'}",
              "--set", f"train.batch_size={scale.t3_batch}", "--set", f"train.test_batch_size={scale.t3_batch}",
              "--set", f"train.epochs={scale.t3_epochs}", "--set", "train.checkpoint_every=1000",
              "--set", "train.randaugment.num_ops=0", "--set", "train.random_erasing=0.0"]
    detr_set = ["--set", "train.epochs=1",
                "--set", f"datasets.shapes.synthetic.n_train={scale.detr_train}",
                "--set", f"datasets.shapes.synthetic.n_val={scale.detr_val}",
                "--set", "datasets.shapes.synthetic.size=256", "--set", "datasets.shapes.data.size=800",
                "--set", f"model.backbone_weights={weights}"]
    steps = [
        Step("env", [py, str(GPU_CHECK), "--env-info"], 60),
        Step("tests_cuda", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                            "tests/test_core_step.py", "tests/test_gal_cost.py",
                            "tests/test_cuda_graph.py"], 150),
        Step("prep", [py, str(GPU_CHECK), "--prep", str(data),
                      "--per-class", str(scale.t3_per_class)], 150, background=True),
        Step("table1", [py, "-m", "experiments.classification", "--table", "1", *t1_sel,
                        "--methods", "baseline,gal,gal_alpha0", *no_prog, *t1_set], 170),
        Step("table1_noise", [py, "-m", "experiments.classification", "--table", "6", *t1_sel,
                              "--methods", "gal+adjuster=normal", *no_prog, *t1_set], 70),
        Step("gal_cost", [py, "benchmarks/gal_cost.py", "--device", "cuda", "--compile",
                          "--seconds", str(scale.cost_seconds), "--out",
                          str(work / "gal_cost_cuda.json"), "--note", "benchmarks/gpu_check.sh"],
             230, wait_for="prep"),
        Step("table3", [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                        "-m", "experiments.classification", "--table", "3", "--profile", "paper",
                        "--seeds", "1", "--methods", "baseline,gal", *no_prog, *t3_set], 170,
             wait_for="prep"),
        Step("detr", [py, "-m", "detr_gal.run", "--profile", "paper", "--models", "detr_r50",
                      "--dataset", "shapes", "--seeds", "1", "--methods", "baseline,gal", *no_prog,
                      *detr_set], 120, wait_for="prep"),
    ]
    for s in steps:
        s.needs = STEP_NEEDS[s.name]
    return steps


def validate_run_step(cmd: list[str]) -> dict[str, Any]:
    """Resolve a training step's runs without running them: its config, ``--set`` overrides,
    plan and every run's settings (a typo in a key fails here, on CPU, not on the GPU)."""
    from gal_suite.config import load_config, parse_overrides

    module = cmd[cmd.index("-m", cmd.index("-m") + 1) + 1] if "torch.distributed.run" in cmd else \
        cmd[cmd.index("-m") + 1]
    rest = cmd[cmd.index(module) + 1:]
    ap = argparse.ArgumentParser()
    for opt in ("--table", "--profile", "--dataset", "--optimizers", "--methods", "--models",
                "--runs-root"):
        ap.add_argument(opt)
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--set", action="append", dest="overrides", default=[])
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(rest)
    over = parse_overrides(a.overrides)
    split = (lambda v: v.split(",") if v else None)  # noqa: E731
    if module == "experiments.classification":
        from experiments import classification as C

        cfg = load_config(C.config_for(a.table), a.profile, over)
        specs = C.plan_runs(cfg, a.table, a.profile, a.seeds, split(a.optimizers), split(a.methods),
                            a.dataset, split(a.models))
        settings = [C.run_settings(cfg, sp) for sp in specs]
    else:
        from detr_gal import run as R

        cfg = load_config(R.CONFIG_PATH, a.profile, over)
        specs = R.plan_runs(cfg, a.profile, a.seeds, split(a.models), split(a.methods), a.dataset)
        settings = [R.run_settings(cfg, sp) for sp in specs]
    return {"module": module, "runs": [sp.label for sp in specs],
            "gal": [s.get("gal", {}).get("alpha") for s in settings]}
