"""COCO 2017 detection data for Table IV (Sec. V-B: DETR with and without GAL).

Real loading code only: the annotation json is read with :class:`pycocotools.coco.COCO` (the
same file later feeds COCOeval), the JPEGs with PIL. A split is decoded once into a
:class:`CocoSet`: uint8 images ``[N, 3, S, S]``, each resized so that its longer side is ``S``
(aspect kept), placed top-left and zero-padded, with the ``pixel_mask`` of transformers' DETR
(True = real pixel) and DETR's targets (``class_labels``; ``boxes`` as normalised
(cx, cy, w, h) relative to the image's own, unpadded, width and height, as in the original
DETR). Annotations are cleaned as DETR's ``ConvertCocoPolysToMask`` does: crowd boxes dropped,
boxes clipped to the image and dropped when empty; degenerate json boxes are dropped too. Every
drop is counted in :attr:`CocoSet.skipped`; a malformed file is an error, never a silent skip
(so are duplicate ids, and a split whose boxes are all dropped). Train and validation must list
the same categories (:func:`check_splits`): a label is an index into that list, so a category
missing from one split would score every later class as the wrong one.

The decoded tensors are cached under ``$GAL_CACHE`` (or ``~/.cache/gal``), keyed on the
annotation file's sha256, the image folder, the size and ``max_images``, so a second load does
not decode a JPEG. All of a split is held in memory: meant for COCO subsets and small ``S``
(the cpu profile), not for the full 118k training images at 800 px.

:class:`DetectionLoader` batches a :class:`CocoSet` (ImageNet normalisation, optional
horizontal flip) with every random draw taken from one seeded generator, so that the baseline
and the GAL arm of one seed see the same batches. Reading the json and decoding the JPEGs is in
:mod:`detr_gal.coco_decode`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from detr_gal.coco_decode import check_ids, decode_all, detr_boxes, pixel_masks, read_coco
from experiments.image_files import DataError, cache_dir, sha256_file, unpack

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CocoSet", "DetectionLoader", "check_splits",
           "load_coco", "load_coco_split"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REPO = Path(__file__).resolve().parents[1]
_CACHE_FORMAT = 1
_SKIP_REASONS = ("crowd", "degenerate_box", "empty_after_clip")


@dataclasses.dataclass
class CocoSet:
    """One COCO split in memory (see the module docstring for the conventions)."""

    images: torch.Tensor          # uint8 [N, 3, S, S], top-left placed, zero padding
    masks: torch.Tensor           # bool [N, S, S], True = real pixel
    targets: list[dict[str, torch.Tensor]]  # "class_labels" int64 [k], "boxes" float32 [k, 4]
    image_ids: list[int]          # COCO image ids, ascending
    orig_sizes: torch.Tensor      # int64 [N, 2]: (height, width) of the original image
    cat_ids: list[int]            # contiguous label -> COCO category id
    cat_names: list[str]
    ann_file: str                 # the annotation json (for COCOeval)
    skipped: dict[str, int]       # dropped annotations by reason
    source: str

    def __len__(self) -> int:
        return len(self.image_ids)


# --------------------------------------------------------------------------- cache
def _cache_path(ann: Path, img_dir: Path, size: int, max_images: int | None) -> Path:
    key = json.dumps([_CACHE_FORMAT, sha256_file(ann), str(img_dir.resolve()),
                      img_dir.stat().st_mtime_ns, size, max_images])
    return cache_dir() / "coco" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"


def _check_kept(cs: CocoSet, ann: Path) -> CocoSet:
    """A split whose annotations were all dropped (degenerate, empty after clipping, crowd) has
    nothing to train or score on: an error naming the counts."""
    kept = sum(len(t["class_labels"]) for t in cs.targets)
    dropped = sum(cs.skipped.values())
    if kept == 0 and dropped > 0:
        why = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in cs.skipped.items() if v)
        raise DataError(f"annotation file {ann}: all {dropped} boxes of the {len(cs)} images were "
                        f"dropped ({why}); no box is left to train or score on. Check the bbox "
                        f"format ([x, y, width, height] in pixels of the listed image size).")
    return cs


def check_splits(train: CocoSet, val: CocoSet) -> None:
    """Train and validation list the same categories (ids and names, in the same order): a
    model's label k is ``train.cat_ids[k]`` and is scored as ``val.cat_ids[k]``."""
    if train.cat_ids == val.cat_ids and train.cat_names == val.cat_names:
        return
    tr = dict(zip(train.cat_ids, train.cat_names, strict=True))
    va = dict(zip(val.cat_ids, val.cat_names, strict=True))
    parts = []
    only_tr = [f"{i} {tr[i]!r}" for i in sorted(set(tr) - set(va))]
    only_va = [f"{i} {va[i]!r}" for i in sorted(set(va) - set(tr))]
    renamed = [f"{i} {tr[i]!r} vs {va[i]!r}" for i in sorted(set(tr) & set(va)) if tr[i] != va[i]]
    if only_tr:
        parts.append(f"only in train: {', '.join(only_tr[:10])}")
    if only_va:
        parts.append(f"only in validation: {', '.join(only_va[:10])}")
    if renamed:
        parts.append(f"named differently: {', '.join(renamed[:10])}")
    raise DataError(f"train ({train.ann_file}) and validation ({val.ann_file}) list different "
                    f"categories ({'; '.join(parts)}); a label would be scored as another class. "
                    f"Fix: give both annotation files the same 'categories' list.")


