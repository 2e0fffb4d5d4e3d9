"""The GAL library needs torch alone: ``import gal`` (adjusters, step, optimizer helpers) loads
none of the suite's packages, and the library never imports the experiment suite (``gal_suite``):
dependencies point one way, suite -> library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SUITE = ("timm", "pytorch_optimizer", "transformers", "pandas", "scipy", "matplotlib",
         "statsmodels", "yaml", "sklearn", "pycocotools", "gal_suite")
SRC = Path(__file__).resolve().parents[1] / "src"


def test_import_gal_loads_torch_alone():
    code = ("import sys, gal; from gal import GradientAdjuster, build_optimizer; "
            f"print(','.join(m for m in {SUITE!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_optional_optimizers_still_build():
    import torch

    from gal import build_optimizer

    p = [torch.nn.Parameter(torch.zeros(2))]
    assert type(build_optimizer("adabound", p, 1e-3)).__name__ == "AdaBound"
    assert type(build_optimizer("lookahead_sgd", p, 0.1)).__name__ == "Lookahead"
    assert type(build_optimizer("rmsproptf", p, 0.1)).__name__ == "RMSpropTF"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_library_never_imports_the_suite():
    """No module of gal imports gal_suite (not even lazily), and the suite's modules are not
    reachable under gal."""
    for path in sorted((SRC / "gal").rglob("*.py")):
        bad = {m for m in _imports(path) if m == "gal_suite" or m.startswith("gal_suite.")}
        assert not bad, (path.name, bad)
    for moved in ("records", "stats", "config", "cli", "tables", "figures", "vocab", "paper_values"):
        assert not (SRC / "gal" / f"{moved}.py").exists() and not (SRC / "gal" / moved).exists()
