"""The environment of ``benchmarks/gpu_check.sh`` (see :mod:`benchmarks.gpu_check`): the
commit's provenance (restored from a git bundle when ``.git`` did not travel), the wheels of the
packages the machine lacks, the machine's versions (``--env-info``) and the generated data of the
``prep`` step (``--prep``). Standard library only at the top level.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any


# --------------------------------------------------------------------------- provenance
def _git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          timeout=120, check=check).stdout.strip()


def git_provenance(repo: Path, bundle: Path | None, *, dry_run: bool = False) -> dict[str, Any]:
    """``{"commit", "dirty", "source", "note"}`` of ``repo``.

    ``source`` is ``repo`` (a working git repository), ``bundle`` (no usable ``.git``: the
    repository was initialised from ``bundle``'s HEAD with a mixed reset, so ``dirty`` compares
    the files present with that commit) or ``none`` (commit and dirty ``unknown``). ``results/``
    is left out of ``dirty`` as :func:`gal_suite.records.git_info` does. With ``dry_run`` nothing is
    changed: the note says what would be done.
    """
    def state(source: str, note: str) -> dict[str, Any]:
        commit = _git(repo, "rev-parse", "HEAD")
        porcelain = _git(repo, "status", "--porcelain", "--", ".", ":(exclude)results")
        return {"commit": commit, "dirty": bool(porcelain), "source": source, "note": note,
                "dirty_files": porcelain.splitlines()[:20]}

    try:
        top = Path(_git(repo, "rev-parse", "--show-toplevel"))
        if top.resolve() == repo.resolve():
            if bundle is None or not bundle.is_file() or dry_run:
                return state("repo", "the repository's own .git")
            # the bundle names the commit the files were sent from; a .git found here may be
            # older (a copy made earlier): compare the files with the bundle's commit instead
            _git(repo, "fetch", "-q", str(bundle.resolve()), "HEAD")
            _git(repo, "reset", "-q", "FETCH_HEAD")
            return state("repo+bundle", f"the .git here, reset (mixed) to {bundle.name}'s HEAD: "
                                        "dirty = the files here differ from that commit")
    except (OSError, subprocess.SubprocessError):
        pass
    if bundle is None or not bundle.is_file():
        return {"commit": "unknown", "dirty": "unknown", "source": "none",
                "note": f"no git repository at {repo} and no bundle ({bundle}): commit unknown"}
    if dry_run:
        return {"commit": "unknown", "dirty": "unknown", "source": "bundle (dry run: not restored)",
                "note": f"would run git init + fetch {bundle} HEAD + reset (mixed) in {repo}"}
    try:
        dotgit = repo / ".git"
        aside = None
        if dotgit.exists() or dotgit.is_symlink():  # e.g. a worktree's .git file pointing nowhere
            aside = f".git.unusable.{os.getpid()}"
            dotgit.rename(repo / aside)
        _git(repo, "init", "-q")
        if aside is not None:  # kept for inspection, not part of the tree
            with open(repo / ".git" / "info" / "exclude", "a") as f:
                f.write(f"/{aside}\n")
        # contents decide; modes and line endings may not survive the copy to this machine
        _git(repo, "config", "core.fileMode", "false")
        _git(repo, "config", "core.autocrlf", "false")
        _git(repo, "fetch", "-q", str(bundle.resolve()), "HEAD")
        _git(repo, "reset", "-q", "FETCH_HEAD")
        return state("bundle", f"initialised from {bundle.name} (mixed reset: dirty = the files "
                               f"here differ from that commit; file modes ignored)")
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", "") or str(e)
        return {"commit": "unknown", "dirty": "unknown", "source": "none",
                "note": f"restoring from {bundle} failed: {err.strip()[:300]}"}


# --------------------------------------------------------------------------- wheels
def install_wheels(wheels: Path, target: Path, python: str) -> dict[str, Any]:
    """``pip install --no-index --no-deps --target target wheels/*.whl``; if pip itself is
    missing, the wheels are unpacked (a wheel is a zip of its installed files)."""
    files = sorted(glob.glob(str(wheels / "*.whl")))
    if not files:
        return {"ok": False, "note": f"no wheels in {wheels}", "wheels": []}
    target.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
           "--disable-pip-version-check", "--target", str(target), *files]
    names = [Path(f).name for f in files]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.SubprocessError) as e:
        return {"ok": False, "how": "pip", "note": str(e), "wheels": names}
    if out.returncode == 0:
        return {"ok": True, "how": "pip", "wheels": names}
    note = out.stderr.strip()[-500:]
    if "No module named pip" not in note:  # pip refused (e.g. a wheel for another Python)
        return {"ok": False, "how": "pip", "note": note, "wheels": names}
    for f in files:
        with zipfile.ZipFile(f) as z:
            z.extractall(target)
    return {"ok": True, "how": "unzipped (this Python has no pip)", "wheels": names}


# --------------------------------------------------------------------------- helper modes
def env_info() -> dict[str, Any]:
    import platform

    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_count=torch.cuda.device_count(), capability=f"{p.major}.{p.minor}",
                   memory_gib=round(p.total_memory / 2**30, 1))
    for mod in ("torchvision", "timm", "transformers", "pytorch_optimizer", "pycocotools", "numpy",
                "scipy", "pandas"):
        try:
            from importlib import metadata

            out[mod] = metadata.version(mod.replace("_", "-") if mod == "pytorch_optimizer" else mod)
        except Exception:  # noqa: BLE001 - a version we cannot read is recorded as such
            out[mod] = "not installed"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        out["driver"] = smi.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["driver"] = None
    return out


def _write_class_images(args: tuple[Path, int, int, int, int]) -> None:
    import numpy as np
    from PIL import Image

    root, cls, n, size, seed = args
    d = root / f"n{cls:08d}"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, cls])
    base = rng.integers(0, 256, 3)
    for i in range(n):
        img = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{cls}_{i}.JPEG", quality=90)


def prep(data: Path, per_class: int, classes: int = 1000, size: int = 64) -> dict[str, Any]:
    """ImageNet-shaped data (an ImageFolder tree of ``classes`` wnid-like folders, ``per_class``
    JPEGs each in ``train/`` and one in ``val/``; the Table III config decodes them to 256 px) and
    a randomly initialised timm ResNet-50 state dict as DETR's backbone weights."""
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.monotonic()
    root = data / "imagenet"
    done = root / "COMPLETE"
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        jobs = [(root / split, c, n, size, seed) for split, n, seed in
                (("train", per_class, 0), ("val", 1, 1)) for c in range(classes)]
        with ProcessPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
            list(pool.map(_write_class_images, jobs, chunksize=32))
        done.write_text(json.dumps({"classes": classes, "per_class": per_class, "size": size}))
    weights = data / "resnet50_random_init.pth"
    if not weights.is_file():
        import timm
        import torch

        torch.manual_seed(0)
        torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), weights)
    return {"imagenet": str(root), "train_images": classes * per_class, "val_images": classes,
            "detr_backbone_weights": str(weights), "seconds": round(time.monotonic() - t0, 1)}
