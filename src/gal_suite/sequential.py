"""Run until decided: a group-sequential design for the paired verdict of the tables.

Paired seeds are added in batches ("looks" at ``batch, 2·batch, …, max_pairs`` pairs, always the
first ``n`` seeds in seed order). At look ``k`` the interval of GAL − baseline is the paired t
interval at level ``1 − α_k``, where ``α_k = α(t_k) − α(t_{k−1})`` is the increment of an
alpha-spending function ``α(t)`` (Lan & DeMets 1983) at the information fraction
``t_k = n_k / max_pairs``. These *repeated confidence intervals* (Jennison & Turnbull 1989) cover
the true mean difference at every look at once with probability ``>= 1 − α``: by the union bound
the chance that any of them misses is at most ``Σ α_k = α(1) = α``, whatever the correlation
between looks. That makes the procedure valid for optional stopping (a row stops at the first
look whose verdict is decided, :func:`gal_suite.stats.paired_verdict`), exact for the t distribution
with unknown variance at any ``n >= 2`` (no normal approximation), and conservative (the exact
group-sequential boundary would use the looks' joint distribution; no maintained Python package
computes it for t statistics). Never a naive t-test repeated at level α.

Spending functions: ``"pocock"`` (Lan-DeMets Pocock type, ``α·ln(1 + (e − 1)·t)``: spends early,
so clear effects stop early) and ``"obrien_fleming"`` (``2 − 2Φ(z_{1−α/2}/√t)``: almost nothing
early). The tables name the design, the looks and the stopping reason of every row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as st

from gal_suite.stats import paired_verdict, t_interval

__all__ = ["SPENDING", "SequentialDesign", "Look", "Decision", "repeated_ci", "decide"]


def _pocock(t: float, alpha: float) -> float:
    return alpha * math.log1p((math.e - 1.0) * t)


def _obrien_fleming(t: float, alpha: float) -> float:
    if t <= 0.0:
        return 0.0
    return float(2.0 - 2.0 * st.norm.cdf(st.norm.ppf(1.0 - alpha / 2.0) / math.sqrt(t)))


#: alpha-spending functions α(t, α) with α(0) = 0 and α(1) = α
SPENDING = {"pocock": _pocock, "obrien_fleming": _obrien_fleming}


@dataclass(frozen=True)
class SequentialDesign:
    """Looks at ``batch, 2·batch, …`` pairs up to ``max_pairs`` (the last look is ``max_pairs``),
    two-sided ``alpha`` spent by ``spending`` (a key of :data:`SPENDING`)."""

    batch: int = 5
    max_pairs: int = 60
    alpha: float = 0.05
    spending: str = "pocock"

    def __post_init__(self) -> None:
        if self.batch < 2:
            raise ValueError(f"batch must be >= 2 pairs (a t interval needs 2), not {self.batch}")
        if self.max_pairs < self.batch:
            raise ValueError(f"max_pairs ({self.max_pairs}) must be >= batch ({self.batch})")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")
        if self.spending not in SPENDING:
            raise ValueError(f"unknown spending {self.spending!r}; choose from {', '.join(SPENDING)}")

    def looks(self) -> list[int]:
        """The numbers of pairs at which the rule looks."""
        out = list(range(self.batch, self.max_pairs, self.batch))
        return [*out, self.max_pairs]

    def look_alphas(self) -> list[float]:
        """α_k of each look: the spending function's increments (they sum to ``alpha``)."""
        f = SPENDING[self.spending]
        cum = [f(n / self.max_pairs, self.alpha) for n in self.looks()]
        cum[-1] = self.alpha
        return [c - p for c, p in zip(cum, [0.0, *cum[:-1]], strict=True)]

    def describe(self) -> str:
        return (f"group-sequential, repeated 95%-family CIs: looks every {self.batch} pairs up to "
                f"{self.max_pairs}, α = {self.alpha} spent by the Lan-DeMets {self.spending} "
                "function (union bound)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SequentialDesign:
        return cls(**{k: d[k] for k in ("batch", "max_pairs", "alpha", "spending") if k in d})


@dataclass(frozen=True)
class Look:
    """One look: ``n`` pairs, its repeated CI at ``level`` and the verdict of that CI."""

    n: int
    level: float
    ci: tuple[float, float]
    verdict: str


@dataclass(frozen=True)
class Decision:
    """Where a row stands: the looks made, whether it ``stopped`` (decided or at the cap), the
    ``reason`` in words, the verdict and CI of the last look, and ``next_n`` (pairs needed for the
    next look; None once stopped)."""

    looks: tuple[Look, ...]
    stopped: bool
    reason: str
    verdict: str
    ci: tuple[float, float]
    next_n: int | None


#: a look's repeated CI: the t interval of its first ``n`` differences at the look's level
repeated_ci = t_interval


def decide(diffs: Sequence[float], design: SequentialDesign, paper_diff: float | None) -> Decision:
    """Run the design's looks over ``diffs`` (paired differences GAL − baseline **in seed
    order**; the look at ``n`` uses the first ``n``) and stop at the first decided verdict
    (anything but "inconclusive" or "" from :func:`gal_suite.stats.paired_verdict` against
    ``paper_diff``) or at ``max_pairs``."""
    looks: list[Look] = []
    for n, a_k in zip(design.looks(), design.look_alphas(), strict=True):
        if len(diffs) < n:
            ci = looks[-1].ci if looks else (math.nan, math.nan)
            verdict = looks[-1].verdict if looks else "inconclusive"
            return Decision(tuple(looks), False,
                            f"running: {len(diffs)} pairs, next look at {n}", verdict, ci, n)
        level = 1.0 - a_k
        ci = repeated_ci(diffs[:n], level)
        verdict = paired_verdict(ci, paper_diff)
        looks.append(Look(n, level, ci, verdict))
        if verdict not in ("", "inconclusive"):
            return Decision(tuple(looks), True, f"decided at look {len(looks)} (n = {n} pairs)",
                            verdict, ci, None)
    last = looks[-1]
    return Decision(tuple(looks), True, f"cap reached (n = {last.n} pairs), undecided",
                    last.verdict, last.ci, None)
