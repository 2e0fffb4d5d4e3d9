"""Provenance of a run record: the code (git commit and dirty flag), the packages, the device,
the machine and how the run was launched (``provenance.json``, :mod:`gal_suite.records`)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from typing import Any

__all__ = ["VERSION_PACKAGES", "cpu_model", "git_info", "infer_device", "launch_info", "machine_info",
           "now_iso", "package_versions"]

#: import name -> distribution name of the packages whose versions a record holds
VERSION_PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "sklearn": "scikit-learn",
    "timm": "timm",
}


def now_iso() -> str:
    """Local time with its UTC offset, to the second (ISO 8601)."""
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def git_info() -> tuple[str, bool | str]:
    """(commit, dirty) of the git repository containing the cwd; ("unknown", "unknown") without git.

    ``dirty`` ignores ``results/`` (what runs write), so a reproduction that rewrites records is
    not flagged as running modified code.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
        commit = git("-C", top, "rev-parse", "HEAD")
        porcelain = git("-C", top, "status", "--porcelain", "--", ".", ":(exclude)results")
        return commit or "unknown", bool(porcelain)
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run's numbers depend on, and Python's."""
    from importlib import metadata

    out: dict[str, str] = {}
    for key, dist in VERSION_PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    out["python"] = platform.python_version()
    return out


def infer_device() -> str:
    """The device a run used when the runner did not say: the current CUDA device, else cpu."""
    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "cpu"
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return "cpu"


def launch_info() -> dict[str, Any]:
    """How the run was launched, for provenance: the launcher (``GAL_LAUNCHER``, set by
    ``experiments.launch``; ``"direct"`` otherwise), its job id (``GAL_JOB_ID``), Slurm's job and
    array ids when present, the pool worker (``GAL_WORKER``), ``CUDA_VISIBLE_DEVICES``, torchrun's
    world size (``WORLD_SIZE``, DDP processes) and torch's intra-op thread count (a run's result
    depends on it)."""
    env = os.environ
    info: dict[str, Any] = {"launcher": env.get("GAL_LAUNCHER", "direct")}
    for key, var in (("job_id", "GAL_JOB_ID"), ("slurm_job_id", "SLURM_JOB_ID"),
                     ("slurm_array_job_id", "SLURM_ARRAY_JOB_ID"),
                     ("slurm_array_task_id", "SLURM_ARRAY_TASK_ID"), ("worker", "GAL_WORKER"),
                     ("cuda_visible_devices", "CUDA_VISIBLE_DEVICES")):
        if env.get(var):
            info[key] = env[var]
    if env.get("WORLD_SIZE"):
        info["world_size"] = int(env["WORLD_SIZE"])
    if "torch" in sys.modules:
        info["num_threads"] = sys.modules["torch"].get_num_threads()
    return info


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``; else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a run's last digits depend on besides the code (see README, cross-machine
    differences): the CPU model, the GPU's name when CUDA is available, torch's intra-op thread
    count and the instruction set torch's CPU kernels (oneDNN/BLAS) were dispatched to
    (``torch.backends.cpu.get_cpu_capability()``, e.g. ``AVX512``)."""
    info: dict[str, Any] = {"cpu_model": cpu_model()}
    torch = sys.modules.get("torch")
    if torch is None:
        return info
    info["torch_num_threads"] = torch.get_num_threads()
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        info["cpu_capability"] = "unknown"
    try:
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except RuntimeError:
        pass
    return info
