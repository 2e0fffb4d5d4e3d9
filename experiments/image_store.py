"""A decode-once, memory-mapped image store for ImageFolder trees too large for memory (Table III's
``paper`` profile: the 1.28M ImageNet training images at 256 x 256 are about 250 GB as uint8).

:func:`memmap_split` decodes a split once, with a pool of worker processes, into one uint8 file
``[N, 3, S, S]`` under the cache (``$GAL_CACHE`` or ``~/.cache/gal``; point it at a fast local
disk), and returns an :class:`~experiments.image_data.ImageSet` whose ``images`` tensor maps that
file (``torch.from_file``, shared): pages are read on demand and shared through the page cache by
every process of the node, so N torchrun processes use the memory of one copy at most. The
batches of :class:`~experiments.image_data.TensorLoader` index it exactly as an in-memory tensor.

The file is built by one process at a time (an exclusive ``flock`` on a lock file); the others
wait and then map the finished file. It is keyed on the folder, the sorted list of image files
with their sizes, and the size S; a half-written file is never used (the metadata that marks it
complete is written last, atomically).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

__all__ = ["memmap_split"]


def _listing(folder: Path) -> tuple[list[str], list[int], list[str]]:
    from torchvision.datasets import ImageFolder

    from experiments.image_files import DataError

    try:
        ds = ImageFolder(str(folder), loader=lambda p: p)
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"{folder} is not an ImageFolder tree ({e}).") from None
    return [p for p, _ in ds.samples], [t for _, t in ds.samples], list(ds.classes)


def _key(folder: Path, paths: Sequence[str], size: int) -> str:
    h = hashlib.sha256(f"{folder.resolve()}|{size}|{len(paths)}".encode())
    for p in paths:
        h.update(f"{os.path.relpath(p, folder)}:{os.path.getsize(p)}\n".encode())
    return h.hexdigest()[:16]


def _decode_chunk(args: tuple[str, int, int, Sequence[str], int]) -> None:
    """Decode ``paths`` into rows ``start..`` of the uint8 file ``dest`` of ``n`` images."""
    dest, n, start, paths, size = args
    from experiments.image_files import decode_image

    out = np.memmap(dest, dtype=np.uint8, mode="r+", shape=(n, 3, size, size))
    for i, p in enumerate(paths):
        out[start + i] = decode_image(p, size).transpose(2, 0, 1)
    out.flush()


def memmap_split(folder: Path, size: int | None, workers: int | None = None):  # -> ImageSet
    """The ImageFolder split ``folder`` resized to ``size`` x ``size``, decoded once into a
    memory-mapped file (see the module docstring); ``workers`` decoding processes (default: the
    CPUs of this process)."""
    from experiments.image_files import DataError, ImageSet, cache_dir

    if not size:
        raise DataError("data.storage: memmap needs data.image_size (every image is resized to one "
                        "size on decode); set it, e.g. 256 for ImageNet")
    size = int(size)
    paths, labels, classes = _listing(folder)
    if not paths:
        raise DataError(f"no images under {folder}")
    n = len(paths)
    base = cache_dir() / "memmap" / f"{_key(folder, paths, size)}-{folder.name}-{size}"
    data, meta = base.with_suffix(".u8"), base.with_suffix(".json")
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(base.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait here, then map its file
        if not meta.is_file():
            tmp = data.with_suffix(f".tmp{os.getpid()}")
            np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(n, 3, size, size)).flush()
            w = max(1, workers or len(os.sched_getaffinity(0)))
            step = -(-n // (w * 8))
            jobs = [(str(tmp), n, s, paths[s:s + step], size) for s in range(0, n, step)]
            try:
                if w == 1:
                    for j in jobs:
                        _decode_chunk(j)
                else:
                    with ProcessPoolExecutor(w) as pool:
                        list(pool.map(_decode_chunk, jobs))
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.replace(tmp, data)
            meta_tmp = meta.with_suffix(f".tmp{os.getpid()}")
            meta_tmp.write_text(json.dumps({"n": n, "size": size, "classes": classes, "labels": labels,
                                            "folder": str(folder)}))
            os.replace(meta_tmp, meta)  # written last: marks the file complete
    info = json.loads(meta.read_text())
    images = torch.from_file(str(data), shared=True, size=n * 3 * size * size, dtype=torch.uint8)
    return ImageSet(images.view(n, 3, size, size), torch.as_tensor(info["labels"], dtype=torch.int64),
                    list(info["classes"]), str(data))
