"""Fig. 4 of the paper (Sec. IV-D, "Adaptivity to Optimization Methods"): the 3D example.

The cost is ``f(x, y) = -sin(x^2) cos(3 y^2) exp(-(x y)^2) - exp(-(x + y)^2)`` and the parameters
``p = (x, y)`` start at (0.75, 1.0). The parameter vector itself is the "feature" z that the
adjustment module h sees (d = 2): GAL (Algorithm 1, Eqs. 3-7) adjusts the gradient of f at p.
For each of five optimizers (GD, Lookahead(GD), RMSprop, Adam, AdaBound; per-optimizer settings in
``experiments/configs/toy3d.yaml``) this writes run records (docs/design.md, "Run records")::

    <runs_root>/fig4/<convention>/<optimizer>/<arm>/seed-<k>/

``arm`` is ``baseline`` (the plain optimizer on f, deterministic: seed 0 only) or ``gal`` (one run
per seed of h's initialisation). ``convention`` is ``paper`` (Eq. 7's full inner product,
``first_order="sum"``; h trained by its own optimizer instance of the same type and
hyperparameters, Alg. 1 line 14) or ``authors`` (the authors' 3D code: ``first_order=
"element_mean"``, h's parameters in the same optimizer as (x, y)). ``history.csv`` has one row per
step: ``step, x, y, f`` (row 0 = the start, row t = after t updates) and, for GAL, the diagnostics
of the update that led to the row (``loss, tentative_loss, remainder, ..., g_beats_grad``).

Run ``python -m experiments.toy3d --profile cpu`` (the shared runner, :mod:`experiments.runner`:
only missing runs are run; a finished run whose config changed is refused and reported,
``--rerun-stale`` sets it aside and re-runs it, ``--force`` re-runs every run; ``--jobs N`` /
``--launcher`` run N at once, :mod:`experiments.launch`), then ``gal figure 4`` renders
the figure from the records (``gal_suite.figures.render_figure``). A path on which f, the position or
GAL's remainder (Eq. 7) becomes NaN/inf is recorded as ``failed`` with the step and the values.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from experiments.common import check_choice, stale_keys
from experiments.launch import CLAIM_NAME
from experiments.runner import Selector, Task
from gal_suite.config import load_config, parse_overrides

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from experiments.runner import RunOptions

CONFIG_PATH = Path(__file__).resolve().parent / "configs" / "toy3d.yaml"
ARMS = ("baseline", "gal")
CONVENTIONS = ("paper", "authors")
DIAGNOSTICS = (
    "loss",
    "tentative_loss",
    "remainder",
    "abs_remainder",
    "accept_rate",
    "cosine",
    "g_beats_grad",
)
#: values of a history row that must stay finite (the path, f and Eq. 7's remainder / |r|)
FINITE_KEYS = ("x", "y", "f", "remainder", "abs_remainder")


class NonFiniteError(RuntimeError):
    """A Fig. 4 path left the finite numbers (its position, f or a GAL diagnostic)."""


# --------------------------------------------------------------------------- the surface
def surface(p: torch.Tensor) -> torch.Tensor:
    """The 3D cost of Sec. IV-D / Fig. 4, ``f(x, y)`` at ``p = (x, y)`` (a 0-dim tensor)."""
    x, y = p[..., 0], p[..., 1]
    return -torch.sin(x**2) * torch.cos(3 * y**2) * torch.exp(-((x * y) ** 2)) - torch.exp(
        -((x + y) ** 2)
    )


# --------------------------------------------------------------------------- config
def load_toy3d_config(
    profile: str = "cpu", overrides: Sequence[str] = (), path: Path = CONFIG_PATH
) -> dict[str, Any]:
    """Resolved config of the Fig. 4 experiment (``common`` merged with ``profiles[profile]``).

    Uses the shared loader :func:`gal_suite.config.load_config` (keys and types validated against
    ``common``); ``overrides`` are ``a.b=value`` strings.
    """
    return _load(path, profile, parse_overrides(list(overrides)), None)


def run_config(
    cfg: Mapping[str, Any], convention: str, optimizer: str, arm: str, seed: int
) -> dict[str, Any]:
    """The resolved config of one run (what its ``config.yaml`` records)."""
    o = cfg["optimizers"][optimizer]
    out: dict[str, Any] = {
        "task": cfg.get("task", "fig4"),
        "convention": convention,
        "optimizer": optimizer,
        "label": o.get("label", optimizer),
        "arm": arm,
        "method": arm,
        "seed": int(seed),
        "profile": cfg.get("profile"),
        "start": [float(v) for v in cfg["start"]],
        "dtype": cfg.get("dtype", "float64"),
        "steps": int(o["steps"]),
        "lr": float(o["lr"]),
        "optimizer_kwargs": dict(o.get("kwargs") or {}),
    }
    if arm == "gal":
        g = dict(cfg.get("gal") or {})
        conv = cfg["conventions"][convention]
        out["gal"] = {
            "alpha": float(o["alpha"]),
            "beta": float(o["beta"]),
            "arch": [int(a) for a in g.get("arch", [64, 24])],
            "policy": g.get("policy", "leq"),
            "granularity": g.get("granularity", "batch"),
            "adjuster": g.get("adjuster", "mlp"),
            "activation": g.get("activation", "relu"),
            "noise_scaling": g.get("noise_scaling", "eq4"),
            "first_order": conv["first_order"],
            "h_optimizer": conv["h_optimizer"],
        }
    return out


# --------------------------------------------------------------------------- one run
def _dtype(name: str) -> torch.dtype:
    return {"float64": torch.float64, "float32": torch.float32}[name]


def simulate(rc: Mapping[str, Any], log: Callable[[dict[str, Any]], None]) -> dict[str, float]:
    """Run one optimisation path of Fig. 4 (Sec. IV-D) and ``log`` one row per step.

    ``rc`` is a run config from :func:`run_config`. The baseline is the plain optimizer on f
    (``f(p).backward(); opt.step()``). The GAL arm follows Algorithm 1 with z = p: ``adj.backward``
    puts the chosen gradient (g or the vanilla one, lines 7-10) into ``p.grad`` and the gradient of
    |r| (Eq. 6-7) into h's parameters; then the optimizer(s) step. Returns final metrics.
    """
    from gal.optim import build_optimizer, place_h

    dtype = _dtype(rc["dtype"])
    p = torch.nn.Parameter(torch.tensor(rc["start"], dtype=dtype))
    name, lr, kw = rc["optimizer"], rc["lr"], dict(rc["optimizer_kwargs"])
    steps = int(rc["steps"])
    gal_cfg = rc.get("gal")

    optimizers: list[torch.optim.Optimizer] = []
    adj = None
    if gal_cfg is None:
        optimizers.append(build_optimizer(name, [p], lr, **kw))
    else:
        from experiments.gal_settings import gal_from_settings

        adj = gal_from_settings(gal_cfg, dim=2, seed=int(rc["seed"]))
        adj.h.to(dtype)
        h_params = list(adj.h.parameters())
        if gal_cfg["h_optimizer"] not in ("shared", "separate"):
            raise ValueError(f"unknown h_optimizer {gal_cfg['h_optimizer']!r}; choose shared or separate")
        # shared: the authors' code, one optimizer for (x, y) and h; separate: Alg. 1 line 14,
        # Phi(.; Theta) for theta, an optimizer of h's own
        groups, h_groups = place_h([{"params": [p]}], h_params, gal_cfg["h_optimizer"])
        optimizers.append(build_optimizer(name, groups, lr, **kw))
        if h_groups:
            optimizers.append(build_optimizer(name, h_groups, lr, **kw))
    opt = optimizers[0]

    def loss_fn(z: torch.Tensor, _y: Any, reduction: str = "mean") -> torch.Tensor:
        return surface(z)

    def position_row(step: int) -> dict[str, Any]:
        with torch.no_grad():
            fv = surface(p)
        pd = p.detach()
        return {"step": step, "x": float(pd[0]), "y": float(pd[1]), "f": float(fv)}

    log(position_row(0))
    fs = [position_row(0)["f"]]
    accepted = 0.0
    for t in range(1, steps + 1):
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        diag: dict[str, float] = {}
        if adj is None:
            surface(p).backward()
        else:
            stats = adj.backward(p, None, loss_fn, lr=opt.param_groups[0]["lr"])
            diag = {k: float(v) for k, v in stats.as_dict().items()}
            accepted += diag.get("accept_rate", float("nan"))
        for o in optimizers:
            o.step()
        row = position_row(t)
        row.update(diag)
        fs.append(row["f"])
        log(row)
        bad = [f"{k}={row[k]}" for k in FINITE_KEYS if k in row and not math.isfinite(row[k])]
        if bad:
            raise NonFiniteError(
                f"non-finite value at step {t} ({', '.join(bad)}); lower lr (or alpha/beta) of "
                f"optimizers.{name} in {CONFIG_PATH.name}"
            )
    metrics = {"final_f": fs[-1], "min_f": min(fs), "final_x": float(p.detach()[0]), "final_y": float(p.detach()[1])}
    if adj is not None:
        metrics["mean_accept_rate"] = accepted / max(steps, 1)
    return metrics


def finished_status(rc: Mapping[str, Any], run_dir: Path) -> str | None:
    """``"skipped"`` (complete with the config ``rc``), ``"stale"`` (complete with another config)
    or None (no complete record)."""
    from gal_suite.records import RunWriter

    if not RunWriter(run_dir).is_complete():
        return None
    with open(run_dir / "config.yaml") as fh:
        old = yaml.safe_load(fh)
    return "skipped" if old == yaml.safe_load(yaml.safe_dump(dict(rc), sort_keys=False)) else "stale"


def run_record(rc: dict[str, Any], run_dir: str | os.PathLike[str], force: bool = False) -> str:
    """Write one run record; returns ``"complete"``, ``"failed"``, ``"skipped"`` or ``"stale"``.

    A complete record with the same config is skipped. A complete record made with another
    config is kept as it is and reported as ``"stale"`` (as Table V's runner does: finished
    results are never deleted implicitly); ``force`` deletes and re-runs it. A non-finite path
    (:class:`NonFiniteError`) is recorded as ``failed`` with the reason.
    """
    from gal_suite.records import RunWriter

    run_dir = Path(run_dir)
    w = RunWriter(run_dir, device="cpu")
    if not force:
        done = finished_status(rc, run_dir)
        if done is not None:
            return done
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    partial = Path(str(run_dir) + ".partial")
    if partial.exists():  # runs take < 1 s: restart from scratch instead of resuming
        for p in partial.iterdir():
            if p.name != CLAIM_NAME:  # the claim of this run's worker (experiments.launch)
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    w.start(rc, profile=str(rc["profile"]), seed=int(rc["seed"]))
    try:
        metrics = simulate(rc, w.log)
    except NonFiniteError as exc:  # recorded as failed, never averaged
        return w.fail(str(exc))
    except Exception as exc:  # recorded as failed, never averaged; re-raised for visibility
        w.fail(f"{type(exc).__name__}: {exc}")
        raise
    return w.finish(metrics)


def planned_runs(
    cfg: Mapping[str, Any],
    conventions: Iterable[str] | None = None,
    optimizers: Iterable[str] | None = None,
    arms: Iterable[str] | None = None,
    seeds: int | None = None,
) -> list[tuple[str, str, str, int]]:
    """(convention, optimizer, arm, seed) of every run of Fig. 4 (baseline: seed 0 only)."""
    n_seeds = int(seeds if seeds is not None else cfg.get("seeds", 5))
    convs = list(conventions) if conventions else list(cfg["conventions"])
    opts = list(optimizers) if optimizers else list(cfg["optimizers"])
    arm_list = list(arms) if arms else list(ARMS)
    out = []
    for conv in convs:
        for name in opts:
            for arm in arm_list:
                for seed in range(1 if arm == "baseline" else n_seeds):
                    out.append((conv, name, arm, seed))
    return out


def run_dir_of(runs_root: Path, convention: str, optimizer: str, arm: str, seed: int) -> Path:
    """``<runs_root>/fig4/<convention>/<optimizer>/<arm>/seed-<k>``."""
    return Path(runs_root) / "fig4" / convention / optimizer / arm / f"seed-{seed}"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of Fig. 4 (Sec. IV-D): convention, optimizer, arm and seed."""

    convention: str
    optimizer: str
    arm: str
    seed: int

    def run_dir(self, root: str | os.PathLike[str]) -> Path:
        return run_dir_of(Path(root), self.convention, self.optimizer, self.arm, self.seed)

    @property
    def label(self) -> str:
        return f"{self.convention}/{self.optimizer}/{self.arm}/seed-{self.seed}"


