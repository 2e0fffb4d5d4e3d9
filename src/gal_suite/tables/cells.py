"""Cell formatting shared by the table renderers: numbers, p-values, (t, p) pairs, the "—" of a
missing cell and LaTeX escaping of the tables' Unicode symbols."""

from __future__ import annotations

import math

__all__ = ["DASH", "fmt_frac_pct", "fmt_num", "fmt_p", "fmt_pct", "fmt_sec", "fmt_tp", "tex_escape"]

DASH = "—"


def fmt_num(x: float | None, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals, "—" if missing/non-finite, never "-0.00"."""
    if x is None or not math.isfinite(x):
        return DASH
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


def fmt_p(p: float | None) -> str:
    return DASH if p is None or not math.isfinite(p) else f"{p:.2e}"


def fmt_tp(t: float, p: float) -> str:
    if not (math.isfinite(t) and math.isfinite(p)):
        return DASH
    return f"({fmt_num(t, 2)}, {fmt_p(p)})"


def fmt_sec(x: float | None) -> str:
    return DASH if x is None or not math.isfinite(x) else f"{x:.3e}"


def fmt_pct(x: float | None, digits: int = 2) -> str:
    """Fraction -> signed percent (``0.031`` -> ``+3.10%``)."""
    if x is None or not math.isfinite(x):
        return DASH
    s = f"{100 * x:+.{digits}f}%"
    return s.replace("-", "−")


def fmt_frac_pct(x: float | None) -> str:
    """Non-negative fraction -> percent with enough digits for tiny bounds."""
    if x is None or not math.isfinite(x):
        return DASH
    p = 100 * x
    return f"{p:.4f}%" if abs(p) < 1 else f"{p:.1f}%"


_TEX_REPL = [
    ("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("_", r"\_"),
    ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"), ("—", "---"), ("−", "$-$"), ("α", r"$\alpha$"),
    ("Δ", r"$\Delta$"), ("↓", r"$\downarrow$"), ("↑", r"$\uparrow$"), ("²", r"$^2$"),
    ("✓", r"\checkmark{}"), ("✗", r"$\times$"), ("–", "--"),
]


def tex_escape(s: str) -> str:
    """Escape LaTeX specials and map the tables' Unicode symbols to math mode."""
    out = []
    for ch in str(s):
        for a, b in _TEX_REPL:
            if ch == a:
                out.append(b)
                break
        else:
            out.append(ch)
    return "".join(out)
