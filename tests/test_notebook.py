"""notebooks/explore_results.ipynb executes headless (nbclient) on a small Table V run set."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore_results.ipynb"


def test_notebook_runs_headless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from experiments import regression as reg

    root = tmp_path / "table5"
    tiny = {"datasets.diabetes.epochs": 3, "datasets.diabetes.batch_size": 128,
            "datasets.boston.epochs": 3, "datasets.boston.batch_size": 128}
    reg.run_table(profile="cpu", seeds=2, datasets=["boston", "diabetes"],
                  variants=["paper", "standardized"], methods=["baseline", "gal"], runs_root=root,
                  overrides=tiny, progress=False)
    # one failed run: the notebook must list it and not plot it
    reg.run_table(profile="cpu", seeds=[2], datasets=["diabetes"], variants=["paper"],
                  methods=["gal"], runs_root=root, overrides={**tiny, "train.lr": 1e6},
                  progress=False)
    monkeypatch.setenv("GAL_RUNS_ROOT", str(root))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert str(root) in text
    assert "17 run records: 16 complete, 1 failed/other" in text
    assert "figures: ['paper', 'standardized']" in text
