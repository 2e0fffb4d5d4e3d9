"""Hand-made COCO splits for the data tests of Table IV (Sec. V-B): random JPEGs and a COCO
json written by hand (``test_detr_data.py``, ``test_detr_loader.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_jpeg(path: Path, w: int, h: int, seed: int, mode: str = "RGB") -> None:
    """A random-pixel JPEG of ``w`` x ``h`` (seeded) at ``path``."""
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, quality=95)


def coco_split(root: Path, images: list[tuple[int, int, int]], anns: list[dict],
          cats: list[dict] | None = None, write: bool = True) -> tuple[Path, Path]:
    """A hand-made COCO split: ``images`` as (id, width, height); returns (img_dir, ann)."""
    img_dir = root / "imgs"
    img_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for image_id, w, h in images:
        name = f"{image_id:04d}.jpg"
        if write:
            write_jpeg(img_dir / name, w, h, image_id)
        entries.append({"id": image_id, "file_name": name, "width": w, "height": h})
    for k, a in enumerate(anns):
        a.setdefault("id", k + 1)
        a.setdefault("iscrowd", 0)
        a.setdefault("category_id", 3)
    cats = cats if cats is not None else [{"id": 7, "name": "a"}, {"id": 3, "name": "b"}]
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": entries, "annotations": anns, "categories": cats}))
    return img_dir, ann


def cxcywh(x: float, y: float, w: float, h: float, width: int, height: int) -> list[float]:
    """A COCO (x, y, w, h) box normalised to (cx, cy, w, h) in [0, 1]."""
    return [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]