def plan_specs(cfg: Mapping[str, Any], profile: str, seeds: int | None = None,
               conventions: Sequence[str] | None = None, optimizers: Sequence[str] | None = None,
               arms: Sequence[str] | None = None) -> list[RunSpec]:
    """:func:`planned_runs` as specs, the selectors checked against the config."""
    hint = f"see {CONFIG_PATH.name}"
    conventions = check_choice("conventions", conventions, list(cfg["conventions"]), hint) if conventions else None
    optimizers = check_choice("optimizers", optimizers, list(cfg["optimizers"]), hint) if optimizers else None
    arms = check_choice("arms", arms, ARMS) if arms else None
    return [RunSpec(*r) for r in planned_runs(cfg, conventions, optimizers, arms, seeds)]


def spec_config(cfg: Mapping[str, Any], spec: RunSpec) -> dict[str, Any]:
    """:func:`run_config` of a spec (what the run's config.yaml records, compared for stale runs)."""
    return run_config(cfg, spec.convention, spec.optimizer, spec.arm, spec.seed)


def stale_config(run_dir: Path, rc: Mapping[str, Any]) -> list[str]:
    """How a complete record's config.yaml differs from the run config ``rc`` (``[]``: the same,
    :func:`finished_status`); the differing keys, or one line when only ignored keys differ."""
    if finished_status(rc, Path(run_dir)) != "stale":
        return []
    return stale_keys(run_dir, rc, key="") or ["config.yaml: differs from the run config"]


