"""Data side of Table IV (Sec. V-B, DETR + GAL): synthetic shapes, COCO loading, batches."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from coco_fixtures import coco_split, cxcywh, write_jpeg
from PIL import Image
from pycocotools.coco import COCO

from detr_gal import coco_data
from detr_gal.coco_data import load_coco, load_coco_split
from detr_gal.synthetic import main, make_shapes_dataset, mask_box, render_sample, shape_mask
from experiments.image_data import DataError, sha256_file

ROOT = Path(__file__).resolve().parents[1]
COCO_TINY_SHA = "04ac1e826adc0e461084652ff3287798ec4030158958737027e1a2a454360701"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("s") / "shapes", 6, 3, size=64, seed=3)


# --------------------------------------------------------------------------- synthetic
def test_shape_geometry_by_hand():
    sq = shape_mask("square", 5, 7, 10, 32)
    assert mask_box(sq) == (5, 7, 10, 10) and sq.sum() == 100 and sq[7:17, 5:15].all()
    disk = shape_mask("circle", 5, 7, 10, 32)
    assert mask_box(disk) == (5, 7, 10, 10)
    assert abs(int(disk.sum()) - np.pi * 25) < 8 and disk[12, 10] and not disk[7, 5]
    # triangle, apex up: the top row (half-width 0.25 px) holds no pixel centre, the bottom all 10
    tri = shape_mask("triangle", 5, 7, 10, 32)
    assert mask_box(tri) == (5, 8, 10, 9) and tri[16, 5:15].all()
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask("star", 0, 0, 4, 8)


@pytest.mark.parametrize("seed", range(6))
def test_annotated_boxes_are_tight_boxes_of_drawn_pixels(seed):
    from scipy import ndimage

    img, bg, objects = render_sample(np.random.default_rng(seed), 64, 4)
    changed = (img != bg).any(-1)
    comps, n = ndimage.label(changed, structure=np.ones((3, 3)))
    boxes = {(s[1].start, s[0].start, s[1].stop - s[1].start, s[0].stop - s[0].start)
             for s in ndimage.find_objects(comps)}
    assert 1 <= len(objects) <= 4 and n == len(objects)
    assert boxes == {ob.bbox for ob in objects}
    assert sum(ob.area for ob in objects) == changed.sum()
    assert min(min(ob.bbox[2], ob.bbox[3]) for ob in objects) >= 7  # ~12 % of 64 px


def test_shapes_dataset_iscoco_split(shapes):
    for split, n in (("train", 6), ("val", 3)):
        coco = COCO(str(shapes / "annotations" / f"instances_{split}2017.json"))
        assert len(coco.imgs) == n and sorted(coco.cats) == [1, 2, 3, 4]
        for image_id, info in coco.imgs.items():
            with Image.open(shapes / f"{split}2017" / info["file_name"]) as im:
                assert im.size == (64, 64) == (info["width"], info["height"])
            anns = coco.imgToAnns[image_id]
            assert 1 <= len(anns) <= 4
            for a in anns:
                x, y, w, h = a["bbox"]
                assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64 and w >= 7 and h >= 7
                assert a["iscrowd"] == 0 and 0 < a["area"] <= w * h


def test_shapes_dataset_deterministic_and_reused(tmp_path, shapes, capsys):
    again = make_shapes_dataset(tmp_path / "again", 6, 3, size=64, seed=3)
    for rel in ("annotations/instances_train2017.json", "annotations/instances_val2017.json",
                "train2017/000000000001.jpg", "val2017/000001000003.jpg"):
        assert (again / rel).read_bytes() == (shapes / rel).read_bytes(), rel
    ann = again / "annotations" / "instances_train2017.json"
    stamp = ann.stat().st_mtime_ns
    make_shapes_dataset(again, 6, 3, size=64, seed=3)
    assert ann.stat().st_mtime_ns == stamp  # reused, not rewritten
    assert main(["--out", str(again), "--train", "6", "--val", "3", "--size", "64",
                 "--seed", "4"]) == 0
    assert capsys.readouterr().out.strip() == str(again)
    assert ann.read_bytes() != (shapes / "annotations/instances_train2017.json").read_bytes()
    assert json.loads(ann.read_text())["info"]["params"]["seed"] == 4
    assert not list(tmp_path.glob("*.tmp*"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a dataset"):
        make_shapes_dataset(tmp_path / "mine", 2, 1, size=64)


# --------------------------------------------------------------------------- load_coco
def test_load_coco_boxes_labels_pixels(gal_cache, shapes):
    ann = shapes / "annotations" / "instances_train2017.json"
    ds = load_coco(shapes / "train2017", ann, 48)
    raw = json.loads(ann.read_text())
    assert len(ds) == 6 and ds.images.shape == (6, 3, 48, 48) and ds.images.dtype == torch.uint8
    assert ds.image_ids == list(range(1, 7)) and ds.masks.all()
    assert ds.cat_ids == [1, 2, 3, 4] and ds.cat_names == ["square", "circle", "triangle", "cross"]
    assert ds.orig_sizes.tolist() == [[64, 64]] * 6 and ds.ann_file == str(ann)
    assert ds.skipped == {"crowd": 0, "degenerate_box": 0, "empty_after_clip": 0}
    for i, image_id in enumerate(ds.image_ids):
        anns = sorted((a for a in raw["annotations"] if a["image_id"] == image_id),
                      key=lambda a: a["id"])
        want = torch.tensor([cxcywh(*a["bbox"], 64, 64) for a in anns])
        t = ds.targets[i]
        assert t["boxes"].dtype == torch.float32 and t["class_labels"].dtype == torch.int64
        torch.testing.assert_close(t["boxes"], want)
        assert t["class_labels"].tolist() == [a["category_id"] - 1 for a in anns]
    with Image.open(shapes / "train2017" / "000000000002.jpg") as im:
        ref = np.array(im.convert("RGB").resize((48, 48), Image.BILINEAR))
    assert torch.equal(ds.images[1], torch.from_numpy(ref).permute(2, 0, 1))


def test_load_coco_padding_clipping_and_skips(gal_cache, tmp_path):
    img_dir, ann = coco_split(tmp_path, [(3, 20, 40), (1, 40, 20), (2, 30, 30)], [
        {"image_id": 1, "category_id": 7, "bbox": [30, 5, 20, 10]},   # clipped at x = 40
        {"image_id": 1, "category_id": 3, "bbox": [4, 2, 8, 6]},
        {"image_id": 1, "bbox": [1, 1, 0, 5]},                        # degenerate
        {"image_id": 1, "bbox": [1, 1, 5, -2]},                       # degenerate
        {"image_id": 1, "bbox": [2, 2, 5, 5], "iscrowd": 1},          # crowd
        {"image_id": 1, "bbox": [45, 2, 5, 5]},                       # outside: empty after clip
    ])
    (img_dir / "0002.jpg").unlink()  # image 2: grayscale
    write_jpeg(img_dir / "0002.jpg", 30, 30, 2, mode="L")
    ds = load_coco(img_dir, ann, 32)
    assert ds.image_ids == [1, 2, 3] and ds.orig_sizes.tolist() == [[20, 40], [30, 30], [40, 20]]
    assert ds.cat_ids == [3, 7] and ds.cat_names == ["b", "a"]
    want = torch.zeros(3, 32, 32, dtype=torch.bool)
    want[0, :16, :] = True   # 40x20 -> 32x16
    want[1] = True           # 30x30 -> 32x32
    want[2, :, :16] = True   # 20x40 -> 16x32
    assert torch.equal(ds.masks, want)
    assert (ds.images[0, :, 16:] == 0).all() and (ds.images[2, :, :, 16:] == 0).all()
    assert ds.images[0, :, :16].float().mean() > 50  # the noise image is there
    assert torch.equal(ds.images[1, 0], ds.images[1, 1]) and torch.equal(ds.images[1, 0],
                                                                          ds.images[1, 2])
    torch.testing.assert_close(ds.targets[0]["boxes"],
                               torch.tensor([[0.875, 0.5, 0.25, 0.5], [0.2, 0.25, 0.2, 0.3]]))
    assert ds.targets[0]["class_labels"].tolist() == [1, 0]
    for t in ds.targets[1:]:  # images without boxes are kept
        assert t["boxes"].shape == (0, 4) and t["class_labels"].shape == (0,)
    assert ds.skipped == {"crowd": 1, "degenerate_box": 2, "empty_after_clip": 1}


def test_load_coco_caches_decoded_tensors(gal_cache, tmp_path, monkeypatch):
    img_dir, ann = coco_split(tmp_path, [(1, 40, 20), (2, 24, 24)],
                         [{"image_id": 1, "bbox": [4, 2, 8, 6]}])
    first = load_coco(img_dir, ann, 16)

    def no_decode(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(coco_data, "decode_all", no_decode)
    second = load_coco(img_dir, ann, 16)
    assert torch.equal(first.images, second.images) and torch.equal(first.masks, second.masks)
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(first.targets, second.targets,
                                                                   strict=True))
    assert second.source.endswith(".pt") and second.ann_file == str(ann)
    cache = Path(os.environ["GAL_CACHE"]) / "coco"
    assert len(list(cache.glob("*.pt"))) == 1 and not list(cache.glob("*.tmp*"))
    with pytest.raises(AssertionError, match="decoded again"):  # another size: another key
        load_coco(img_dir, ann, 20)


def test_load_coco_bad_input(gal_cache, tmp_path):
    img_dir, ann = coco_split(tmp_path, [(1, 16, 16), (2, 16, 16), (3, 16, 16)],
                         [{"image_id": 1, "bbox": [1, 1, 4, 4]}])
    with pytest.raises(DataError, match="nothere.json.*does not exist"):
        load_coco(img_dir, tmp_path / "nothere.json", 16)
    with pytest.raises(DataError, match="image folder .*nodir"):
        load_coco(tmp_path / "nodir", ann, 16)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json is not valid JSON"):
        load_coco(img_dir, bad, 16)
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="bad.json is not in COCO detection format"):
        load_coco(img_dir, bad, 16)
    (img_dir / "0002.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of the 3 images .* missing .*0002\.jpg"):
        load_coco(img_dir, ann, 16)
    (img_dir / "0002.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"0002\.jpg does not decode"):
        load_coco(img_dir, ann, 16)
    good = (img_dir / "0001.jpg").read_bytes()
    (img_dir / "0002.jpg").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DataError, match=r"0002\.jpg does not decode"):
        load_coco(img_dir, ann, 16)
    (img_dir / "0002.jpg").write_bytes(good)  # a valid JPEG, but 16x16 where the json says 40x20
    _, ann2 = coco_split(tmp_path / "b", [(2, 40, 20)], [], write=False)
    with pytest.raises(DataError, match="16x16 but the annotation file says 40x20"):
        load_coco(img_dir, ann2, 16)
    _, ann3 = coco_split(tmp_path / "c", [(1, 16, 16)],
                    [{"image_id": 1, "category_id": 99, "bbox": [1, 1, 4, 4]}], write=False)
    with pytest.raises(DataError, match=r"ann\.json: 1 category id.*\[99\]"):
        load_coco(img_dir, ann3, 16)


# --------------------------------------------------------------------------- configs
def test_load_coco_split_root_and_archive(gal_cache, tmp_path, shapes, monkeypatch):
    by_root = load_coco_split({"root": str(shapes), "size": 32}, "val")
    assert len(by_root) == 3 and by_root.image_ids == [1_000_001, 1_000_002, 1_000_003]
    archive = tmp_path / "shared" / "shapes.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(shapes, arcname="shapes")
    monkeypatch.setenv("GAL_SHARED_DATA", str(archive.parent))
    data = {"archive": "${GAL_SHARED_DATA}/shapes.tar.gz", "sha256": sha256_file(archive),
            "size": 32, "max_images": 2}
    by_archive = load_coco_split(data, "val")
    assert by_archive.image_ids == by_root.image_ids[:2]
    assert torch.equal(by_archive.images, by_root.images[:2])
    assert by_archive.ann_file.endswith("annotations/instances_val2017.json")
    with pytest.raises(DataError, match="checksum mismatch"):
        load_coco_split({**data, "sha256": "0" * 64}, "val")
    with pytest.raises(DataError, match="neither data.root nor data.archive"):
        load_coco_split({"size": 32}, "train")
    with pytest.raises(DataError, match="data.size"):
        load_coco_split({"root": str(shapes)}, "train")
    with pytest.raises(DataError, match=r"no 'train2018' folder .*data.train_images"):
        load_coco_split({"root": str(shapes), "size": 32, "train_images": "train2018"}, "train")
    with pytest.raises(DataError, match="data.root .* is not a folder"):
        load_coco_split({"root": str(tmp_path / "nothing"), "size": 32}, "train")


# --------------------------------------------------------------------------- real COCO subset
def test_coco_tiny_val(gal_cache):
    shared = Path(os.environ.get("GAL_SHARED_DATA") or ROOT / ".." / "shared" / "data")
    if not (shared / "coco-tiny.tar.gz").is_file():
        pytest.skip(f"coco-tiny.tar.gz not under {shared} (set GAL_SHARED_DATA)")
    data = {"archive": "$GAL_SHARED_DATA/coco-tiny.tar.gz", "sha256": COCO_TINY_SHA,
            "size": 128, "max_images": 8}
    ds = load_coco_split(data, "val")
    coco = COCO(ds.ann_file)
    assert len(ds) == 8 and ds.image_ids == sorted(coco.imgs)[:8]
    assert len(ds.cat_ids) == 80 and ds.cat_ids == sorted(coco.cats)
    assert ds.cat_names[0] == "person" and ds.cat_ids[-1] == 90
    n_kept = 0
    for i, t in zip(ds.image_ids, ds.targets, strict=True):
        b = t["boxes"]
        assert ((b >= 0) & (b <= 1)).all() and (b[:, 2:] > 0).all()
        assert (b[:, :2] - b[:, 2:] / 2 >= -1e-6).all()
        assert (b[:, :2] + b[:, 2:] / 2 <= 1 + 1e-6).all()
        assert {ds.cat_ids[k] for k in t["class_labels"].tolist()} <= {
            a["category_id"] for a in coco.imgToAnns[i]}
        n_kept += len(b)
    assert n_kept + sum(ds.skipped.values()) == sum(len(coco.imgToAnns[i]) for i in ds.image_ids)
    for k, i in enumerate(ds.image_ids):  # longer side 128, aspect kept, top-left
        w, h = coco.imgs[i]["width"], coco.imgs[i]["height"]
        assert ds.orig_sizes[k].tolist() == [h, w]
        assert ds.masks[k, 0].sum() == round(w * 128 / max(w, h))
        assert ds.masks[k, :, 0].sum() == round(h * 128 / max(w, h))


# --------------------------------------------------------------------------- split consistency
def test_train_and_val_must_list_the_same_categories(gal_cache, tmp_path):
    """The training json lacked a category the validation json had: training label 0 ("circle")
    was scored as validation category 1 ("square"). Now one error lists the differences."""
    from detr_gal.coco_data import check_splits

    box = [{"image_id": 1, "category_id": 2, "bbox": [1, 1, 6, 6]}]
    tr_dir, tr_ann = coco_split(tmp_path / "tr", [(1, 16, 16)], [dict(b) for b in box],
                           cats=[{"id": 2, "name": "circle"}, {"id": 3, "name": "triangle"}])
    va_dir, va_ann = coco_split(tmp_path / "va", [(1, 16, 16)], [dict(b) for b in box],
                           cats=[{"id": 1, "name": "square"}, {"id": 2, "name": "circle"},
                                 {"id": 3, "name": "tri"}])
    train, val = load_coco(tr_dir, tr_ann, 16), load_coco(va_dir, va_ann, 16)
    with pytest.raises(DataError) as e:
        check_splits(train, val)
    msg = str(e.value)
    assert "only in validation: 1 'square'" in msg
    assert "named differently: 3 'triangle' vs 'tri'" in msg and "only in train" not in msg
    check_splits(train, train)


def test_run_loads_checked_splits(gal_cache, tmp_path, monkeypatch):
    """detr_gal.run.load_data refuses splits whose categories differ."""
    from detr_gal import run as R

    tr = load_coco(*coco_split(tmp_path / "tr", [(1, 16, 16)], [{"image_id": 1, "bbox": [1, 1, 6, 6]}]), 16)
    va = load_coco(*coco_split(tmp_path / "va", [(1, 16, 16)], [{"image_id": 1, "bbox": [1, 1, 6, 6]}],
                          cats=[{"id": 3, "name": "b"}]), 16)
    monkeypatch.setattr(R, "load_coco_split", lambda data, split: tr if split == "train" else va)
    monkeypatch.setattr(R, "_data_section", lambda settings: {})
    with pytest.raises(DataError, match="only in train: 7 'a'"):
        R.load_data({})


def test_all_boxes_dropped_is_an_error(gal_cache, tmp_path):
    """37 of 37 degenerate boxes used to load as a split without boxes, silently."""
    anns = [{"image_id": 1 + k % 2, "bbox": [1, 1, 0, 4]} for k in range(36)]
    anns.append({"image_id": 1, "bbox": [20, 20, 3, 3]})  # outside the 16x16 image
    img_dir, ann = coco_split(tmp_path, [(1, 16, 16), (2, 16, 16)], anns)
    with pytest.raises(DataError, match=r"all 37 boxes .* dropped \(36 degenerate box, "
                                        r"1 empty after clip\)"):
        load_coco(img_dir, ann, 16)
    # a split without any annotation is not an error (nothing was dropped)
    _, empty = coco_split(tmp_path / "e", [(1, 16, 16)], [], write=False)
    assert len(load_coco(img_dir, empty, 16)) == 1


def test_duplicate_ids_are_an_error(gal_cache, tmp_path):
    img_dir, ann = coco_split(tmp_path, [(1, 16, 16)], [
        {"id": 5, "image_id": 1, "bbox": [1, 1, 4, 4]},
        {"id": 5, "image_id": 1, "bbox": [2, 2, 4, 4]}])
    with pytest.raises(DataError, match=r"1 duplicate id\(s\) in 'annotations': 5"):
        load_coco(img_dir, ann, 16)
    _, ann2 = coco_split(tmp_path / "c", [(1, 16, 16)], [{"image_id": 1, "bbox": [1, 1, 4, 4]}],
                    cats=[{"id": 3, "name": "b"}, {"id": 3, "name": "b2"}], write=False)
    with pytest.raises(DataError, match=r"duplicate id\(s\) in 'categories': 3"):
        load_coco(img_dir, ann2, 16)
