"""Shared test setup: keep tests on few threads (2-core CI) and make tests/ helpers importable."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture
def gal_cache(tmp_path, monkeypatch):
    """A private decode-once image cache per test and an empty in-process data cache."""
    from experiments import classification as C

    monkeypatch.setenv("GAL_CACHE", str(tmp_path / "cache"))
    C._DATA_CACHE.clear()
    yield
    C._DATA_CACHE.clear()


@pytest.fixture(scope="module")
def analysis_runs(tmp_path_factory: pytest.TempPathFactory):
    """Synthetic run records for the tests of Figs. 6-8 (``fig_analysis_records``)."""
    from fig_analysis_records import runs_fixture

    yield from runs_fixture(tmp_path_factory)


@pytest.fixture
def records_root(tmp_path, monkeypatch):
    """An empty runs root for hand-written records, with no git subprocess per record."""
    from gal_suite import records

    monkeypatch.setattr(records, "git_info", lambda: ("test", False))
    return tmp_path / "runs"
