"""Image datasets for the classification tasks (Sec. V-A: CIFAR-10/100; Tables I-III).

Real loading code only, pointed at data by the config (``data.root`` / ``data.archive``):

* ``cifar10`` / ``cifar100``: :class:`torchvision.datasets.CIFAR10` / ``CIFAR100`` (the official
  python pickles; downloaded into ``data.root`` on a machine with internet);
* ``imagefolder``: any :class:`torchvision.datasets.ImageFolder` tree ``<root>/<split>/<class>/*``,
  or a ``.tar.gz`` archive of one (unpacked once into the cache), e.g. the CIFAR-10 JPEG copy or
  Tiny-ImageNet-100 (resized to 32 px as the CIFAR-100 stand-in).

Every split is decoded once into a uint8 tensor ``[N, 3, H, W]`` and cached outside the
repository (``$GAL_CACHE`` or ``~/.cache/gal``; the key holds the archive's sha256 and the
resize), so no JPEG is decoded per epoch. Augmentation works on whole batches of tensors
(:class:`TensorLoader`: random crop with reflect padding, horizontal flip, drawn from one seeded
generator so that a baseline and a GAL arm of the same seed see the same batches; optionally the
per-sample random-resized crop, RandAugment and random erasing of :mod:`experiments.augment`
(Table III), seeded from the same generator). Archives, the cache folder and the decoding of
one image are in :mod:`experiments.image_files`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from experiments.augment import TensorAugment
from experiments.image_files import (
    DataError,
    ImageSet,
    cache_dir,
    decode_image,
    sha256_file,
    unpack,
)

__all__ = [
    "DataError",
    "ImageSet",
    "TensorLoader",
    "cache_dir",
    "decode_image",
    "load_split",
    "sha256_file",
]


# --------------------------------------------------------------------------- formats
def _cifar(kind: str, root: Path, split: str, download: bool) -> ImageSet:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if kind == "cifar10" else CIFAR100
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except RuntimeError as e:
        raise DataError(
            f"{cls.__name__} not found under {root} ({e}). Fix: set data.root to the folder that "
            f"holds '{cls.base_folder}/' (the official python archive), or set "
            f"data.allow_download=true on a machine with internet."
        ) from None
    except Exception as e:  # corrupt pickle
        raise DataError(f"{cls.__name__} under {root} cannot be read ({type(e).__name__}: {e}); "
                        f"delete '{root / cls.base_folder}' and download it again.") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes),
                    f"{cls.__name__}({root})")


def _find_split(top: Path, split: str) -> Path:
    """``<top>/<split>`` or ``<top>/<one folder>/<split>`` (archives hold one top folder)."""
    if (top / split).is_dir():
        return top / split
    hits = sorted(p for p in top.glob(f"*/{split}") if p.is_dir())
    if len(hits) == 1:
        return hits[0]
    raise DataError(f"no '{split}' folder under {top} (expected <root>/{split}/<class>/<images>). "
                    f"Fix: data.splits names the train/test folders (e.g. test: val for "
                    f"Tiny-ImageNet).")


def _decode_folder(folder: Path, size: int | None) -> ImageSet:
    """Decode an ImageFolder tree to uint8 tensors in memory."""
    from torchvision.datasets import ImageFolder

    try:
        ds = ImageFolder(str(folder), loader=lambda p: p)  # paths only; we decode below
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"{folder} is not an ImageFolder tree ({e}).") from None
    n = len(ds.samples)
    first = None
    out: torch.Tensor | None = None
    for i, (path, _) in enumerate(ds.samples):
        arr = decode_image(path, size)
        if out is None:
            first = arr.shape
            out = torch.empty((n, 3, arr.shape[0], arr.shape[1]), dtype=torch.uint8)
        if arr.shape != first:
            raise DataError(f"image {path} has size {arr.shape[:2]}, others {first[:2]}; set "
                            f"data.image_size to resize all images to one size.")
        out[i] = torch.from_numpy(arr).permute(2, 0, 1)
    if out is None:
        raise DataError(f"no images under {folder}")
    labels = torch.as_tensor([t for _, t in ds.samples], dtype=torch.int64)
    return ImageSet(out, labels, list(ds.classes), str(folder))


def load_split(data: dict[str, Any], split: str) -> ImageSet:
    """Load split ``"train"`` or ``"test"`` as the config's ``data`` section describes it.

    Keys: ``format`` (cifar10 | cifar100 | imagefolder), ``root`` (folder), ``archive``
    (.tar.gz of an ImageFolder tree; used when ``root`` is null), ``sha256`` (expected checksum
    of the archive, or null), ``splits`` ({train: <folder>, test: <folder>}), ``image_size``
    (resize on decode, or null), ``allow_download`` (CIFAR only), ``storage`` (``memory``, the
    default, or ``memmap``: decoded once into a memory-mapped file, :mod:`experiments.image_store`,
    with ``decode_workers`` processes).
    """
    fmt = data.get("format")
    root = Path(os.path.expandvars(str(data["root"]))).expanduser() if data.get("root") else None
    if fmt in ("cifar10", "cifar100"):
        if root is None:
            raise DataError(f"data.root is not set for {fmt}; set it to the folder for the "
                            f"torchvision {fmt.upper()} archive.")
        return _cifar(fmt, root, split, bool(data.get("allow_download", False)))
    if fmt != "imagefolder":
        raise DataError(f"unknown data.format {fmt!r}; choose cifar10, cifar100 or imagefolder")
    size = data.get("image_size")
    folder_name = (data.get("splits") or {}).get(split, split)
    if root is not None:
        key_src = hashlib.sha256(str(root.resolve()).encode()).hexdigest()
        if not root.is_dir():
            raise DataError(f"data.root {root} is not a folder. Fix: point it at an ImageFolder "
                            f"tree, or set data.root: null and data.archive to a .tar.gz.")
        top = root
    else:
        if not data.get("archive"):
            raise DataError("neither data.root nor data.archive is set; set one of them.")
        archive = Path(os.path.expandvars(str(data["archive"]))).expanduser()
        top, key_src = unpack(archive, data.get("sha256"))
    if data.get("storage", "memory") == "memmap":  # too large for memory (ImageNet): a mapped file
        from experiments.image_store import memmap_split

        return memmap_split(_find_split(top, folder_name), size, data.get("decode_workers"))
    if data.get("storage", "memory") != "memory":
        raise DataError(f"unknown data.storage {data.get('storage')!r}; choose memory or memmap")
    cache = cache_dir() / "tensors" / f"{key_src[:16]}-{folder_name}-{size or 'orig'}.pt"
    if root is None and cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            return ImageSet(blob["images"], blob["labels"], list(blob["classes"]), str(cache))
        except Exception:  # a corrupt cache entry is rebuilt
            cache.unlink(missing_ok=True)
    ds = _decode_folder(_find_split(top, folder_name), size)
    if root is None:  # archives are immutable (sha-keyed); folders may change, so no cache
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"images": ds.images, "labels": ds.labels, "classes": ds.classes}, tmp)
        os.replace(tmp, cache)
    return ds


def check_pair(train: ImageSet, test: ImageSet, num_classes: int,
               key: str = "datasets.<name>.num_classes") -> None:
    """The checks a table relies on: same classes in both splits, labels in range (``key``: the
    config key of ``num_classes``, named in the error)."""
    if train.classes != test.classes:
        only_tr = sorted(set(train.classes) - set(test.classes))[:5]
        only_te = sorted(set(test.classes) - set(train.classes))[:5]
        raise DataError(
            f"class mismatch between train ({len(train.classes)} classes, {train.source}) and "
            f"test ({len(test.classes)} classes, {test.source}); only in train: {only_tr}, only "
            f"in test: {only_te}. Fix: both splits must hold the same class folders.")
    for name, ds in (("train", train), ("test", test)):
        lo, hi = int(ds.labels.min()), int(ds.labels.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(f"{name} labels span [{lo}, {hi}] but {key} is {num_classes}; "
                            f"set {key} to {len(ds.classes)} (e.g. --set {key}={len(ds.classes)}).")


# --------------------------------------------------------------------------- batches
class TensorLoader:
    """Batches from an in-memory :class:`ImageSet`, normalised and augmented on tensors.

    Every random draw (order, crop offsets, flips, the seeds of ``augment``) comes from
    ``generator``, so two loaders seeded alike yield identical batches (the paired design of
    baseline and GAL arms). With ``rank``/``world`` each process takes its slice of every global
    batch (DDP; ``augment`` runs on that slice only, with the draws of the global batch).
    Evaluation with ``crop_pct`` < 1 resizes to ``floor(resize / crop_pct)`` and takes the
    central ``resize`` square (timm's ImageNet evaluation, on the square-resized image).
    """

    def __init__(
        self,
        ds: ImageSet,
        batch_size: int,
        *,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        generator: torch.Generator | None = None,
        pad: int = 0,
        flip: bool = False,
        resize: int | None = None,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        rank: int = 0,
        world: int = 1,
        augment: TensorAugment | None = None,
        crop_pct: float = 1.0,
    ) -> None:
        self.ds, self.batch_size, self.train = ds, int(batch_size), train
        self.generator = generator or torch.Generator()
        self.pad, self.flip, self.resize = int(pad), bool(flip), resize
        self.drop_last, self.device = drop_last, torch.device(device)
        self.channels_last, self.rank, self.world = channels_last, rank, world
        self.augment = augment if train else None
        self.crop_pct = float(crop_pct)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.images = ds.images
        if train and self.pad:
            self.images = F.pad(ds.images.float(), (pad,) * 4, mode="reflect").to(torch.uint8)

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _crop(self, idx: torch.Tensor) -> torch.Tensor:
        if not (self.train and self.pad):
            return self.images[idx]
        h, w = self.ds.images.shape[-2:]
        shifts = torch.randint(0, 2 * self.pad + 1, (idx.numel(), 2), generator=self.generator)
        out = torch.empty((idx.numel(), 3, h, w), dtype=torch.uint8)
        codes = shifts[:, 0] * (2 * self.pad + 1) + shifts[:, 1]
        for code in codes.unique().tolist():
            sel = (codes == code).nonzero().squeeze(1)
            dy, dx = divmod(code, 2 * self.pad + 1)
            out[sel] = self.images[idx[sel], :, dy:dy + h, dx:dx + w]
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.ds)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        aug = self.augment
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            # every draw is made for the global batch, in this order, whatever the rank
            x = self._crop(idx) if self.train and self.pad else None
            flip = (torch.rand(idx.numel(), generator=self.generator) < 0.5
                    if self.train and self.flip else None)
            seeds = aug.seeds(idx.numel(), self.generator) if aug is not None else None
            y = self.ds.labels[idx]
            if self.world > 1:  # this rank's slice of the global batch
                idx, x, flip, y, seeds = (None if t is None else t.tensor_split(self.world)[self.rank]
                                          for t in (idx, x, flip, y, seeds))
            if x is None:
                x = self.images[idx]
            if flip is not None:
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            if aug is not None and seeds is not None:
                x = aug.uint8(x, seeds[:, 0])
            x = x.to(self.device, non_blocking=True).float()
            x = (x - self.mean.to(self.device)) / self.std.to(self.device)
            if not self.train and self.crop_pct < 1.0:
                x = self._center_crop(x)
            elif self.resize and x.shape[-1] != self.resize:
                x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear",
                                  align_corners=False)
            if aug is not None and seeds is not None:
                x = aug.erase(x, seeds[:, 1])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)

    def _center_crop(self, x: torch.Tensor) -> torch.Tensor:
        size = int(self.resize or x.shape[-1])
        scale = int(math.floor(size / self.crop_pct))
        if x.shape[-1] != scale or x.shape[-2] != scale:
            x = F.interpolate(x, size=(scale, scale), mode="bilinear", align_corners=False)
        top = (scale - size) // 2
        return x[..., top:top + size, top:top + size]
