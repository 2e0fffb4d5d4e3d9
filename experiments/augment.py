"""Per-sample augmentation on image tensors for the ImageNet recipe of Table III (Sec. V-B; the
authors' timm script: ``--aa rand-m9-mstd0.5 --reprob 0.2 --remode pixel``, random-resized crop),
composed from :mod:`torchvision.transforms.v2` ops.

Reproducible and paired: :meth:`TensorAugment.seeds` draws two seeds per sample of the *global*
batch from the loader's generator; each sample's ops then run under
``torch.random.fork_rng`` seeded with its seed. So the arms of a seed (baseline, GAL) see the
same augmentations, a DDP rank augments only its own slice yet gets exactly the draws a single
process would, and the global torch RNG (dropout, drop-path) is left untouched.

What differs from timm's pipeline (``timm.data.create_transform``) that the authors used:

* random-resized crop: from the decoded image, which the data loader has already resized to a
  square (``data.image_size``), not from the original JPEG; bilinear (timm: bilinear or bicubic
  at random);
* RandAugment: torchvision's 14 ops (with Identity; timm's 15 have Invert and SolarizeAdd
  instead) and their magnitude ranges. Magnitude ``m`` is ``m / 10`` of each op's maximum as in
  timm (levels out of 10: ``num_magnitude_bins=101``, bin ``round(10 m)``; torchvision's default
  31 bins would make m9 only 0.3 of the maximum). As in timm, each of ``num_ops`` op slots is
  applied with probability ``op_prob`` (0.5) with its magnitude drawn from N(m, mstd) clipped
  to [0, 10] (``mstd0.5``); affine fill = timm's mean pixel (124, 116, 104);
* random erasing: ``v2.RandomErasing(value="random")`` on the normalised float image: one box
  with probability p, area in (0.02, 1/3), log-uniform aspect in (0.3, 1/0.3), per-pixel N(0, 1)
  values, i.e. timm's ``mode='pixel'``, ``max_count=1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2

__all__ = ["TensorAugment", "augment_from_settings"]

#: timm's RandAugment fill for the affine ops (its ImageNet mean pixel)
TIMM_FILL = (124, 116, 104)


class TensorAugment:
    """Per-sample random-resized crop and RandAugment on uint8 ``[N, 3, H, W]`` tensors, and
    random erasing on normalised float tensors (see the module docstring).

    Args:
        crop_size: output size of the random-resized crop, or None for no crop.
        crop_scale, crop_ratio: its area fraction and aspect-ratio ranges.
        ra_ops: RandAugment op slots per image (0 = off); ``ra_magnitude`` (0..10),
            ``ra_std`` (Gaussian jitter of the magnitude), ``ra_prob`` (probability of each slot).
        erase_prob: random-erasing probability per image (0 = off).
    """

    def __init__(self, *, crop_size: int | None = None,
                 crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), ra_ops: int = 0,
                 ra_magnitude: float = 9.0, ra_std: float = 0.5, ra_prob: float = 0.5,
                 erase_prob: float = 0.0) -> None:
        self.crop_size = crop_size
        self.ra_ops, self.ra_magnitude = int(ra_ops), float(ra_magnitude)
        self.ra_std, self.ra_prob = float(ra_std), float(ra_prob)
        self.erase_prob = float(erase_prob)
        self._crop = None if crop_size is None else v2.RandomResizedCrop(
            (int(crop_size), int(crop_size)), scale=tuple(crop_scale), ratio=tuple(crop_ratio),
            interpolation=InterpolationMode.BILINEAR, antialias=True)
        self._erase = v2.RandomErasing(p=self.erase_prob, scale=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3),
                                       value="random") if self.erase_prob > 0 else None
        self._ra: dict[int, v2.RandAugment] = {}

    @property
    def on_uint8(self) -> bool:
        """Whether anything runs on the uint8 images (crop or RandAugment)."""
        return self._crop is not None or self.ra_ops > 0

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, 2]`` per-sample seeds (column 0: crop + RandAugment, column 1: erasing)."""
        return torch.randint(0, 2**62, (n, 2), generator=generator)

    def _randaugment(self, level: int) -> v2.RandAugment:
        if level not in self._ra:
            self._ra[level] = v2.RandAugment(num_ops=1, magnitude=level, num_magnitude_bins=101,
                                             interpolation=InterpolationMode.BILINEAR,
                                             fill=list(TIMM_FILL))
        return self._ra[level]

    def _one(self, img: torch.Tensor) -> torch.Tensor:
        if self._crop is not None:
            img = self._crop(img)
        for _ in range(self.ra_ops):
            if float(torch.rand(())) >= self.ra_prob:
                continue
            m = self.ra_magnitude
            if self.ra_std > 0:
                m = float(torch.normal(torch.tensor(m), torch.tensor(self.ra_std)))
            m = min(10.0, max(0.0, m))
            img = self._randaugment(int(round(10 * m)))(img)
        return img

    def uint8(self, x: torch.Tensor, seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Crop and RandAugment each uint8 image of ``x`` under its seed."""
        if not self.on_uint8:
            return x
        out = []
        for img, s in zip(x, torch.as_tensor(seeds).tolist(), strict=True):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(s))
                out.append(self._one(img))
        if not out:
            size = self.crop_size or x.shape[-1]
            return x.new_empty((0, x.shape[1], size, size))
        return torch.stack(out)

    def erase(self, x: torch.Tensor, seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Random erasing of each normalised float image of ``x`` under its seed (in place)."""
        if self._erase is None:
            return x
        for i, s in enumerate(torch.as_tensor(seeds).tolist()):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(s))
                x[i] = self._erase(x[i])
        return x


def augment_from_settings(train: Mapping[str, Any]) -> TensorAugment | None:
    """The run's :class:`TensorAugment` from its ``train`` settings, or None when every option is
    off or absent (the CIFAR profiles: their loaders then draw exactly as before).

    Keys: ``random_resized_crop`` (bool; output size ``image_size``), ``crop_scale``,
    ``crop_ratio``, ``randaugment`` ({num_ops, magnitude, magnitude_std, op_prob}; num_ops 0 =
    off), ``random_erasing`` (probability).
    """
    rrc = bool(train.get("random_resized_crop", False))
    ra = dict(train.get("randaugment") or {})
    ops = int(ra.get("num_ops", 0) or 0)
    erase = float(train.get("random_erasing", 0.0) or 0.0)
    if not (rrc or ops or erase):
        return None
    if rrc and not train.get("image_size"):
        raise ValueError("train.random_resized_crop needs train.image_size (the crop's output size)")
    if rrc and int(train.get("pad", 0) or 0):
        raise ValueError("train.random_resized_crop replaces the padded random crop: set train.pad: 0")
    if not 0.0 <= erase <= 1.0 or not math.isfinite(erase):
        raise ValueError(f"train.random_erasing {erase}: a probability in [0, 1]")
    return TensorAugment(
        crop_size=int(train["image_size"]) if rrc else None,
        crop_scale=train.get("crop_scale", (0.08, 1.0)), crop_ratio=train.get("crop_ratio", (3 / 4, 4 / 3)),
        ra_ops=ops, ra_magnitude=float(ra.get("magnitude", 9.0)),
        ra_std=float(ra.get("magnitude_std", 0.0)), ra_prob=float(ra.get("op_prob", 0.5)),
        erase_prob=erase)
