"""Batches of Table IV's data (Sec. V-B, DETR + GAL): normalisation, zero padding, flips within
the unpadded region, and the same batches from the same seed (resumable)."""

from __future__ import annotations

import pytest
import torch
from coco_fixtures import coco_split

from detr_gal.coco_data import DetectionLoader, load_coco


@pytest.fixture
def flip_set(gal_cache, tmp_path):
    sizes = [(1, 40, 20), (2, 20, 40), (3, 30, 30), (4, 50, 25)]
    anns = [{"image_id": i, "bbox": [w / 8, h / 4, w / 2, h / 3]} for i, w, h in sizes]
    anns.append({"image_id": 1, "category_id": 7, "bbox": [30, 0, 10, 20]})
    return load_coco(*coco_split(tmp_path, sizes, anns), 32)


def _epoch(loader: DetectionLoader) -> list:
    return [(x.clone(), m.clone(), [{k: v.clone() for k, v in t.items()} for t in lab], i.clone())
            for x, m, lab, i in loader]


def test_loader_normalises_and_pads_with_zero(flip_set):
    loader = DetectionLoader(flip_set, 3)
    assert len(loader) == 2 and len(DetectionLoader(flip_set, 3, drop_last=True)) == 1
    batches = _epoch(loader)
    x = torch.cat([b[0] for b in batches])
    m = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.float32 and m.dtype == torch.int64
    assert torch.equal(m.bool(), flip_set.masks)
    assert torch.cat([b[3] for b in batches]).tolist() == [0, 1, 2, 3]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    want = (flip_set.images.float() / 255 - mean) / std * flip_set.masks.unsqueeze(1)
    torch.testing.assert_close(x, want)
    assert (x.masked_select(~m.bool().unsqueeze(1).expand_as(x)) == 0).all()


def test_loader_flip_mirrors_within_unpadded_region(flip_set):
    plain = _epoch(DetectionLoader(flip_set, 2))
    flipped = _epoch(DetectionLoader(flip_set, 2, hflip=True, seed=1))
    widths = [32, 16, 32, 32]  # 40x20, 20x40, 30x30, 50x25 resized to a longer side of 32
    seen = set()
    for (x0, m0, lab0, i0), (x1, m1, lab1, i1) in zip(plain, flipped, strict=True):
        assert torch.equal(i0, i1) and torch.equal(m0, m1)
        for k, j in enumerate(i0.tolist()):
            w = widths[j]
            mirrored = x0[k].clone()
            mirrored[:, :, :w] = x0[k, :, :, :w].flip(-1)
            b0, b1 = lab0[k]["boxes"], lab1[k]["boxes"]
            if torch.equal(x1[k], x0[k]):
                assert torch.equal(b1, b0)
                seen.add(False)
            else:
                assert torch.equal(x1[k], mirrored)
                torch.testing.assert_close(b1[:, 0], 1 - b0[:, 0])
                assert torch.equal(b1[:, 1:], b0[:, 1:])
                seen.add(True)
            assert torch.equal(lab1[k]["class_labels"], lab0[k]["class_labels"])
    assert seen == {False, True}
    assert torch.equal(flip_set.targets[0]["boxes"], plain[0][2][0]["boxes"])  # not mutated


def test_loader_same_seed_same_batches_and_resumable(flip_set):
    def run(loader, epochs=2):
        return [b for _ in range(epochs) for b in _epoch(loader)]

    def same(a, b):
        return all(torch.equal(p[0], q[0]) and torch.equal(p[3], q[3])
                   and all(torch.equal(s["boxes"], t["boxes"]) for s, t in zip(p[2], q[2],
                                                                               strict=True))
                   for p, q in zip(a, b, strict=True))

    kw = {"shuffle": True, "hflip": True}
    a = run(DetectionLoader(flip_set, 2, seed=5, **kw))
    assert same(a, run(DetectionLoader(flip_set, 2, seed=5, **kw)))
    assert not same(a, run(DetectionLoader(flip_set, 2, seed=6, **kw)))
    loader = DetectionLoader(flip_set, 2, seed=5, **kw)
    _epoch(loader)
    state = loader.generator.get_state()
    second = _epoch(loader)
    loader.generator.set_state(state)
    assert same(second, _epoch(loader)) and same(second, a[2:])
