"""benchmarks/gpu_check.sh: its CPU-only dry run (every command it would run and the imports
they need, the training steps' configs resolved), its report collection, and the provenance it
restores from a git bundle when .git did not travel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check as G

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_lists_every_step_and_exits_0(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(tmp_path / "o")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    cmds = [ln for ln in out.stdout.splitlines() if ln.startswith("$ timeout")]
    text = "\n".join(cmds)
    for needle in ("-k cuda tests/test_core_step.py tests/test_gal_cost.py tests/test_cuda_graph.py",
                   "benchmarks/gal_cost.py --device cuda --compile",
                   "--table 1 --profile paper --dataset cifar10_jpeg",
                   "--methods baseline,gal,gal_alpha0", "model.pretrained=false",
                   "--methods gal+adjuster=normal",
                   "torch.distributed.run --standalone --nproc_per_node 1 -m experiments.classification --table 3",
                   "-m detr_gal.run --profile paper --models detr_r50", "--prep"):
        assert needle in text, needle
    assert len(cmds) == len(G.STEPS)
    for step in G.RUN_STEPS:
        assert f"# {step}: config resolves" in out.stdout, out.stdout[-3000:]
    assert "# imports: all found" in out.stdout
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


def test_unknown_step_is_one_error(capsys):
    assert G.main(["--only", "tabel1", "--dry-run"]) == 2
    assert "unknown step" in capsys.readouterr().err


def _commit_repo(path: Path) -> str:
    path.mkdir()
    (path / "a.txt").write_text("one\n")
    (path / "results").mkdir()
    (path / "results" / "r.txt").write_text("run\n")
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_provenance_from_a_bundle_is_honest(tmp_path):
    src = tmp_path / "src"
    commit = _commit_repo(src)
    bundle = tmp_path / "repo.bundle"
    subprocess.run(["git", "-C", str(src), "bundle", "create", str(bundle), "HEAD"], check=True,
                   capture_output=True)
    # the tree as sent: no .git; results/ changed (ignored), the code itself unchanged
    sent = tmp_path / "sent"
    shutil.copytree(src, sent, ignore=shutil.ignore_patterns(".git"))
    (sent / "results" / "new.json").write_text("{}")
    assert G.git_provenance(sent, None)["commit"] == "unknown"
    dry = G.git_provenance(sent, bundle, dry_run=True)
    assert dry["commit"] == "unknown" and not (sent / ".git").exists()
    got = G.git_provenance(sent, bundle)
    assert (got["commit"], got["dirty"], got["source"]) == (commit, False, "bundle")
    # a second look uses the restored repository; a changed file is reported as dirty
    (sent / "a.txt").write_text("two\n")
    again = G.git_provenance(sent, bundle)
    assert (again["commit"], again["dirty"], again["source"]) == (commit, True, "repo+bundle")
    assert G.git_provenance(sent, None)["source"] == "repo"
    # an older .git beside newer files (a copy made earlier): the bundle's commit decides
    (src / "a.txt").write_text("two\n")
    subprocess.run(["git", "-C", str(src), "commit", "-qam", "two"], check=True, capture_output=True)
    newer = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], check=True,
                           capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "-C", str(src), "bundle", "create", str(bundle), "HEAD"], check=True,
                   capture_output=True)
    got = G.git_provenance(sent, bundle)
    assert (got["commit"], got["dirty"]) == (newer, False)
    # a .git that points nowhere (a worktree's .git file) is set aside, not trusted
    other = tmp_path / "other"
    shutil.copytree(src, other, ignore=shutil.ignore_patterns(".git"))
    (other / ".git").write_text("gitdir: /nonexistent/worktrees/x\n")
    got = G.git_provenance(other, bundle)
    assert (got["commit"], got["dirty"]) == (newer, False)


def test_report_collects_run_records(tmp_path):
    root = tmp_path / "runs"
    rows = {"baseline": 1000.0, "gal": 990.0}
    for method, ips in rows.items():
        d = root / "table1/paper/cifar10_jpeg/sgd" / method / "seed-0"
        d.mkdir(parents=True)
        (d / "status.json").write_text(json.dumps({"status": "complete"}))
        (d / "metrics.json").write_text(json.dumps({"error_top1": 80.0, "val_loss": 2.2}))
        (d / "history.csv").write_text("epoch,train_loss,images_per_s,val_loss,val_error_top1\n"
                                       f"1,2.3,{ips},2.2,80.0\n")
        (d / "checkpoint.pt").write_bytes(b"x" * 100)
    t = G.summarize_runs(G.read_runs(root))["table1"]
    assert t["throughput"] == {"baseline": 1000.0, "gal": 990.0}
    assert t["time_overhead_pct_vs_baseline"] == {"gal": pytest.approx(100 * (1000 / 990 - 1), abs=0.01)}
    assert {r["group"] for r in t["runs"]} == {"baseline", "gal"}
    assert t["runs"][0]["first_epoch"]["val_loss"] == 2.2
    tar = G.tar_runs(root, tmp_path / "runs.tar.gz")
    assert tar["written"] and tar["files"] == 6  # checkpoints left out


def test_gpu_seed_batch_runs_the_cpu_profile_as_its_own_profile():
    """benchmarks/gpu_seed_batch.sh: Table I until decided on the cpu_cuda profile, whose
    settings are the cpu profile's except the device, autocast, memory layout and threads."""
    import subprocess

    from experiments.classification import config_for
    from gal_suite.config import load_config

    out = subprocess.run(["bash", "benchmarks/gpu_seed_batch.sh", "--dry-run"], capture_output=True,
                         text=True, check=True).stdout
    assert "--profile cpu_cuda --until-decided" in out and "--table 1" in out
    cpu, cuda = (load_config(config_for(1), p, {}) for p in ("cpu", "cpu_cuda"))
    assert cuda["device"] == "cuda" and cuda["train"]["amp"] is False
    assert cuda["train"]["channels_last"] is True
    for key in ("model", "optimizers", "datasets", "gal", "run", "seeds"):
        assert cuda[key] == cpu[key], key
    skip = {"amp", "channels_last"}
    assert {k: v for k, v in cuda["train"].items() if k not in skip} == {
        k: v for k, v in cpu["train"].items() if k not in skip}


