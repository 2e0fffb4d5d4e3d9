"""The cpu profile's backbone pre-training (stand-in for DETR's ImageNet weights, Sec. V-B):
image-level labels by hand, the pre-training lowers its loss, the weights are made once and
reused, land in the DETR backbone unchanged, leave the caller's RNG alone and are recorded."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from detr_gal import run as R
from detr_gal.model import backbone_of, build_detr
from detr_gal.pretrain import presence_targets, pretrain_backbone
from gal_suite.config import ConfigError, load_config

PRE = {"epochs": 2, "lr": 2e-3, "batch_size": 16, "weight_decay": 1e-4, "seed": 0}
SMALL = {"model.backbone_kwargs": {"out_indices": [1, 2]}, "model.pretrain": PRE,
         "models.detr_tiny.backbone": "resnet10t", "train.epochs": 1}


def test_presence_targets_by_hand():
    t = [{"class_labels": torch.tensor([2, 0, 2])}, {"class_labels": torch.tensor([], dtype=torch.int64)},
         {"class_labels": torch.tensor([1])}]
    assert presence_targets(t, 3).tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]


def _setup():
    cfg = load_config(R.CONFIG_PATH, "smoke", SMALL)
    settings = R.run_settings(cfg, R.RunSpec("smoke", "shapes", "detr_tiny", "baseline", 0))
    train, _ = R.load_data(settings)
    return settings, train


def test_pretraining_lowers_its_loss(gal_cache):
    settings, train = _setup()
    torch.manual_seed(0)
    bb = backbone_of(build_detr({**settings["model"], "pretrain": None}, len(train.cat_ids)))
    short = pretrain_backbone(bb, train, epochs=1, lr=2e-3, batch_size=16, weight_decay=0.0, seed=0)
    longer = pretrain_backbone(bb, train, epochs=8, lr=2e-3, batch_size=16, weight_decay=0.0, seed=0)
    assert longer["bce"] < short["bce"] and 0.0 <= longer["accuracy"] <= 1.0


def test_pretrained_backbone_is_cached_loaded_and_recorded(gal_cache, tmp_path):
    settings, train = _setup()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model_cfg, pre = R._with_pretrained_backbone(settings, train)
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG is untouched
    path = pre["path"]
    mtime = os.path.getmtime(path)
    _, pre2 = R._with_pretrained_backbone(settings, train)
    assert pre2 == pre and os.path.getmtime(path) == mtime  # made once, reused
    saved = torch.load(path, weights_only=True)
    model = build_detr(model_cfg, len(train.cat_ids))
    own = backbone_of(model).state_dict()
    assert set(own) == set(saved)
    for k, v in saved.items():
        assert torch.equal(own[k], v), k  # batch-norm statistics included
    # a run records the pre-training (sha256, loss, accuracy)
    counts = R.run_table("smoke", runs_root=tmp_path, progress=False, overrides=SMALL, methods=["baseline"])
    assert counts["complete"] == 1
    conf = yaml.safe_load((R.RunSpec("smoke", "shapes", "detr_tiny", "baseline", 0).run_dir(tmp_path)
                           / "config.yaml").read_text())
    rec = conf.get("backbone_pretrain") or conf.get("config", {}).get("backbone_pretrain")
    assert rec["sha256"] == pre["sha256"] and 0.0 < rec["bce"] < 1.0


def test_pretrain_needs_a_trainable_backbone(gal_cache):
    cfg = load_config(R.CONFIG_PATH, "smoke", {**SMALL, "models.detr_tiny.backbone_norm": "frozen"})
    settings = R.run_settings(cfg, R.RunSpec("smoke", "shapes", "detr_tiny", "baseline", 0))
    train, _ = R.load_data(settings)
    with pytest.raises(ConfigError, match="backbone_norm: batchnorm"):
        R._with_pretrained_backbone(settings, train)
