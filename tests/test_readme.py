"""The README's "GAL in your own training loop" example runs as written and trains."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    m = re.search(r"<!-- example:start -->\s*```python\n(.*?)```\s*<!-- example:end -->", text, re.S)
    assert m, "README must contain the training-loop example between example markers"
    return m.group(1)


def test_readme_example_runs_and_learns():
    code = _example()
    assert len(code.strip().splitlines()) <= 12
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    stats = ns["stats"]
    # ten classes: chance-level cross-entropy is ln(10) = 2.30; 100 full-batch steps must beat it
    assert float(stats.loss) < 1.5
    assert 0.0 <= float(stats.accept_rate) <= 1.0


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make reproduce" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