def run_one(spec: RunSpec, cfg: Mapping[str, Any], runs_root: str | os.PathLike[str],
            force: bool = False) -> str:
    """:func:`run_record` of one planned run (the entry point of :mod:`experiments.runner`)."""
    return run_record(spec_config(cfg, spec), spec.run_dir(runs_root), force)


def _load(path: Any, profile: str, overrides: Mapping[str, Any] | None, _seeds: Any) -> dict[str, Any]:
    cfg = dict(load_config(path, profile, overrides))
    cfg["profile"] = profile
    return cfg


#: Fig. 4 as a task of the shared runner (:mod:`experiments.runner`). Its records keep their own
#: format: config.yaml is the run config itself (no settings hash), a run is stale when that
#: differs (:func:`stale_config`), a failed path is run again by every invocation, one torch
#: thread per run, exit status 1 when a path failed.
TASK = Task(
    name="fig4", prog="python -m experiments.toy3d", description=__doc__.split("\n")[0],
    config_path=CONFIG_PATH, runs_root=Path("results/runs"), plan=plan_specs,
    run_settings=spec_config, run_one="experiments.toy3d:run_one",
    selectors=(Selector("conventions", f"from {', '.join(CONVENTIONS)} (default all)",
                        aliases=("--convention",)),
               Selector("optimizers", "the config's optimizers (default all)", aliases=("--optimizer",)),
               Selector("arms", f"from {', '.join(ARMS)} (default both)", aliases=("--arm",))),
    job_options=("force",), load=_load, stale_of=stale_config, keep_failed=False,
    default_threads=1, force=True, failed_exit=1, set_example="optimizers.adam.steps=80",
)


def run_table(profile: str = "cpu", seeds: int | None = None,
              conventions: Iterable[str] | None = None, optimizers: Iterable[str] | None = None,
              arms: Iterable[str] | None = None, overrides: Sequence[str] = (),
              **options: Unpack[RunOptions]) -> dict[str, int]:
    """Run the missing runs of Fig. 4 (Sec. IV-D); returns counts ``complete``, ``failed``,
    ``skipped`` (finished with the same config).

    :func:`experiments.runner.run_task` with :data:`TASK`. A run finished with another config
    is refused before anything runs (:class:`experiments.common.StaleRuns`, naming the
    differing keys) unless ``rerun_stale`` (it is set aside to ``<run>.stale`` and run again);
    ``force`` re-runs every run. ``overrides`` are ``a.b=value`` strings.
    """
    selection = {"conventions": conventions, "optimizers": optimizers, "arms": arms}
    return TASK.run(profile, seeds, {k: None if v is None else list(v) for k, v in selection.items()},
                    overrides=parse_overrides(list(overrides)), **options)


#: CLI: run the missing Fig. 4 runs (Sec. IV-D) and write their records
main = TASK.main


if __name__ == "__main__":
    sys.exit(main())