def _from_blob(blob: dict[str, Any], ann: Path, source: str) -> CocoSet:
    counts = blob["counts"].tolist()
    labels, boxes = blob["labels"].split(counts), blob["boxes"].split(counts)
    targets = [{"class_labels": c.clone(), "boxes": b.clone()}
               for c, b in zip(labels, boxes, strict=True)]
    return _check_kept(CocoSet(blob["images"], pixel_masks(blob["sizes"], blob["images"].shape[-1]),
                               targets, list(blob["image_ids"]), blob["orig_sizes"],
                               list(blob["cat_ids"]), list(blob["cat_names"]), str(ann),
                               dict(blob["skipped"]), source), ann)


# --------------------------------------------------------------------------- public
def load_coco(img_dir: str | os.PathLike[str], ann_file: str | os.PathLike[str], size: int, *,
              max_images: int | None = None) -> CocoSet:
    """Decode a COCO split: images of ``img_dir`` listed in ``ann_file``, longer side ``size``.

    Images are taken in ascending id order (the first ``max_images`` when given), images
    without boxes kept with empty targets. Labels are contiguous, in ascending category id
    order (``cat_ids[label]`` is the COCO id). Raises :class:`DataError` for a missing or
    malformed annotation file, a missing image folder or image, an undecodable image, or an
    annotation whose category is not listed.
    """
    ann, img_dir = Path(ann_file), Path(img_dir)
    if not isinstance(size, int) or size < 1:
        raise DataError(f"image size {size!r} is not a positive integer; set data.size.")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise DataError(f"max_images {max_images!r} must be a positive integer or null.")
    if not ann.is_file():
        raise DataError(f"COCO annotation file {ann} does not exist. Fix: point the config "
                        f"(data.train_ann / data.val_ann) at instances_<split>2017.json.")
    if not img_dir.is_dir():
        raise DataError(f"COCO image folder {img_dir} does not exist. Fix: point the config "
                        f"(data.train_images / data.val_images) at the folder of the JPEGs.")
    cache = _cache_path(ann, img_dir, size, max_images)
    if cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
        except Exception:  # a corrupt cache entry is rebuilt
            cache.unlink(missing_ok=True)
        else:
            return _from_blob(blob, ann, str(cache))
    coco = read_coco(ann)
    check_ids(coco, ann)
    cats = sorted(coco.cats.values(), key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(cats)}
    ids = sorted(coco.imgs)[:max_images]
    if not ids:
        raise DataError(f"annotation file {ann} lists no images; point the config at the "
                        f"annotation file of a non-empty split.")
    missing = [coco.imgs[i]["file_name"] for i in ids
               if not (img_dir / coco.imgs[i]["file_name"]).is_file()]
    if missing:
        raise DataError(f"{len(missing)} of the {len(ids)} images listed in {ann} are missing "
                        f"from {img_dir}, e.g. {', '.join(missing[:5])}. Fix: point the image "
                        f"folder at the split this annotation file describes, or unpack it "
                        f"completely.")
    images, sizes = decode_all(coco, ids, img_dir, size)
    skipped = dict.fromkeys(_SKIP_REASONS, 0)
    targets = [detr_boxes(coco.imgToAnns.get(i, []), int(coco.imgs[i]["width"]),
                      int(coco.imgs[i]["height"]), label_of, skipped, ann) for i in ids]
    orig = torch.tensor([[int(coco.imgs[i]["height"]), int(coco.imgs[i]["width"])] for i in ids],
                        dtype=torch.int64).reshape(-1, 2)
    blob = {"format": _CACHE_FORMAT, "images": images, "sizes": sizes,
            "counts": torch.tensor([len(t["class_labels"]) for t in targets], dtype=torch.int64),
            "labels": torch.cat([t["class_labels"] for t in targets] or [torch.zeros(0).long()]),
            "boxes": torch.cat([t["boxes"] for t in targets] or [torch.zeros(0, 4)]),
            "image_ids": [int(i) for i in ids], "orig_sizes": orig,
            "cat_ids": [int(c["id"]) for c in cats], "cat_names": [str(c["name"]) for c in cats],
            "skipped": skipped}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, cache)
    return _from_blob(blob, ann, f"COCO({ann}, {img_dir}, size={size})")


