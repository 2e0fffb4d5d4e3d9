"""Table V of the paper (Sec. V-B): regression with and without GAL, as run records.

Datasets: Boston housing (``mlxtend.data.boston_housing_data``), diabetes
(``sklearn.datasets.load_diabetes``) and California housing
(``sklearn.datasets.fetch_california_housing``; downloads on a machine with internet, else reads
the ``SCIKIT_LEARN_DATA`` cache). Regressors are ReLU MLPs (100-50), (64-32), (256-64) with one
output z, trained with Adam on the MSE loss; GAL adjusts the gradient w.r.t. z (d = 1) with
adjusters (16-4), (128-4), (128-2) and alpha = beta = 0.001 (Sec. V-B).

Methods, each one run record under ``<runs-root>/<profile>/<variant>/<dataset>/<method>/seed-<k>/``:

* ``baseline`` - standard training;
* ``gal`` - GAL (Algorithm 1);
* ``gal_alpha0`` - GAL with alpha = 0, a control that must equal ``baseline`` exactly;
* ``noise_normal`` - Table VI's N(0, 1) adjuster with Eq. 4 scaling (perturbation control);
* ``ols``, ``mlp_sklearn`` - reference rows (LinearRegression, MLPRegressor) on the same splits.

All methods of one seed share the split; the torch methods also share initialisation and batch
order. Metrics (MAE, MSE, R2, Table V) are computed on the held-out split in the original target
units. Variants: ``paper`` (unscaled inputs and target) and ``standardized`` (features and target
standardised on the training split).

Usage::

    python -m experiments.regression --profile cpu --seeds 5 [--datasets boston,diabetes]
        [--variants paper,standardized] [--methods baseline,gal] [--runs-root results/runs/table5]
        [--set datasets.boston.epochs=10 ...] [--retry-failed]
        [--jobs N] [--launcher local|slurm|submitit-local] [--threads N] [--slurm-partition P ...]

Only missing runs are executed; ``--jobs N`` runs N at once (worker processes, or a Slurm job
array with ``--launcher slurm``; :mod:`experiments.launch`), each claimed so that concurrent
invocations never run the same run, with the same metrics as one after another (a finished run is a no-op; an interrupted one resumes from its last
checkpoint); a run whose loss becomes NaN/inf is recorded as failed and never averaged.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments.common import (
    DIAGNOSTICS,
    EpochAverager,
    TrainState,
    check_choice,
    choose_device,
    config_hash,
    run_epochs,
    seed_everything,
)
from experiments.gal_settings import gal_from_settings
from experiments.regression_data import (
    DATASETS,
    VARIANTS,
    DatasetUnavailable,
    Split,
    load_dataset,
    make_split,
    regression_metrics,
)
from experiments.regression_spec import CONFIG_PATH, RunSpec, record_config, run_settings
from experiments.runner import Selector, Task
from gal import GradientAdjuster
from gal.optim import build_optimizer
from gal_suite.config import load_config
from gal_suite.records import RunWriter
from gal_suite.vocab.methods import METHODS as METHOD_VOCAB
from gal_suite.vocab.methods import REGRESSION_METHODS

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from experiments.runner import RunOptions

DEFAULT_RUNS_ROOT = Path("results/runs/table5")
#: Table V's methods (gal_suite.vocab.methods): trained here with torch, or references (scikit-learn)
TORCH_METHODS = tuple(m for m in REGRESSION_METHODS if not METHOD_VOCAB[m].reference)
SKLEARN_METHODS = tuple(m for m in REGRESSION_METHODS if METHOD_VOCAB[m].reference)
METHODS = TORCH_METHODS + SKLEARN_METHODS
#: seconds between checkpoints after a run's first (train.checkpoint_every epochs otherwise): a
#: Table V epoch takes about 40 ms on CPU and a checkpoint 6-7 ms (Table VII's benchmark)
MIN_CHECKPOINT_S = 5.0

__all__ = [
    "CONFIG_PATH",
    "DATASETS",
    "METHODS",
    "VARIANTS",
    "DatasetUnavailable",
    "RunSpec",
    "TASK",
    "load_dataset",
    "main",
    "make_split",
    "plan_runs",
    "regression_metrics",
    "run_one",
    "run_table",
]


# --------------------------------------------------------------------------- runs
def build_regressor(in_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """ReLU MLP ``in -> hidden[0] -> ... -> 1`` (Sec. V-B notation ``(100-50)``)."""
    layers: list[nn.Module] = []
    widths = [in_dim, *hidden]
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], 1))
    return nn.Sequential(*layers)


def mse_loss(z: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The regression loss l(z) (mean-reduced MSE; ``reduction="none"`` for per-sample GAL)."""
    return F.mse_loss(z, y, reduction=reduction)


def _fail_hint(settings: Mapping[str, Any], variant: str) -> str:
    hint = f"lower the learning rate (train.lr, now {settings.get('lr')})"
    if variant == "paper":
        hint += " or use the 'standardized' variant"
    return hint + "; this run is recorded as failed and excluded from tables"


