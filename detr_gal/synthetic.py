"""A synthetic COCO-format detection dataset: coloured shapes on textured backgrounds.

The cpu profile of Table IV (Sec. V-B: DETR with and without GAL on the predicted box features)
cannot train a DETR on MS COCO; it trains a small one on this data instead, which the real COCO
loading code (:mod:`detr_gal.coco_data`, pycocotools, COCOeval) reads exactly like COCO 2017.

Each image holds 1..``max_objects`` flat-coloured shapes (square, circle, triangle, cross), with
sides of 12-40 % of the image, that never touch one another (their masks are kept
``_GAP`` pixels apart; their boxes may overlap), on a smooth random gradient with optional
stripes and pixel noise. Every annotation's ``bbox`` is the tight box of the drawn shape's pixels.
Everything is drawn with numpy from ``seed``: the same arguments give the same bytes.

Layout written: ``<out>/{train2017,val2017}/<id:012d>.jpg`` (JPEG quality 95) and
``<out>/annotations/instances_{train,val}2017.json``; the generator's parameters are stored in
the json's ``info`` so that an existing, complete dataset with the same parameters is reused.

CLI: ``python -m detr_gal.synthetic --out DIR --train N --val M --size S --seed K``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CATEGORIES", "ShapeObject", "make_shapes_dataset", "mask_box", "render_sample",
           "shape_mask"]

#: COCO category ids (starting at 1, as in COCO) and names.
CATEGORIES: tuple[tuple[int, str], ...] = ((1, "square"), (2, "circle"), (3, "triangle"),
                                           (4, "cross"))
_KINDS = {name: cid for cid, name in CATEGORIES}
_GAP = 2               # pixels kept free between two shapes' masks
_MIN_SIDE = 0.12       # shape side as a fraction of the image side
_MAX_SIDE = 0.40
_MIN_CONTRAST = 120    # L1 distance (0..765) between a shape's colour and the mean background
_FORMAT = 1            # bump when the drawing changes, so old datasets are regenerated
_SPLITS = {"train": (0, 0), "val": (1, 1_000_000)}  # split -> (rng stream, first image id - 1)


@dataclass(frozen=True)
class ShapeObject:
    """One drawn shape: COCO ``category_id``, tight ``bbox`` [x, y, w, h] (pixels), ``area``."""

    category_id: int
    bbox: tuple[int, int, int, int]
    area: int


def shape_mask(kind: str, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """Boolean ``[size, size]`` mask of a shape drawn inside the square ``(x0, y0, side, side)``.

    A square fills the box; a circle is the disk inscribed in it (pixel centres within
    ``side / 2`` of the box centre); a triangle has its apex at the top centre and its base on
    the bottom edge; a cross is two bars of width ``max(2, side // 3)`` through the centre.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown shape {kind!r}; choose from {', '.join(_KINDS)}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # pixel centres
    inside = (xx >= x0) & (xx < x0 + side) & (yy >= y0) & (yy < y0 + side)
    if kind == "square":
        return inside
    cx, cy, r = x0 + side / 2, y0 + side / 2, side / 2
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if kind == "triangle":  # half-width (y - y0) / 2: apex at (cx, y0), base on the bottom edge
        return inside & (np.abs(xx - cx) <= (yy - y0) / 2)
    t = max(2, side // 3) / 2
    return inside & ((np.abs(xx - cx) <= t) | (np.abs(yy - cy) <= t))


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box ``(x, y, w, h)`` in pixels of a non-empty boolean mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth two-colour gradient, stripes half of the time, plus pixel noise (uint8 HxWx3)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    c0, c1 = rng.uniform(0, 255, (2, 3))
    theta = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(theta) + yy * np.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    bg = c0 * (1 - t[..., None]) + c1 * t[..., None]
    if rng.random() < 0.5:
        phi, freq, amp = rng.uniform(0, np.pi), rng.uniform(3, 8), rng.uniform(10, 30)
        bg = bg + amp * np.sin(2 * np.pi * freq * (xx * np.cos(phi) + yy * np.sin(phi)))[..., None]
    bg = bg + rng.normal(0.0, 6.0, bg.shape)
    return np.clip(np.rint(bg), 0, 255).astype(np.uint8)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square (numpy only)."""
    h, w = mask.shape
    padded = np.pad(mask, r)
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def _colour(rng: np.random.Generator, bg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A random colour far from the background under ``mask`` and unequal to every pixel there."""
    under = bg[mask].astype(np.int64)
    mean = under.mean(0)
    for _ in range(50):
        col = rng.integers(0, 256, 3)
        if np.abs(col - mean).sum() >= _MIN_CONTRAST and not (under == col).all(1).any():
            return col.astype(np.uint8)
    col = np.where(mean < 128, 255, 0)  # the far corner of the colour cube
    return col.astype(np.uint8)


def render_sample(rng: np.random.Generator, size: int, max_objects: int
                  ) -> tuple[np.ndarray, np.ndarray, list[ShapeObject]]:
    """Draw one image: returns ``(image, background, objects)``, both images uint8 HxWx3.

    Shapes keep ``_GAP`` pixels between their masks, so each one's pixels (those that differ
    from ``background``) form one connected blob whose tight box is its ``bbox``.
    """
    bg = _background(rng, size)
    img = bg.copy()
    taken = np.zeros((size, size), dtype=bool)
    lo, hi = max(2, round(_MIN_SIDE * size)), max(3, round(_MAX_SIDE * size))
    objects: list[ShapeObject] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _try in range(30):
            kind = CATEGORIES[int(rng.integers(len(CATEGORIES)))][1]
            side = int(rng.integers(lo, hi + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            mask = shape_mask(kind, x0, y0, side, size)
            if not (_dilate(mask, _GAP) & taken).any():
                break
        else:
            break  # the image is full
        img[mask] = _colour(rng, bg, mask)
        taken |= mask
        objects.append(ShapeObject(_KINDS[kind], mask_box(mask), int(mask.sum())))
    return img, bg, objects


def _params(n_train: int, n_val: int, size: int, seed: int, max_objects: int) -> dict[str, int]:
    return {"n_train": n_train, "n_val": n_val, "size": size, "seed": seed,
            "max_objects": max_objects, "format": _FORMAT}


def _ann_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}2017.json"


def _is_complete(root: Path, params: dict[str, int]) -> bool:
    """``root`` holds both splits written with ``params``, every listed image present."""
    for split in _SPLITS:
        try:
            d = json.loads(_ann_path(root, split).read_text())
            if d["info"].get("params") != params:
                return False
            if not all((root / f"{split}2017" / im["file_name"]).is_file() for im in d["images"]):
                return False
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
    return True


def _write_split(root: Path, split: str, n: int, params: dict[str, int]) -> None:
    from PIL import Image

    stream, id0 = _SPLITS[split]
    folder = root / f"{split}2017"
    folder.mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        rng = np.random.default_rng([params["seed"], stream, i])
        img, _, objects = render_sample(rng, params["size"], params["max_objects"])
        image_id = id0 + i + 1
        name = f"{image_id:012d}.jpg"
        Image.fromarray(img).save(folder / name, quality=95, subsampling=0)
        images.append({"id": image_id, "file_name": name, "width": params["size"],
                       "height": params["size"]})
        for ob in objects:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": ob.category_id,
                         "bbox": list(ob.bbox), "area": ob.area, "iscrowd": 0})
    d = {
        "info": {"description": f"synthetic shapes ({split}), detr_gal.synthetic",
                 "version": str(_FORMAT), "generator": "detr_gal.synthetic", "params": params},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"}
                       for cid, name in CATEGORIES],
    }
    path = _ann_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))