def _expand(value: Any, key: str) -> Path:
    """A config path: ``$GAL_SHARED_DATA`` (default ``<repo>/../shared/data``) and ``~``
    expanded, relative paths taken from the repository root (as for Tables I-III)."""
    text = str(value)
    shared = os.environ.get("GAL_SHARED_DATA") or str((REPO / ".." / "shared" / "data").resolve())
    text = text.replace("${GAL_SHARED_DATA}", shared).replace("$GAL_SHARED_DATA", shared)
    text = os.path.expanduser(os.path.expandvars(text))
    if "$" in text:
        raise DataError(f"data.{key} = {value!r} names an environment variable that is not set; "
                        f"export it or write the path out.")
    p = Path(text)
    return p if p.is_absolute() else REPO / p


def _top(folder: Path, images: str, split: str) -> Path:
    """``folder`` or its one sub-folder that holds ``images`` (archives hold one top folder)."""
    if (folder / images).is_dir():
        return folder
    hits = sorted(p.parent for p in folder.glob(f"*/{images}") if p.is_dir())
    if len(hits) == 1:
        return hits[0]
    raise DataError(f"no '{images}' folder under {folder} (expected the COCO layout "
                    f"<root>/{images}, <root>/annotations). Fix: set data.{split}_images to the "
                    f"image folder's name.")


def load_coco_split(data: Mapping[str, Any], split: str) -> CocoSet:
    """Load split ``"train"`` or ``"val"`` as the config's ``data`` section describes it.

    Keys: ``root`` (a folder with the COCO layout) or ``archive`` (a .tar.gz of one, unpacked
    once into the cache; ``sha256`` its expected checksum, or null); ``size`` (longer image
    side); ``train_images`` / ``val_images`` (default ``train2017`` / ``val2017``);
    ``train_ann`` / ``val_ann`` (default ``annotations/instances_<split>2017.json``, relative to
    the root unless absolute); ``max_images`` (optional: the first N images by id).
    """
    if split not in ("train", "val"):
        raise DataError(f"unknown split {split!r}; choose train or val")
    if data.get("size") is None:
        raise DataError("data.size is not set; set it to the longer image side in pixels "
                        "(800 in the paper's DETR setup).")
    images = str(data.get(f"{split}_images") or f"{split}2017")
    ann_name = str(data.get(f"{split}_ann") or f"annotations/instances_{split}2017.json")
    if data.get("root"):
        root = _expand(data["root"], "root")
        if not root.is_dir():
            raise DataError(f"data.root {root} is not a folder. Fix: point it at a folder with "
                            f"the COCO layout, or set data.root: null and data.archive to a "
                            f".tar.gz of one.")
    elif data.get("archive"):
        root, _ = unpack(_expand(data["archive"], "archive"), data.get("sha256"))
    else:
        raise DataError("neither data.root nor data.archive is set; set data.root to a COCO "
                        "folder (train2017/, val2017/, annotations/) or data.archive to a "
                        ".tar.gz of one.")
    top = _top(root, images, split)
    ann = Path(ann_name) if Path(ann_name).is_absolute() else top / ann_name
    max_images = data.get("max_images")
    return load_coco(top / images, ann, int(data["size"]),
                     max_images=None if max_images is None else int(max_images))


