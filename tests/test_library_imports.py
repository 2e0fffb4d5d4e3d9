"""The GAL library needs torch alone: ``import gal`` (adjusters, step, optimizer helpers) loads
none of the suite's packages."""

from __future__ import annotations

import subprocess
import sys

SUITE = ("timm", "pytorch_optimizer", "transformers", "pandas", "scipy", "matplotlib",
         "statsmodels", "yaml", "sklearn", "pycocotools")


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