def make_shapes_dataset(out: Path, n_train: int, n_val: int, size: int = 128, seed: int = 0,
                        max_objects: int = 4) -> Path:
    """Write (or reuse) the shapes dataset at ``out``; returns ``out``.

    Built in a temporary sibling folder and renamed into place, so ``out`` is either absent or
    complete. An existing ``out`` written with the same parameters is reused as it is; one
    written by this generator with other parameters is replaced; any other folder is refused.
    """
    out = Path(out)
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train={n_train}, n_val={n_val}: both splits need at least 1 image")
    if size < 32:
        raise ValueError(f"size={size} is too small for the shapes; use size >= 32")
    if max_objects < 1:
        raise ValueError(f"max_objects={max_objects}: use at least 1 object per image")
    params = _params(int(n_train), int(n_val), int(size), int(seed), int(max_objects))
    if _is_complete(out, params):
        return out
    if out.exists():
        try:
            ours = json.loads(_ann_path(out, "train").read_text())["info"]["generator"]
        except (OSError, ValueError, KeyError, TypeError):
            ours = None
        if ours != "detr_gal.synthetic" and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a dataset written by "
                                  f"detr_gal.synthetic; choose another --out or delete it.")
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write_split(tmp, "train", params["n_train"], params)
        _write_split(tmp, "val", params["n_val"], params)
        if out.exists():
            if _is_complete(out, params):  # another process finished first
                shutil.rmtree(tmp)
                return out
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(out, params):
            return out
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: write the dataset and print its folder."""
    p = argparse.ArgumentParser(prog="python -m detr_gal.synthetic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--train", type=int, required=True, help="number of train2017 images")
    p.add_argument("--val", type=int, required=True, help="number of val2017 images")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-objects", type=int, default=4, help="objects per image, at most")
    a = p.parse_args(argv)
    try:
        path = make_shapes_dataset(a.out, a.train, a.val, a.size, a.seed, a.max_objects)
    except (ValueError, FileExistsError) as e:
        p.error(str(e))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