# --------------------------------------------------------------------------- batches
class DetectionLoader:
    """Batches ``(pixel_values, pixel_mask, labels, index)`` from a :class:`CocoSet`.

    ``pixel_values`` float32 ``[B, 3, S, S]`` normalised with the ImageNet mean/std, padding 0;
    ``pixel_mask`` int64 ``[B, S, S]`` (1 = real pixel); ``labels`` the DETR targets (copies);
    ``index`` int64 ``[B]`` positions in the set. The order (``shuffle``) and the flips
    (``hflip``: p = 0.5 per image, mirrored inside its unpadded region, ``cx -> 1 - cx``) are
    drawn from :attr:`generator`, seeded with ``seed``; save ``generator.get_state()`` at an
    epoch boundary to resume. With ``rank``/``world`` each process takes its slice of every
    global batch (DDP), all draws made for the global batch.
    """

    def __init__(self, data: CocoSet, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 hflip: bool = False, drop_last: bool = False,
                 device: torch.device | str = "cpu", rank: int = 0, world: int = 1,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be at least 1")
        if not 0 <= rank < world:
            raise ValueError(f"rank={rank}, world={world}: need 0 <= rank < world")
        self.data, self.batch_size = data, int(batch_size)
        self.shuffle, self.hflip, self.drop_last = bool(shuffle), bool(hflip), bool(drop_last)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.device, self.rank, self.world = torch.device(device), int(rank), int(world)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.widths = data.masks[:, 0, :].sum(-1)  # row 0 is always real (top-left placement)

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _flip(self, x: torch.Tensor, widths: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Mirror each flagged image inside its first ``width`` columns."""
        cols = torch.arange(x.shape[-1]).view(1, -1)
        w = widths.view(-1, 1)
        src = torch.where(flip.view(-1, 1) & (cols < w), w - 1 - cols, cols)
        return x.gather(-1, src.view(x.shape[0], 1, 1, -1).expand_as(x))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]],
                                         torch.Tensor]]:
        n = len(self.data)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            flip = (torch.rand(idx.numel(), generator=self.generator) < 0.5 if self.hflip
                    else torch.zeros(idx.numel(), dtype=torch.bool))
            if self.world > 1:
                idx, flip = idx.tensor_split(self.world)[self.rank], flip.tensor_split(
                    self.world)[self.rank]
            x = self.data.images[idx]
            if flip.any():
                x = self._flip(x, self.widths[idx], flip)
            mask = self.data.masks[idx]
            x = (x.to(self.device).float() - self.mean.to(self.device)) / self.std.to(self.device)
            x = x * mask.to(self.device).unsqueeze(1)
            labels = []
            for i, f in zip(idx.tolist(), flip.tolist(), strict=True):
                t = self.data.targets[i]
                boxes = t["boxes"].clone()
                if f:
                    boxes[:, 0] = 1 - boxes[:, 0]
                labels.append({"class_labels": t["class_labels"].to(self.device),
                               "boxes": boxes.to(self.device)})
            yield x, mask.to(self.device, torch.int64), labels, idx.to(self.device)
