"""Reading one COCO split (:mod:`detr_gal.coco_data`): the annotation json checked and indexed
with pycocotools, DETR's targets of one image (crowd, degenerate and empty boxes dropped, the rest
clipped and normalised), and the JPEGs decoded, resized and placed top-left with their pixel
masks."""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.image_data import DataError

__all__ = ["check_ids", "decode_all", "decode_image", "detr_boxes", "pixel_masks", "read_coco", "resized"]


# --------------------------------------------------------------------------- json
def read_coco(ann: Path) -> Any:
    """The annotation file as a pycocotools ``COCO`` index, its structure checked first."""
    from pycocotools.coco import COCO

    try:
        with open(ann, encoding="utf-8") as f:
            d = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"annotation file {ann} is not valid JSON ({type(e).__name__}: {e}); "
                        f"fetch it again or point the config at the right file.") from None
    missing = ([k for k in ("images", "annotations", "categories")
                if not isinstance(d.get(k), list)] if isinstance(d, dict) else ["all"])
    if missing:
        raise DataError(f"annotation file {ann} is not in COCO detection format (no list "
                        f"{', '.join(missing)}; expected the keys images, annotations and "
                        f"categories, as in instances_val2017.json).")
    need = {"images": ("id", "file_name", "width", "height"),
            "annotations": ("id", "image_id", "category_id", "bbox"),
            "categories": ("id", "name")}
    for key, fields in need.items():
        for entry in d[key]:
            lacking = [k for k in fields if not isinstance(entry, dict) or k not in entry]
            if lacking:
                raise DataError(f"annotation file {ann}: an entry of '{key}' lacks "
                                f"{', '.join(lacking)} ({str(entry)[:120]}); the file is not in "
                                f"COCO detection format.")
    for key in ("images", "annotations", "categories"):
        ids = [e["id"] for e in d[key]]
        if len(set(map(repr, ids))) != len(ids):
            seen: set[str] = set()
            dup = sorted({repr(i) for i in ids if repr(i) in seen or seen.add(repr(i))})
            raise DataError(f"annotation file {ann}: {len(dup)} duplicate id(s) in '{key}': "
                            f"{', '.join(dup[:10])}. Ids must be unique (COCOeval matches by id); "
                            f"fix the file.")
    coco = COCO()
    coco.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def check_ids(coco: Any, ann: Path) -> None:
    """Every annotation names a listed category and a listed image."""
    bad_cat = sorted({a["category_id"] for a in coco.dataset["annotations"]} - set(coco.cats))
    if bad_cat:
        raise DataError(f"annotation file {ann}: {len(bad_cat)} category id(s) used by "
                        f"annotations are not in its categories list: {bad_cat[:10]}. The file "
                        f"is malformed; fix it (or fetch it again) rather than train on wrong "
                        f"labels.")
    bad_img = sorted({a["image_id"] for a in coco.dataset["annotations"]} - set(coco.imgs))
    if bad_img:
        raise DataError(f"annotation file {ann}: annotations refer to {len(bad_img)} image id(s) "
                        f"not in its images list: {bad_img[:10]}. The file is malformed.")


def detr_boxes(anns: list[dict[str, Any]], width: int, height: int, label_of: Mapping[int, int],
           skipped: dict[str, int], ann: Path) -> dict[str, torch.Tensor]:
    """DETR targets of one image: crowd/degenerate/empty boxes dropped, the rest clipped."""
    labels, boxes = [], []
    for a in sorted(anns, key=lambda a: a["id"]):
        if a.get("iscrowd", 0):
            skipped["crowd"] += 1
            continue
        b = a["bbox"]
        if (not isinstance(b, (list, tuple)) or len(b) != 4
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in b)):
            raise DataError(f"annotation file {ann}: annotation {a['id']} has bbox {b!r}; "
                            f"expected [x, y, width, height] of 4 finite numbers.")
        x, y, w, h = (float(v) for v in b)
        if w <= 0 or h <= 0:
            skipped["degenerate_box"] += 1
            continue
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if x1 <= x0 or y1 <= y0:
            skipped["empty_after_clip"] += 1
            continue
        labels.append(label_of[a["category_id"]])
        boxes.append(((x0 + x1) / 2 / width, (y0 + y1) / 2 / height,
                      (x1 - x0) / width, (y1 - y0) / height))
    return {"class_labels": torch.tensor(labels, dtype=torch.int64),
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}


# --------------------------------------------------------------------------- pixels
def resized(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the longer side ``size``, aspect kept."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_image(path: Path, width: int, height: int, size: int) -> np.ndarray:
    """RGB uint8 HxWx3 of one JPEG, resized to the longer side ``size``; checks its size."""
    from PIL import Image, UnidentifiedImageError

    new = resized(width, height, size)
    try:
        with Image.open(path) as im:
            if im.size != (width, height):
                raise DataError(f"image {path} is {im.size[0]}x{im.size[1]} but the annotation "
                                f"file says {width}x{height}; the boxes would not match. Use the "
                                f"images the annotation file was made for.")
            im.draft("RGB", new)  # JPEG: decode at a reduced DCT scale >= the target size
            arr = np.array(im.convert("RGB").resize(new, Image.BILINEAR), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image {path} does not decode ({type(e).__name__}: {e}); replace it "
                        f"with a good copy (or remove it from the annotation file).") from None
    return arr


def decode_all(coco: Any, ids: list[int], img_dir: Path, size: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 3, S, S] (top-left, zero padded) and the resized sizes [N, 2] (h, w)."""
    images = torch.zeros((len(ids), 3, size, size), dtype=torch.uint8)
    sizes = torch.zeros((len(ids), 2), dtype=torch.int64)
    for i, image_id in enumerate(ids):
        info = coco.imgs[image_id]
        arr = decode_image(img_dir / info["file_name"], int(info["width"]), int(info["height"]),
                            size)
        h, w = arr.shape[:2]
        images[i, :, :h, :w] = torch.from_numpy(arr).permute(2, 0, 1)
        sizes[i] = torch.tensor((h, w))
    return images, sizes


def pixel_masks(sizes: torch.Tensor, size: int) -> torch.Tensor:
    """DETR's ``pixel_mask`` [N, S, S] (True = real pixel) of images of the resized ``sizes``."""
    ar = torch.arange(size)
    return ((ar.view(1, -1, 1) < sizes[:, 0].view(-1, 1, 1))
            & (ar.view(1, 1, -1) < sizes[:, 1].view(-1, 1, 1)))