def test_gpu_seed_batch_runs_each_task_on_its_cuda_profile():
    """WHAT=table1,analysis,table4,table4_controls: one command per item in order, each on a CUDA profile whose
    settings are the CPU profile's except the device, the scheduler's resources and autocast
    (off, as on the CPU); an unknown item is refused before anything runs."""
    import subprocess

    from detr_gal.run import CONFIG_PATH as DETR_CONFIG
    from experiments.classification import config_for
    from gal_suite.config import load_config

    env = {**os.environ, "WHAT": "table1,analysis,table4,table4_controls"}
    out = subprocess.run(["bash", "benchmarks/gpu_seed_batch.sh", "--dry-run"], capture_output=True,
                         text=True, check=True, env=env, cwd=REPO).stdout.splitlines()
    assert len(out) == 4
    assert "--table 1 --profile cpu_cuda --until-decided" in out[0]
    assert "--table ablation --profile analysis_cuda" in out[1]
    assert "-m detr_gal.run --profile cpu_cuda --until-decided" in out[2]
    assert "--methods gal_alpha0,gal_noise,gal_frozen_h" in out[3]
    old_way = subprocess.run(["bash", "benchmarks/gpu_seed_batch.sh", "--dry-run"], capture_output=True,
                             text=True, check=True, env={**os.environ, "TABLE": "2"}, cwd=REPO).stdout
    assert "--table 2 --profile cpu_cuda --until-decided" in old_way  # TABLE=N still works
    bad = subprocess.run(["bash", "benchmarks/gpu_seed_batch.sh", "--dry-run"], capture_output=True,
                         text=True, env={**os.environ, "WHAT": "table1,tabel4"}, cwd=REPO)
    assert bad.returncode == 2 and "unknown WHAT item 'tabel4'" in bad.stderr
    for path, cpu_name, cuda_name in ((config_for("ablation"), "analysis", "analysis_cuda"),
                                      (DETR_CONFIG, "cpu", "cpu_cuda")):
        cpu, cuda = load_config(path, cpu_name, {}), load_config(path, cuda_name, {})
        assert cuda["device"] == "cuda"
        assert cuda["train"].get("amp", False) is False
        for key in set(cpu) - {"device", "slurm", "train"}:
            assert cuda[key] == cpu[key], (cuda_name, key)
        assert {k: v for k, v in cuda["train"].items() if k != "amp"} == {
            k: v for k, v in cpu["train"].items() if k != "amp"}
