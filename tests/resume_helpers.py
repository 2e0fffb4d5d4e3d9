"""A killed run for the resume tests of the runners (tests/test_imagenet.py, tests/test_detr.py;
tests/ is on sys.path): the run stops where a kill after a checkpoint would leave it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def interrupt_at_epoch(runner: Any, spec: Any, cfg: dict, root: Path,
                       monkeypatch: pytest.MonkeyPatch, epoch: int = 2) -> None:
    """Run ``spec`` with ``runner`` (a module with ``run_one`` and ``train_one_epoch``, whose
    sixth argument is the epoch) in this process until ``epoch`` starts (a kill after the
    previous epoch's checkpoint)."""
    real = runner.train_one_epoch

    def stop(*args: Any, **kw: Any) -> Any:
        if args[5] == epoch:  # the epoch argument
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(runner, "train_one_epoch", stop)
    with pytest.raises(KeyboardInterrupt):
        runner.run_one(spec, cfg, root)
    monkeypatch.setattr(runner, "train_one_epoch", real)
