"""The GAL library alone: in a fresh virtualenv, ``pip install .`` (torch only, the exact torch of
constraints.txt) and the README's own-loop example runs. Slow (it builds a virtualenv), so it
runs where the package index serves torch (it skips, saying why, where pip cannot install)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_library_alone_runs_the_readme_example(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pins = [ln for ln in (REPO / "constraints.txt").read_text().splitlines() if ln.startswith("torch==")]
    (tmp_path / "c.txt").write_text("\n".join(pins) + "\n")
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q",
                           str(REPO), "-c", str(tmp_path / "c.txt")], capture_output=True, text=True)
    if inst.returncode != 0:
        pytest.skip(f"pip could not install the library here: {inst.stderr.strip()[-300:]}")
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout.lower()
    for suite_pkg in ("timm", "pandas", "scipy", "matplotlib", "pytorch_optimizer", "transformers"):
        assert f"{suite_pkg}==" not in listed.replace("-", "_"), suite_pkg
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- example:start -->\s*```python\n(.*?)```", readme, re.S).group(1)
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "accepted" in out.stdout and "|r|" in out.stdout
