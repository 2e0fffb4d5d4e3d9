"""The memory-mapped image store of Table III's paper profile (ImageNet does not fit in memory):
the same images and labels as the in-memory decode, built once by one process while concurrent
loaders wait, a corrupt image named in the error and no half-written store left behind."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_classification import _folder_data, make_imagefolder

from experiments.image_data import DataError, TensorLoader, load_split
from experiments.image_store import memmap_split

pytestmark = pytest.mark.usefixtures("gal_cache")


def test_memmap_equals_in_memory_decode(tmp_path):
    tree = make_imagefolder(tmp_path / "tree", size=20)
    mem = load_split(_folder_data(tree, image_size=12), "train")
    mm = load_split(_folder_data(tree, image_size=12, storage="memmap", decode_workers=2), "train")
    assert torch.equal(mem.images, mm.images) and torch.equal(mem.labels, mm.labels)
    assert mm.classes == mem.classes and mm.source.endswith(".u8")
    again = load_split(_folder_data(tree, image_size=12, storage="memmap"), "train")
    assert again.source == mm.source  # built once, then mapped
    gen = torch.Generator().manual_seed(0)
    xa, ya = next(iter(TensorLoader(mem, 8, train=True, mean=(0.5,) * 3, std=(0.5,) * 3,
                                    generator=gen, flip=True)))
    gen.manual_seed(0)
    xb, yb = next(iter(TensorLoader(mm, 8, train=True, mean=(0.5,) * 3, std=(0.5,) * 3,
                                    generator=gen, flip=True)))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def _load(folder: str, q) -> None:
    q.put(memmap_split(Path(folder), 12, 1).source)


def test_concurrent_loaders_build_once(tmp_path):
    tree = make_imagefolder(tmp_path / "tree", size=20)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_load, args=(str(tree / "train"), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    sources = {q.get(timeout=5) for _ in procs}
    assert len(sources) == 1 and all(p.exitcode == 0 for p in procs)
    store = Path(next(iter(sources))).parent
    assert not list(store.glob("*.tmp*"))


def test_bad_input(tmp_path):
    tree = make_imagefolder(tmp_path / "tree", size=20)
    with pytest.raises(DataError, match="image_size"):
        memmap_split(tree / "train", None)
    cls = sorted(p.name for p in (tree / "train").iterdir())[0]
    bad = tree / "train" / cls / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        memmap_split(tree / "train", 12, 1)
    store = Path(tmp_path)
    assert not list(store.rglob("*.u8")) and not list(store.rglob("*.tmp*"))
    with pytest.raises(DataError, match="storage"):
        load_split(_folder_data(tree, image_size=12, storage="disk"), "train")
    Image.new("RGB", (5, 5)).save(bad)
    assert len(memmap_split(tree / "train", 12, 1)) == 61
