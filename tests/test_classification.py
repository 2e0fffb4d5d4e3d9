"""Tables I-II task: data formats, bad input, the paired design, alpha=0 bit identity, smoke run."""

from __future__ import annotations

import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments import classification as C
from experiments.engine import evaluate, make_criterion, topk_errors, train_one_epoch
from experiments.image_data import DataError, ImageSet, TensorLoader, check_pair, load_split
from gal_suite.config import load_config

CLASSES = [f"c{i}" for i in range(10)]


def _image(label: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A learnable image: the class sets the colour of a noisy square."""
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    img[2:size - 2, 2:size - 2, label % 3] += np.uint8(60 + 18 * label)
    return img


def make_imagefolder(root: Path, n_train: int = 6, n_test: int = 3, size: int = 16,
                     classes: list[str] = CLASSES) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_image(k, rng, size)).save(d / f"{i}.png")
    return root


def make_cifar_pickles(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """The official CIFAR-10 python layout (cifar-10-batches-py/*), with generated images."""
    rng = np.random.default_rng(1)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)

    def batch(n: int) -> dict:
        labels = [int(i % 10) for i in range(n)]
        data = np.stack([_image(k, rng, 32).transpose(2, 0, 1).reshape(-1) for k in labels])
        return {"data": data, "labels": labels}

    for i in range(1, 6):
        with open(base / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(n_train // 5), f)
    with open(base / "test_batch", "wb") as f:
        pickle.dump(batch(n_test), f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)
    return root


pytestmark = pytest.mark.usefixtures("gal_cache")  # tests/conftest.py


def _folder_data(root: Path, **kw) -> dict:
    return {"format": "imagefolder", "root": str(root) if root else None, "archive": None, "sha256": None,
            "splits": {"train": "train", "test": "test"}, "image_size": None, **kw}


# --------------------------------------------------------------------------- data
def test_imagefolder_and_archive_decode_once(tmp_path, monkeypatch):
    tree = make_imagefolder(tmp_path / "tree" / "mydata")
    direct = load_split(_folder_data(tree), "train")
    assert direct.images.shape == (60, 3, 16, 16) and direct.images.dtype == torch.uint8
    assert direct.classes == CLASSES and direct.labels.bincount().tolist() == [6] * 10
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree, arcname="mydata")
    data = _folder_data(None, archive=str(archive))
    a = load_split(data, "train")
    assert torch.equal(a.images, direct.images) and torch.equal(a.labels, direct.labels)
    import experiments.image_data as D

    def no_decode(*args, **kw):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(D, "_decode_folder", no_decode)
    b = load_split(data, "train")  # from the sha-keyed tensor cache
    assert torch.equal(b.images, direct.images)


def _skip_md5(monkeypatch) -> None:
    """torchvision checks the md5 of the real archive's files; generated files have others."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)


def test_cifar_pickles(tmp_path, monkeypatch):
    root = make_cifar_pickles(tmp_path / "cifar")
    _skip_md5(monkeypatch)
    tr = load_split({"format": "cifar10", "root": str(root)}, "train")
    te = load_split({"format": "cifar10", "root": str(root)}, "test")
    assert tr.images.shape == (60, 3, 32, 32) and te.images.shape == (20, 3, 32, 32)
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f)
    assert torch.equal(tr.images[0], torch.from_numpy(raw["data"][0].reshape(3, 32, 32)))
    assert tr.labels[:12].tolist() == raw["labels"][:12]


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split(_folder_data(None, archive=str(tmp_path / "missing.tar.gz")), "train")
    bad = tmp_path / "corrupt.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_split(_folder_data(None, archive=str(bad)), "train")
    with pytest.raises(DataError, match="checksum mismatch"):
        load_split(_folder_data(None, archive=str(bad), sha256="0" * 64), "train")
    tree = make_imagefolder(tmp_path / "t")
    (tree / "train" / "c3" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken\.png does not decode"):
        load_split(_folder_data(tree), "train")
    with pytest.raises(DataError, match="does not exist|not a folder"):
        load_split(_folder_data(tmp_path / "nowhere"), "train")
    with pytest.raises(DataError, match="CIFAR10 not found"):
        load_split({"format": "cifar10", "root": str(tmp_path / "empty")}, "train")
    # class mismatch between splits, labels out of range
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    a = ImageSet(x, torch.tensor([0, 1, 2, 3]), ["a", "b", "c", "d"], "a")
    b = ImageSet(x, torch.tensor([0, 1, 2, 2]), ["a", "b", "c"], "b")
    with pytest.raises(DataError, match="class mismatch"):
        check_pair(a, b, 4)
    with pytest.raises(DataError, match="num_classes"):
        check_pair(a, a, 3)


def test_tensor_loader_augmentation_is_seeded_and_valid():
    imgs = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
    ds = ImageSet(imgs, torch.tensor([0, 1]), ["a", "b"], "t")
    kw = dict(train=True, mean=[0, 0, 0], std=[1 / 255] * 3, pad=1, flip=True)
    a = list(TensorLoader(ds, 2, generator=torch.Generator().manual_seed(3), **kw))
    b = list(TensorLoader(ds, 2, generator=torch.Generator().manual_seed(3), **kw))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b, strict=True))
    # every crop is a 4x4 window of the reflect-padded image, possibly mirrored
    padded = torch.nn.functional.pad(imgs.float(), (1,) * 4, mode="reflect")
    x, y = a[0]
    for img, label in zip(x, y, strict=True):
        wins = [padded[label, :, i:i + 4, j:j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(img, w) or torch.equal(img, w.flip(-1)) for w in wins)


# --------------------------------------------------------------------------- engine
def test_topk_errors_by_hand():
    logits = torch.tensor([[3.0, 2, 1, 0, -1, -2], [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    y = torch.tensor([0, 0, 5])  # top-1 hit; rank 6 (miss top-5); rank 6 (miss top-5)
    assert topk_errors(logits, y).tolist() == [2, 2]
    assert topk_errors(logits, torch.tensor([1, 4, 4]), ks=(1, 2)).tolist() == [3, 1]  # row 3 misses both


def _cpu_settings(optimizer: str, method: str, **train) -> dict:
    cfg = load_config(C.CONFIG_PATH, "cpu", {"device": "cpu", **{f"train.{k}": v for k, v in train.items()}})
    return C.run_settings(cfg, C.RunSpec(1, "cpu", "cifar10_jpeg", optimizer, method, 0))


def _synthetic(n: int = 64, size: int = 32, classes: int = 10) -> ImageSet:
    rng = np.random.default_rng(2)
    labels = np.arange(n) % classes
    imgs = np.stack([_image(int(k), rng, size).transpose(2, 0, 1) for k in labels])
    return ImageSet(torch.from_numpy(imgs), torch.as_tensor(labels), CLASSES[:classes], "syn")


@pytest.mark.parametrize("optimizer", ["sgd", "lookahead_sgd", "adabound"])
def test_alpha0_equals_baseline_bit_for_bit(optimizer):
    """GAL with alpha=0 on the cpu-profile model trains exactly like the baseline (Eq. 4)."""
    data = _synthetic()
    states = {}
    for method in ("baseline", "gal_alpha0"):
        s = _cpu_settings(optimizer, method, batch_size=16, epochs=1)
        run = C.build_run(s, data, data, seed=7)
        crit = make_criterion(0.2)
        out = train_one_epoch(run.model, crit, run.train_loader, run.optimizer, run.device, 1,
                              adjuster=run.adjuster, scheduler=run.scheduler)
        assert len(run.train_loader) == 4
        states[method] = ({k: v.clone() for k, v in run.model.state_dict().items()}, out["train_loss"])
    (base, lb), (gal, lg) = states["baseline"], states["gal_alpha0"]
    assert lb == lg
    for k in base:
        assert torch.equal(base[k], gal[k]), k
    # and the arms did train: parameters moved from their initialisation
    init = C.build_run(_cpu_settings(optimizer, "baseline", batch_size=16), data, data, seed=7)
    assert not torch.equal(init.model.state_dict()["head.weight"], base["head.weight"])


def test_paired_design_same_init_and_batches():
    data = _synthetic()
    base = C.build_run(_cpu_settings("sgd", "baseline", batch_size=16), data, data, seed=3)
    gal = C.build_run(_cpu_settings("sgd", "gal", batch_size=16), data, data, seed=3)
    other = C.build_run(_cpu_settings("sgd", "baseline", batch_size=16), data, data, seed=4)
    for k, v in base.model.state_dict().items():
        assert torch.equal(v, gal.model.state_dict()[k]), k
    assert gal.adjuster is not None and gal.adjuster.alpha == 0.001 and gal.adjuster.beta == 1.0
    xb, yb = next(iter(base.train_loader))
    xg, yg = next(iter(gal.train_loader))
    xo, _ = next(iter(other.train_loader))
    assert torch.equal(xb, xg) and torch.equal(yb, yg) and not torch.equal(xb, xo)
    assert not torch.equal(base.model.state_dict()["head.weight"], other.model.state_dict()["head.weight"])


def test_gal_epoch_reports_diagnostics_and_evaluate_by_hand():
    data = _synthetic()
    run = C.build_run(_cpu_settings("sgd", "gal", batch_size=16), data, data, seed=0)
    out = train_one_epoch(run.model, make_criterion(0.2), run.train_loader, run.optimizer,
                          run.device, 1, adjuster=run.adjuster, scheduler=run.scheduler)
    for k in ("train_loss", "remainder", "abs_remainder", "accept_rate", "cosine", "images_per_s"):
        assert np.isfinite(out[k]), k
    assert 0.0 <= out["accept_rate"] <= 1.0
    crit = make_criterion(0.0)
    ev = evaluate(run.model, crit, run.test_loader, run.device)
    run.model.eval()
    with torch.no_grad():
        xs, ys = zip(*run.test_loader, strict=True)
        z = torch.cat([run.model(x) for x in xs])
        y = torch.cat(ys)
    assert ev["val_loss"] == pytest.approx(torch.nn.functional.cross_entropy(z, y).item(), rel=1e-5)
    assert ev["val_error_top1"] == pytest.approx(100.0 * (z.argmax(1) != y).float().mean().item())


# --------------------------------------------------------------------------- end to end
def _smoke(tmp_path: Path, fmt: str, monkeypatch) -> tuple[Path, dict]:
    if fmt == "imagefolder":
        root = make_imagefolder(tmp_path / "smokedata")
        over = {"datasets.smoke.data.root": str(root)}
    else:
        _skip_md5(monkeypatch)
        root = make_cifar_pickles(tmp_path / "smokecifar")
        over = {"datasets.smoke.data.root": str(root), "datasets.smoke.data.format": "cifar10",
                "train.image_size": 16}
    return root, over


@pytest.mark.parametrize("fmt", ["imagefolder", "cifar10"])
def test_smoke_profile_end_to_end_to_table1(tmp_path, monkeypatch, fmt):
    _, over = _smoke(tmp_path, fmt, monkeypatch)
    runs = tmp_path / "runs"
    counts = C.run_table(1, "smoke", runs_root=runs, overrides=over, progress=False,
                         optimizers=["sgd", "adabound"])
    assert counts == {"complete": 12, "failed": 0, "skipped": 0}
    again = C.run_table(1, "smoke", runs_root=runs, overrides=over, progress=False,
                        optimizers=["sgd", "adabound"])
    assert again["skipped"] == 12 and again["complete"] == 0
    rec = runs / "table1" / "smoke" / "smoke" / "sgd" / "gal" / "seed-0"
    m = json.loads((rec / "metrics.json").read_text())
    assert 0 <= m["error_top1"] <= 100 and m["images_per_s"] > 0
    hist = (rec / "history.csv").read_text().splitlines()
    assert hist[0].startswith("epoch") and "accept_rate" in hist[0] and len(hist) == 3
    for seed in (0, 1):  # alpha=0 control equals the baseline exactly
        d = runs / "table1" / "smoke" / "smoke" / "sgd"
        mb = json.loads((d / "baseline" / f"seed-{seed}" / "metrics.json").read_text())
        ma = json.loads((d / "gal_alpha0" / f"seed-{seed}" / "metrics.json").read_text())
        assert {k: mb[k] for k in ("error_top1", "val_loss")} == {k: ma[k] for k in ("error_top1", "val_loss")}
    from gal_suite.tables import render_table

    paths = render_table(1, runs, tmp_path / "tables")
    md = Path(paths["md"]).read_text()
    assert "generated smoke data" in md and "smoke" in md


def test_nan_loss_is_a_failed_record(tmp_path, monkeypatch):
    _, over = _smoke(tmp_path, "imagefolder", monkeypatch)
    over["optimizers.sgd.lr"] = 1e30
    counts = C.run_table(1, "smoke", seeds=1, optimizers=["sgd"], methods=["baseline"],
                         runs_root=tmp_path / "runs", overrides=over, progress=False)
    assert counts["failed"] == 1
    st = json.loads((tmp_path / "runs/table1/smoke/smoke/sgd/baseline/seed-0/status.json").read_text())
    assert st["status"] == "failed" and "non-finite" in st["reason"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = C.main(["--table", "1", "--profile", "smoke", "--runs-root", str(tmp_path),
                 "--set", f"datasets.smoke.data.root={tmp_path / 'nothing'}", "--no-progress"])
    assert rc == 2 and "not a folder" in capsys.readouterr().err
    rc = C.main(["--table", "1", "--profile", "nope", "--runs-root", str(tmp_path)])
    assert rc == 2 and "unknown profile" in capsys.readouterr().err
    rc = C.main(["--table", "1", "--profile", "smoke", "--optimizers", "rmsprop"])
    assert rc == 2 and "unknown optimizers" in capsys.readouterr().err


# --------------------------------------------------------------------------- untrusted archives
def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    import io

    with tarfile.open(path, "w:gz") as tf:
        d = tarfile.TarInfo("mydata")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize(("kind", "why"), [
    ("absolute", "has an absolute path"),
    ("dotdot", "'..' path component"),
    ("fifo", "device, fifo or other special file"),
    ("chardev", "device, fifo or other special file"),
    ("symlink_out", "outside the archive"),
    ("hardlink_out", "outside the archive"),
])
def test_archive_members_outside_or_special_are_refused_with_why(tmp_path, monkeypatch, kind, why):
    """An absolute member was written inside the cache (tarfile's data filter strips the '/'),
    and a refused member was reported as "corrupt or truncated, fetch it again"."""
    monkeypatch.setenv("GAL_CACHE", str(tmp_path / "cache"))
    m = tarfile.TarInfo({"absolute": "/tmp/gal-abs-member.txt", "dotdot": "mydata/../../x.txt"}
                        .get(kind, "mydata/m"))
    if kind == "fifo":
        m.type = tarfile.FIFOTYPE
    elif kind == "chardev":
        m.type, m.devmajor, m.devminor = tarfile.CHRTYPE, 1, 3
    elif kind == "symlink_out":
        m.type, m.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    elif kind == "hardlink_out":
        m.type, m.linkname = tarfile.LNKTYPE, "/etc/passwd"
    archive = _tar_with(tmp_path / f"{kind}.tar.gz", m, b"x")
    with pytest.raises(DataError) as e:
        load_split(_folder_data(None, archive=str(archive)), "train")
    msg = str(e.value)
    assert why in msg and "corrupt" not in msg and "fetch it again" not in msg
    assert not list((tmp_path / "cache").rglob("gal-abs-member.txt"))


def test_a_link_inside_the_archive_is_fine() -> None:
    from experiments.image_files import refused_member

    m = tarfile.TarInfo("mydata/train/a/link.png")
    m.type, m.linkname = tarfile.SYMTYPE, "../b/img.png"
    assert refused_member(m) is None


def test_16_bit_png_is_scaled_not_clipped(tmp_path) -> None:
    from PIL import Image

    from experiments.image_data import decode_image

    values = np.array([[0, 257, 32896], [65535, 1000, 128]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # Pillow reads it as 16/32-bit integers
    out = decode_image(path, None)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() == [[0, 1, 128], [255, 4, 0]]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
