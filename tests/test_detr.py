"""Table IV (Sec. V-B): DETR + GAL on the predicted boxes.

The loss split against transformers' own DETR loss, GAL's box gradient against a hand-written
second implementation of L1 + GIoU and of h, h's parameter count against the paper's 1,344,
COCOeval on the real COCO subset with a perfect and a trivial predictor, and the smoke profile
end to end (the loss falls, COCOeval numbers, resume equals an uninterrupted run, Table IV
renders)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from resume_helpers import interrupt_at_epoch

from detr_gal import run as R
from detr_gal.box_gal import MatchedBoxes, matched_box_loss
from detr_gal.coco_data import load_coco_split
from detr_gal.engine import coco_ap, coco_detections
from detr_gal.model import build_detr, build_loss, count_parameters
from gal import GradientAdjuster
from gal_suite.config import load_config
from gal_suite.tables import render_table

TINY = {"backbone": "resnet10t", "num_queries": 5, "d_model": 32, "encoder_layers": 1,
        "decoder_layers": 2, "heads": 2, "ffn_dim": 64, "dropout": 0.0, "aux_loss": True,
        "class_cost": 1, "bbox_cost": 5, "giou_cost": 2, "eos_coef": 0.1, "backbone_norm": "batchnorm"}


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]])},
        {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.4, 0.4, 0.5]])},
    ]


@pytest.mark.parametrize("variant", ["detr", "conditional_detr"])
def test_loss_split_equals_transformers_detr_loss(variant):
    torch.manual_seed(0)
    model = build_detr({**TINY, "variant": variant}, num_labels=3)
    assert type(model).__name__ == ("DetrForObjectDetection" if variant == "detr"
                                    else "ConditionalDetrForObjectDetection")
    # trainable batch norms (a backbone trained from scratch) in both variants
    assert not [m for m in model.modules() if "FrozenBatchNorm" in type(m).__name__]
    x, mask = torch.randn(2, 3, 64, 64), torch.ones(2, 64, 64, dtype=torch.long)
    targets = _targets()
    out = model(pixel_values=x, pixel_mask=mask, labels=targets)
    rest, box, matched, parts = build_loss(model)(out, targets)
    ld = out.loss_dict
    assert "loss_ce_0" in ld  # the auxiliary decoder layer is in transformers' total
    torch.testing.assert_close(box, 5 * ld["loss_bbox"] + 2 * ld["loss_giou"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rest + box, out.loss, rtol=1e-6, atol=1e-6)
    assert matched.batch_idx.tolist() == [0, 0, 1] and matched.num_boxes == 3.0
    assert float(parts["loss_aux"]) > 0
    # rest carries no gradient to the last layer's boxes beyond the class term's (which has none)
    (g,) = torch.autograd.grad(rest, out.pred_boxes, retain_graph=True, allow_unused=True)
    assert g is None or float(g.abs().max()) == 0.0
    # unsplit (baseline, evaluation): transformers' own terms, no second matching
    rest0, box0, matched0, _ = build_loss(model)(out, targets, split=False)
    assert matched0 is None
    torch.testing.assert_close(box0, 5 * ld["loss_bbox"] + 2 * ld["loss_giou"], rtol=0, atol=0)
    torch.testing.assert_close(rest0 + box0, out.loss, rtol=1e-6, atol=1e-6)


def test_engine_gal_step_with_alpha_zero_equals_plain_detr_step():
    """One training step through the engine: GAL with alpha = 0 (g = dl/dz, Eq. 3) on the box
    term plus the class and auxiliary terms in the same pass gives the weights a plain DETR step
    (transformers' total loss) gives, up to float32 rounding; alpha = 0.5 (policy: always) does not."""
    from detr_gal.engine import train_one_epoch

    x, mask = torch.randn(2, 3, 64, 64), torch.ones(2, 64, 64, dtype=torch.long)
    batch = [(x, mask, _targets(), torch.arange(2))]  # float32: transformers' DETR loss is float32
    step = {}  # the change of all weights in one SGD step (lr 1): minus the gradient
    for name, alpha in (("plain", None), ("alpha0", 0.0), ("alpha.5", 0.5)):
        torch.manual_seed(0)
        model = build_detr(TINY, num_labels=3)
        adj = None if alpha is None else GradientAdjuster(4, arch=(64, 16), alpha=alpha, policy="always", seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        train_one_epoch(model, build_loss(model), batch, opt,
                        torch.device("cpu"), 0, adjuster=adj, max_norm=0.0)
        step[name] = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    scale = float(step["plain"].abs().max())  # float32 rounding of gradients up to this size
    torch.testing.assert_close(step["alpha0"], step["plain"], rtol=0, atol=1e-5 * scale)
    assert float((step["alpha.5"] - step["plain"]).abs().max()) > 1e-3 * scale


def _giou_by_hand(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """GIoU of paired (cx, cy, w, h) boxes from the definition (second implementation), with the
    safety eps that torchvision adds to the union and the hull."""
    ax0, ay0, ax1, ay1 = a[:, 0] - a[:, 2] / 2, a[:, 1] - a[:, 3] / 2, a[:, 0] + a[:, 2] / 2, a[:, 1] + a[:, 3] / 2
    bx0, by0, bx1, by1 = b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    iw = (torch.minimum(ax1, bx1) - torch.maximum(ax0, bx0)).clamp(min=0)
    ih = (torch.minimum(ay1, by1) - torch.maximum(ay0, by0)).clamp(min=0)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    hull = (torch.maximum(ax1, bx1) - torch.minimum(ax0, bx0)) * (torch.maximum(ay1, by1) - torch.minimum(ay0, by0))
    return inter / (union + eps) - (hull - union) / (hull + eps)


def test_gal_box_gradient_equals_hand_computation_for_fixed_matching():
    torch.manual_seed(1)
    z = torch.tensor([[[0.2, 0.3, 0.2, 0.2], [0.5, 0.5, 0.3, 0.4], [0.6, 0.4, 0.2, 0.3]],
                      [[0.4, 0.6, 0.3, 0.3], [0.3, 0.3, 0.2, 0.1], [0.7, 0.7, 0.2, 0.2]]], dtype=torch.float64)
    tgt = torch.tensor([[0.25, 0.35, 0.25, 0.2], [0.45, 0.55, 0.3, 0.3], [0.35, 0.25, 0.2, 0.15]],
                       dtype=torch.float64)
    y = MatchedBoxes(torch.tensor([0, 1, 1]), torch.tensor([2, 0, 1]), tgt, num_boxes=3.0)
    # dl/dz by hand: 5 * sign(z - b*) / 3 (L1) + 2 * d(1 - GIoU)/dz / 3 on matched rows, 0 elsewhere
    zz = z.clone().requires_grad_(True)
    src = zz[y.batch_idx, y.query_idx]
    hand = (5 * (src - tgt).abs().sum() + 2 * (1 - _giou_by_hand(src, tgt)).sum()) / 3
    (grad,) = torch.autograd.grad(hand, zz)
    torch.testing.assert_close(matched_box_loss(z, y), hand.detach())
    adj = GradientAdjuster(dim=4, arch=(64, 16), alpha=0.01, beta=1.0, policy="always", seed=0).double()
    # h by hand: ReLU MLP (64-16) on each query's 4 numbers, no activation after the last layer
    lin = adj.h.layers()
    v = z
    for i, (w, b) in enumerate(lin):
        v = v @ w.T + b
        v = v.relu() if i < len(lin) - 1 else v
    gn = grad.norm(dim=-1, keepdim=True)
    expected = grad + 0.01 * gn * v / v.norm(dim=-1, keepdim=True)  # Eqs. 3-5 (policy: always)
    chosen, h_obj, stats = adj.adjust(z.clone().requires_grad_(True), y, matched_box_loss, lr=1e-4)
    torch.testing.assert_close(chosen, expected.detach())
    assert float(chosen[0, :2].abs().max()) == 0.0 and float(chosen[1, 2].abs().max()) == 0.0  # unmatched
    assert h_obj.requires_grad and float(stats.accept_rate) == 1.0


def test_h_parameter_count_and_the_papers_1344():
    adj = GradientAdjuster(dim=4, arch=(64, 16))
    assert count_parameters(adj.h) == 4 * 64 + 64 + 64 * 16 + 16 + 16 * 4 + 4 == 1428
    weights = sum(w.numel() for w, _ in adj.h.layers())
    assert weights == 1344  # the paper's "+1344" (Table IV) counts the weights without biases


# --------------------------------------------------------------------------- COCOeval, real data
def _coco_tiny():
    shared = Path(os.environ.get("GAL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (shared / "coco-tiny.tar.gz").is_file():
        pytest.skip("coco-tiny.tar.gz not at hand ($GAL_SHARED_DATA)")
    cfg = load_config(R.CONFIG_PATH, "cpu")
    data = dict(cfg["datasets"]["coco_tiny"]["data"], size=128, max_images=12)
    return load_coco_split(data, "val")


def test_coco_tiny_cocoeval_perfect_and_trivial_predictors(gal_cache):
    from pycocotools.coco import COCO

    val = _coco_tiny()
    coco = COCO(val.ann_file)
    n, k = len(val), len(val.cat_ids)
    q = max(len(t["class_labels"]) for t in val.targets) + 2
    logits = torch.full((n, q, k + 1), -10.0)
    logits[..., k] = 10.0  # no-object everywhere ...
    boxes = torch.full((n, q, 4), 0.5)
    for i, t in enumerate(val.targets):  # ... except one query per ground-truth box
        m = len(t["class_labels"])
        logits[i, torch.arange(m), t["class_labels"]] = 10.0
        logits[i, :m, k] = -10.0
        boxes[i, :m] = t["boxes"]
    ids = val.image_ids
    perfect = coco_ap(coco, coco_detections(logits, boxes, ids, val.orig_sizes, val.cat_ids), ids)
    assert perfect["ap50"] > 99.0 and perfect["ap"] > 95.0
    trivial = coco_ap(coco, coco_detections(torch.zeros(n, q, k + 1), torch.full((n, q, 4), 0.5), ids,
                                            val.orig_sizes, val.cat_ids), ids)
    assert set(trivial) == {"ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l"}
    assert all(math.isnan(v) or 0.0 <= v < 10.0 for v in trivial.values())
    assert coco_ap(coco, [], ids)["ap"] == 0.0
    # Conditional DETR (sigmoid classes, no "no object"): the same perfect predictor, as logits
    sig = coco_detections(logits[..., :k], boxes, ids, val.orig_sizes, val.cat_ids, softmax=False)
    assert len(sig) == n * min(100, q * k)  # the top 100 (query, class) pairs of each image
    assert coco_ap(coco, sig, ids)["ap50"] > 99.0


def test_sigmoid_detections_are_the_top_query_class_pairs():
    """Conditional DETR's post-processing by hand: top-k over (query, class) pairs of sigmoid
    scores, the box of the pair's query, scaled to (x, y, w, h) on the original image."""
    logits = torch.tensor([[[0.0, 3.0], [2.0, -1.0], [-4.0, 1.0]]])  # 1 image, 3 queries, 2 classes
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1]]])
    dets = coco_detections(logits, boxes, [7], torch.tensor([[100, 200]]), [11, 22], softmax=False, top_k=3)
    assert [(d["category_id"], round(d["score"], 4)) for d in dets] == [
        (22, round(torch.sigmoid(torch.tensor(3.0)).item(), 4)),
        (11, round(torch.sigmoid(torch.tensor(2.0)).item(), 4)),
        (22, round(torch.sigmoid(torch.tensor(1.0)).item(), 4))]
    assert dets[0]["bbox"] == [80.0, 30.0, 40.0, 40.0]  # query 0: cx 100, cy 50, w 40, h 40
    assert dets[1]["bbox"] == [0.0, 25.0, 100.0, 50.0]  # query 1
    assert {d["image_id"] for d in dets} == {7}


# --------------------------------------------------------------------------- smoke end to end
def _cfg(epochs: int):
    return load_config(R.CONFIG_PATH, "smoke", {"train.epochs": epochs})


def _history(path: Path) -> list[dict[str, str]]:
    lines = (path / "history.csv").read_text().splitlines()
    head = lines[0].split(",")
    return [dict(zip(head, ln.split(","), strict=True)) for ln in lines[1:]]


def test_smoke_detr_learns_and_gal_records(gal_cache, tmp_path):
    cfg = _cfg(12)  # the smoke profile: 12 epochs x 8 steps
    counts = R.run_table("smoke", runs_root=tmp_path, progress=False)
    assert counts["complete"] == 2 and counts["failed"] == 0
    for method in ("baseline", "gal"):
        d = R.RunSpec("smoke", "shapes", "detr_tiny", method, 0).run_dir(tmp_path)
        hist = _history(d)
        assert len(hist) == 12
        first = float(hist[0]["train_loss"])
        last = sum(float(h["train_loss"]) for h in hist[-3:]) / 3
        assert last < 0.9 * first, (method, first, last)
        m = json.loads((d / "metrics.json").read_text())
        assert 0.0 <= m["ap50"] <= 100.0 and math.isfinite(m["val_loss"])
        conf = (d / "config.yaml").read_text()
        assert "task: detection" in conf and f"method: {method}" in conf
        if method == "gal":
            assert "h_params: 1428" in conf and "remainder" in hist[0]
    paths = render_table(4, tmp_path, tmp_path / "tables")
    md = paths["md"].read_text()
    assert "DETR tiny" in md and "39.13" in md and "1344" in md  # the paper's R50 beside it
    assert cfg["gal"]["arch"] == [64, 16] and cfg["gal"]["alpha"] == 0.01


def test_smoke_resume_equals_uninterrupted(gal_cache, tmp_path, monkeypatch):
    cfg = _cfg(2)
    spec = R.RunSpec("smoke", "shapes", "detr_tiny", "gal", 0)
    assert R.run_one(spec, cfg, tmp_path / "a") == "complete"
    interrupt_at_epoch(R, spec, cfg, tmp_path / "b", monkeypatch)
    assert R.run_one(spec, cfg, tmp_path / "b") == "complete"
    a, b = spec.run_dir(tmp_path / "a"), spec.run_dir(tmp_path / "b")
    drop = ("s_per_image", "train_time_s")
    ma, mb = (({k: v for k, v in json.loads((p / "metrics.json").read_text()).items() if k not in drop})
              for p in (a, b))
    assert ma == mb
    assert json.loads((b / "provenance.json").read_text())["resumed"]


def test_bad_config_and_data_errors(gal_cache, tmp_path):
    cfg = _cfg(1)
    with pytest.raises(Exception, match="unknown model"):
        R.run_settings(cfg, R.RunSpec("smoke", "shapes", "nope", "baseline", 0))
    with pytest.raises(Exception, match="unknown method"):
        R.run_settings(cfg, R.RunSpec("smoke", "shapes", "detr_tiny", "gal2", 0))
    rc = R.main(["--profile", "smoke", "--dataset", "coco", "--runs-root", str(tmp_path), "--no-progress"])
    assert rc == 2  # COCO without data.root: one clear error, no record
    assert not any(tmp_path.rglob("status.json"))


@pytest.mark.parametrize("model", ["detr_tiny", "cdetr_tiny"])
def test_coco_tiny_trains_and_evaluates_end_to_end(gal_cache, tmp_path, model):
    """The real COCO subset through both detectors (the paper profile's DETR, the cpu profile's
    Conditional DETR): 80 categories, COCOeval on the validation images."""
    _coco_tiny()  # skips without the data
    over = {"train.epochs": 1, "datasets.coco_tiny.data.size": 96, "datasets.coco_tiny.data.max_images": 16}
    counts = R.run_table("smoke", dataset="coco_tiny", models=[model], methods=["gal"], runs_root=tmp_path,
                         overrides=over, progress=False)
    assert counts["complete"] == 1
    d = R.RunSpec("smoke", "coco_tiny", model, "gal", 0).run_dir(tmp_path)
    m = json.loads((d / "metrics.json").read_text())
    assert {"ap", "ap50"} <= set(m) and all(0.0 <= m[k] <= 100.0 for k in ("ap", "ap50"))
    conf = (d / "config.yaml").read_text()
    assert "COCO-tiny" in conf and "n_train_images: 16" in conf


def test_frozen_backbone_needs_weights_and_freezes_like_detr(tmp_path):
    import timm

    cfg = dict(TINY, backbone="resnet18", backbone_norm="frozen")
    with pytest.raises(ValueError, match="backbone_weights"):
        build_detr(cfg, num_labels=3)
    torch.manual_seed(0)
    ref = timm.create_model("resnet18", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model = build_detr(dict(cfg, backbone_weights=str(tmp_path / "resnet18.pth")), num_labels=3)
    bb = dict(model.model.backbone.model.named_parameters())
    torch.testing.assert_close(bb["layer3.0.conv1.weight"], ref.layer3[0].conv1.weight)
    assert not bb["conv1.weight"].requires_grad and not bb["layer1.0.conv1.weight"].requires_grad
    assert bb["layer2.0.conv1.weight"].requires_grad and bb["layer4.1.conv2.weight"].requires_grad
    bn = model.model.backbone.model.bn1
    assert type(bn).__name__ == "DetrFrozenBatchNorm2d"
    torch.testing.assert_close(bn.running_var, ref.bn1.running_var)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="does not fit"):
        build_detr(dict(cfg, backbone_weights=str(tmp_path / "wrong.pth")), num_labels=3)
    thawed = build_detr(dict(cfg, backbone_norm="batchnorm"), num_labels=3)
    assert isinstance(thawed.model.backbone.model.bn1, torch.nn.BatchNorm2d)


def test_config_hash_counts_the_device_type_only():
    import hashlib

    from experiments.common import config_hash
    from gal_suite.records import to_builtin

    s = {"device": "cpu", "train": {"lr": 0.1}}
    blob = json.dumps(to_builtin(s), sort_keys=True, default=str)  # the hash of CPU runs is unchanged
    assert config_hash(s) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert config_hash({**s, "device": "cuda:3"}) == config_hash({**s, "device": "cuda:0"}) \
        == config_hash({**s, "device": "cuda"}) != config_hash(s)


def test_controls_noise_and_frozen_h(gal_cache, tmp_path, monkeypatch):
    """The two controls of GAL's effect on DETR: the noise adjuster at GAL's alpha (no h) and
    GAL with h frozen at its initialisation; GAL itself trains h."""
    cfg = load_config(R.CONFIG_PATH, "smoke")
    for method, extra in R.METHOD_GAL.items():
        s = R.run_settings(cfg, R.RunSpec("smoke", "shapes", "detr_tiny", method, 0))
        assert s["gal"] == {**cfg["gal"], **extra}
    made = {}

    def capture(g, dim, seed, arch=None):
        adj = R_gal_from_settings(g, dim, seed, arch)
        made[g.get("adjuster", "mlp"), bool(g.get("freeze_h"))] = (adj, adj.h.state_dict())
        return adj

    R_gal_from_settings = R.gal_from_settings
    monkeypatch.setattr(R, "gal_from_settings", capture)
    counts = R.run_table("smoke", methods=["gal", "gal_noise", "gal_frozen_h"], runs_root=tmp_path,
                         overrides={"train.epochs": 2}, progress=False)
    assert counts["complete"] == 3 and counts["failed"] == 0
    fresh = R_gal_from_settings(cfg["gal"], 4, 0).h.flat
    trained, frozen = made["mlp", False][0].h.flat, made["mlp", True][0].h.flat
    assert torch.equal(frozen.detach().cpu(), fresh) and not frozen.requires_grad
    assert not torch.equal(trained.detach().cpu(), fresh)  # GAL's h moved
    assert count_parameters(made["normal", False][0].h) == 0
    for method, h in (("gal_noise", 0), ("gal_frozen_h", 1428)):
        conf = (R.RunSpec("smoke", "shapes", "detr_tiny", method, 0).run_dir(tmp_path) / "config.yaml")
        assert f"h_params: {h}" in conf.read_text()