def _run_torch(
    writer: RunWriter, spec: RunSpec, cfg: Mapping[str, Any], settings: Mapping[str, Any],
    split: Split,
) -> str:
    """Train one torch regressor (baseline / GAL / controls) with checkpoints; finish the record."""
    device = choose_device(cfg["device"])
    dtype = getattr(torch, cfg["dtype"])
    seed_everything(spec.seed)
    Xtr = torch.as_tensor(split.X_train, dtype=dtype, device=device)
    ytr = torch.as_tensor(split.y_train, dtype=dtype, device=device).reshape(-1, 1)
    Xte = torch.as_tensor(split.X_test, dtype=dtype, device=device)
    yte = torch.as_tensor(split.y_test, dtype=dtype, device=device).reshape(-1, 1)
    model = build_regressor(Xtr.shape[1], settings["hidden"]).to(device=device, dtype=dtype)
    opt_name, lr, wd = settings["optimizer"], settings["lr"], settings["weight_decay"]

    adj: GradientAdjuster | None = None
    model_params = list(model.parameters())
    if spec.method != "baseline":
        adj = gal_from_settings(settings, dim=1, seed=spec.seed,
                                arch=settings.get("adjuster_arch", ())).to(device=device, dtype=dtype)
        # h_optimizer "shared" (h in the model's optimizer) and "separate" (h's own optimizer
        # of the same type, lr and decay) give the same numbers bit for bit: the optimizers'
        # state and update are per parameter. So h joins the model's group either way: one
        # optimizer pass per step instead of two (for Table V's small MLPs that pass costs as
        # much as the forward).
        model_params = model_params + [p for p in adj.h.parameters() if p.requires_grad]
    opt = build_optimizer(opt_name, [{"params": model_params}], lr, weight_decay=wd)
    batches = torch.Generator(device="cpu")
    batches.manual_seed(spec.seed)
    n, bs = Xtr.shape[0], int(settings["batch_size"])
    names = ("train_loss", *DIAGNOSTICS) if adj is not None else ("train_loss",)

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        avg = EpochAverager(names)
        perm = torch.randperm(n, generator=batches).to(device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb, yb = Xtr[idx], ytr[idx]
            z = model(xb)
            if adj is None:
                loss = mse_loss(z, yb)
                loss.backward()
                avg.add({"train_loss": loss})
            else:
                avg.add_stats(adj.backward(z, yb, mse_loss, lr=opt.param_groups[0]["lr"]))
            opt.step()
            opt.zero_grad(set_to_none=True)
        return avg.means()

    @torch.no_grad()
    def predict() -> torch.Tensor:
        model.eval()
        return model(Xte)

    def evaluate(epoch: int) -> dict[str, float]:
        return {"val_loss": float(mse_loss(predict(), yte))}

    state = TrainState({"model": model, "opt": opt, "adjuster": adj}, {"batches": batches})

    outcome = run_epochs(
        writer, epochs=int(settings["epochs"]), settings_hash=config_hash(settings),
        train_epoch=train_epoch, evaluate=evaluate, get_state=state.get, set_state=state.set,
        checkpoint_every=int(cfg["train"]["checkpoint_every"]),
        min_checkpoint_s=MIN_CHECKPOINT_S,
        fail_hint=_fail_hint(settings, spec.variant),
    )
    if outcome == "failed":
        return "failed"
    pred = split.to_original(predict().double().cpu().numpy())
    metrics = regression_metrics(split.y_test_raw, pred)
    return writer.finish(metrics)


def _run_sklearn(
    writer: RunWriter, spec: RunSpec, settings: Mapping[str, Any], split: Split
) -> str:
    """Reference rows: OLS (LinearRegression) or MLPRegressor with the same hidden widths."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LinearRegression
    from sklearn.neural_network import MLPRegressor

    if spec.method == "ols":
        est: Any = LinearRegression()
    else:
        epochs = int(settings["epochs"])
        est = MLPRegressor(
            hidden_layer_sizes=tuple(settings["hidden"]), activation="relu",
            solver=settings["sklearn_solver"], alpha=float(settings["sklearn_l2"]),
            batch_size=int(settings["batch_size"]), learning_rate_init=float(settings["lr"]),
            max_iter=epochs, shuffle=True, random_state=spec.seed,
            early_stopping=bool(settings["sklearn_early_stopping"]), tol=0.0,
            n_iter_no_change=epochs + 1,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            est.fit(split.X_train, split.y_train)
            pred = split.to_original(est.predict(split.X_test))
        except ValueError as e:  # sklearn refuses non-finite weights/predictions
            return writer.fail(f"{spec.method} failed: {e}; {_fail_hint(settings, spec.variant)}")
    if hasattr(est, "loss_curve_"):
        for i, loss in enumerate(est.loss_curve_, start=1):
            writer.log({"epoch": i, "train_loss": float(loss)})
    metrics = regression_metrics(split.y_test_raw, pred)
    if not all(np.isfinite(list(metrics.values()))):
        return writer.fail(
            f"non-finite predictions of {spec.method}; {_fail_hint(settings, spec.variant)}")
    return writer.finish(metrics)


def run_one(
    spec: RunSpec, cfg: Mapping[str, Any], runs_root: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None, retry_failed: bool = False,
    config_path: str | os.PathLike[str] = CONFIG_PATH,
) -> str:
    """Run (or resume, or skip) one run of Table V; returns ``"skipped"``, ``"complete"`` or
    ``"failed"``. A finished run (complete, or failed unless ``retry_failed``) is a no-op."""
    writer = RunWriter(spec.run_dir(runs_root), device=str(choose_device(cfg["device"])))
    status = writer.status()
    if status == "complete" or (status == "failed" and not retry_failed):
        return "skipped"
    settings = run_settings(cfg, spec)
    X, y = load_dataset(spec.dataset, bool(cfg["data"]["allow_download"]))
    split = make_split(X, y, test_size=float(settings["test_size"]), seed=settings["split_seed"],
                       variant=spec.variant)
    writer.start(record_config(cfg, spec, settings, overrides, config_path), profile=spec.profile,
                 seed=spec.seed)
    if spec.method in SKLEARN_METHODS:
        return _run_sklearn(writer, spec, settings, split)
    return _run_torch(writer, spec, cfg, settings, split)


def _check_choice(kind: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    return check_choice(kind, values, allowed, f"--{kind} a,b or run.{kind} in {CONFIG_PATH.name}")


def plan_runs(
    cfg: Mapping[str, Any], profile: str, seeds: int | Sequence[int] | None = None,
    datasets: Sequence[str] | None = None, variants: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
) -> list[RunSpec]:
    """All runs of the table in a stable order (variant, dataset, method, seed)."""
    ds = _check_choice("datasets", datasets or cfg["run"]["datasets"], DATASETS)
    vs = _check_choice("variants", variants or cfg["run"]["variants"], VARIANTS)
    ms = _check_choice("methods", methods or cfg["run"]["methods"], METHODS)
    if seeds is None:
        seeds = int(cfg["seeds"])
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    return [RunSpec(profile, v, d, m, s) for v in vs for d in ds for m in ms for s in seed_list]


def _load(path: Any, profile: str, overrides: Mapping[str, Any] | None,
          seeds: int | Sequence[int] | None) -> dict[str, Any]:
    """The config; an int ``seeds`` also becomes its ``seeds`` key (as before the runner)."""
    over = dict(overrides or {})
    if isinstance(seeds, int):
        over.setdefault("seeds", seeds)
    return load_config(path, profile, over)


def _check_data(cfg: Mapping[str, Any], todo: Sequence[RunSpec]) -> None:
    for name in sorted({s.dataset for s in todo}):
        load_dataset(name, bool(cfg["data"]["allow_download"]))


#: Table V as a task of the shared runner (:mod:`experiments.runner`)
TASK = Task(
    name="table5", prog="python -m experiments.regression",
    description="Table V (Sec. V-B) regression runs -> run records",
    config_path=CONFIG_PATH, runs_root=DEFAULT_RUNS_ROOT, plan=plan_runs, run_settings=run_settings,
    run_one="experiments.regression:run_one",
    selectors=(Selector("datasets", f"from {','.join(DATASETS)}"),
               Selector("variants", f"from {','.join(VARIANTS)}"),
               Selector("methods", f"from {','.join(METHODS)}")),
    job_options=("overrides", "retry_failed", "config_path"), check_data=_check_data, load=_load,
    errors=(DatasetUnavailable,), set_example="datasets.boston.epochs=10",
)


def run_table(profile: str = "cpu", seeds: int | Sequence[int] | None = None,
              datasets: Sequence[str] | None = None, variants: Sequence[str] | None = None,
              methods: Sequence[str] | None = None,
              **options: Unpack[RunOptions]) -> dict[str, int]:
    """Run the missing runs of Table V; returns counts ``{"complete", "failed", "skipped"}``.

    :func:`experiments.runner.run_task` with :data:`TASK`: the missing runs go to
    :func:`experiments.launch.run_jobs` (``jobs`` at once with ``launcher``, ``threads`` torch
    threads each, default the config's ``num_threads``; a run's metrics depend on it, not on
    ``jobs`` or the launcher). A finished run made with other settings is refused
    (:class:`experiments.common.StaleRuns`, naming the differing keys) unless ``rerun_stale``,
    which sets it aside and runs it again.
    """
    return TASK.run(profile, seeds,
                    {"datasets": datasets, "variants": variants, "methods": methods}, **options)


#: command line entry point (``python -m experiments.regression``)
main = TASK.main


if __name__ == "__main__":
    sys.exit(main())
