"""One vocabulary per kind of name (gal_suite.vocab): every optimizer a config names has a registry
entry, an unknown name fails with one clear error, and runners, tables and figures read the
registry instead of copies of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from gal import optim
from gal_suite import vocab
from gal_suite.config import load_config
from gal_suite.vocab import OPTIMIZER_LABELS, OPTIMIZERS, UnknownName

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"


def _profiles(name: str) -> list[dict]:
    """The resolved config of every profile of ``configs/<name>``."""
    path = CONFIGS / name
    raw = yaml.safe_load(path.read_text())
    return [load_config(path, p) for p in raw.get("profiles") or {}]


def config_optimizer_keys() -> set[str]:
    """Every optimizer key any config of the suite names (all profiles)."""
    keys: set[str] = set()
    for name in ("cifar.yaml", "imagenet.yaml", "toy3d.yaml"):
        for cfg in _profiles(name):
            keys |= set(cfg["optimizers"])
            for plan in (cfg.get("run") or {}).values():
                keys |= set(plan.get("optimizers") or [])
                for part in plan.values():
                    if isinstance(part, dict):
                        keys |= set(part.get("optimizers") or [])
    keys |= {cfg["train"]["optimizer"] for cfg in _profiles("regression.yaml")}
    return keys


def test_every_config_optimizer_is_in_the_registry():
    keys = config_optimizer_keys()
    assert {"sgd", "lookahead_sgd", "adabound", "rmsproptf", "adam", "rmsprop"} <= keys
    assert keys <= set(OPTIMIZERS), sorted(keys - set(OPTIMIZERS))


def test_fig4_order_is_the_toy3d_config_order():
    """Fig. 4's columns (gal_suite.vocab.FIG4_OPTIMIZER_ORDER) are the 3D example's optimizers in the
    config's order; their titles stay the config's labels ("GD", "Lookahead(GD)", written into
    the run records), not the registry's table labels."""
    for cfg in _profiles("toy3d.yaml"):
        assert tuple(cfg["optimizers"]) == vocab.FIG4_OPTIMIZER_ORDER
    assert set(vocab.FIG4_OPTIMIZER_ORDER) <= set(OPTIMIZERS)


def test_detr_optimizer_is_in_the_registry():
    from detr_gal import run

    assert run.OPTIMIZER in OPTIMIZERS


def test_unknown_optimizer_one_clear_error():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(UnknownName) as err:
        optim.build_optimizer("adagrad2", p, lr=0.1)
    msg = str(err.value)
    assert msg.startswith("unknown optimizer 'adagrad2'; choose one of sgd, lookahead_sgd")
    assert "gal.optim.BUILDERS" in msg
    assert isinstance(err.value, ValueError) and isinstance(err.value, KeyError)
    assert OPTIMIZERS.get("adagrad2") is None  # a Mapping: .get still answers None
    assert UnknownName is optim.UnknownName  # the suite's vocabularies raise the library's error


def test_builders_come_from_the_registry(monkeypatch):
    """build_optimizer dispatches on the library's registry (gal.optim.BUILDERS): a new builder
    is buildable with no other edit."""
    builder = lambda params, lr, **kw: torch.optim.Adagrad(params, lr=lr, **kw)  # noqa: E731
    monkeypatch.setitem(optim.BUILDERS._entries, "adagrad", builder)
    opt = optim.build_optimizer("adagrad", [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert isinstance(opt, torch.optim.Adagrad)


def test_optim_names_are_the_registry():
    """The suite names exactly the library's optimizers, in the library's order."""
    assert optim.OPTIMIZERS == tuple(optim.BUILDERS) == tuple(OPTIMIZERS)
    assert set(vocab.OPTIMIZER_ORDER) <= set(OPTIMIZERS)
    assert vocab.PAPER_OPTIMIZER["lookahead_sgd"] == "lookahead"


def test_figures_read_the_registry_colours():
    """Figs. 6-7 colour each optimizer by the registry (gal_suite.vocab.optimizer_colour, re-exported by
    gal_suite.fig_style), with no colour table of their own; the colours of the committed figures."""
    from gal_suite import fig_ablation, fig_analysis, fig_style

    assert fig_analysis.optimizer_colour is fig_ablation.optimizer_colour is vocab.optimizer_colour
    assert fig_style.optimizer_colour is vocab.optimizer_colour
    assert not hasattr(fig_style, "OPT_COLORS")
    assert [vocab.optimizer_colour(k) for k in vocab.OPTIMIZER_ORDER] == [
        fig_style.RED, fig_style.BLUE, "tab:green"]
    assert vocab.optimizer_colour("rmsprop") == "tab:purple"  # the figures' fallback


def test_fig7_optimizers_in_the_registry_order():
    """Fig. 7's optimizers are those of its caption (PAPER_FIXED), every one a registry key of
    Tables I-II, in the registry's order."""
    from gal_suite import fig_ablation

    assert fig_ablation.FIG7_OPTIMIZERS == ("sgd", "lookahead_sgd")
    assert set(fig_ablation.PAPER_FIXED) == set(fig_ablation.FIG7_OPTIMIZERS)


def test_table7_names_come_from_the_registries():
    """Table VII's dataset blocks and its baseline / GAL rows are named by gal_suite.vocab."""
    from gal_suite.tables.table7 import TABLE7

    assert [s.label for s in TABLE7.settings] == [vocab.DATASET_LABELS[s.key] for s in TABLE7.settings]
    assert set(TABLE7.record_subdirs.values()) <= {s.label for s in TABLE7.settings}
    assert {m: TABLE7.arms[m] for m in ("baseline", "gal")} == {
        m: vocab.METHOD_LABELS[m] for m in ("baseline", "gal")}


def _param_ids(groups):
    return [[id(p) for p in g["params"]] for g in groups]


def test_place_h_layouts():
    model = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    h = [torch.nn.Parameter(torch.zeros(4))]
    base = [{"params": model[:1], "weight_decay": 0.0}, {"params": model[1:]}]
    shared, none = optim.place_h(base, h, "shared")
    assert none == [] and _param_ids(shared) == _param_ids([base[0], {"params": model[1:] + h}])
    assert shared[0]["weight_decay"] == 0.0 and len(base[1]["params"]) == 1  # input untouched
    group, none = optim.place_h(base, h, "group", h_lr=0.5, h_weight_decay=1e-5)
    assert none == [] and group[-1] == {"params": h, "lr": 0.5, "weight_decay": 1e-5}
    sep, own = optim.place_h(base, h, "separate")
    assert _param_ids(sep) == _param_ids(base) and _param_ids(own) == _param_ids([{"params": h}])
    assert optim.place_h(base, [], "separate")[1] == []
    assert optim.place_h(base, [], "group", h_lr=0.1)[0][-1] == {"params": [], "lr": 0.1}
    with pytest.raises(UnknownName, match="choose one of shared, group, separate"):
        optim.place_h(base, h, "joined")


def test_param_groups_unchanged_layouts():
    """gal.param_groups (built on place_h) keeps its two layouts."""
    model = torch.nn.Linear(2, 2)
    h = torch.nn.Linear(2, 2)
    n_model = len(list(model.parameters()))
    assert [len(g["params"]) for g in optim.param_groups(model, h)] == [n_model + 2]
    own = optim.param_groups(model, h, h_lr=0.1)
    assert [len(g["params"]) for g in own] == [n_model, 2] and own[1]["lr"] == 0.1
    assert optim.param_groups(model, None, h_lr=0.1) == [{"params": list(model.parameters())}]


def test_tables_and_runners_read_the_registry():
    from experiments import classification_plan
    from gal_suite import fig_style
    from gal_suite.tables import classification, table3

    assert classification.OPTIMIZER_LABELS is OPTIMIZER_LABELS
    assert table3.OPTIMIZER_LABELS is OPTIMIZER_LABELS
    assert fig_style.OPTIMIZER_LABELS is OPTIMIZER_LABELS
    assert classification.OPTIMIZERS == vocab.OPTIMIZER_ORDER == classification_plan.OPTIMIZERS
    opt_key = next(g for g in classification.TABLE1.groups if g.column == "optimizer")
    assert opt_key.labels is OPTIMIZER_LABELS and opt_key.standard == vocab.OPTIMIZER_ORDER


@pytest.mark.skipif(not (REPO / "results" / "runs" / "table1").is_dir(), reason="no committed Table I records")
def test_rendered_table_labels_come_from_the_registry(tmp_path, monkeypatch):
    """Relabelling an optimizer in the registry relabels it in the rendered Table I."""
    from gal_suite.tables import render_table

    monkeypatch.setitem(OPTIMIZER_LABELS, "lookahead_sgd", "Lookahead-registry-label")
    md = render_table(1, REPO / "results" / "runs", tmp_path)["md"].read_text()
    assert "Lookahead-registry-label" in md and "Lookahead (SGD)" not in md


def test_methods_registry_drives_runners_and_tables():
    """Named methods: one label and one GAL change each, read by the runners and Tables I-V."""
    from detr_gal import run as detr
    from experiments import classification_plan, gal_variants, regression
    from gal_suite.tables import classification, table5

    assert gal_variants.parse_method("gal_alpha0") == vocab.gal_overrides("gal_alpha0") == {"alpha": 0.0}
    assert gal_variants.parse_method("baseline") is None and gal_variants.parse_method("gal") == {}
    assert classification_plan.METHODS == vocab.CLASSIFICATION_METHODS
    assert detr.METHODS == vocab.DETECTION_METHODS
    assert detr.METHOD_GAL == {"gal": {}, "gal_alpha0": {"alpha": 0.0},
                               "gal_noise": {"adjuster": "normal", "noise_scaling": "eq4", "arch": []},
                               "gal_frozen_h": {"freeze_h": True}}
    assert regression.METHODS == vocab.REGRESSION_METHODS
    assert regression.SKLEARN_METHODS == ("ols", "mlp_sklearn")
    assert [(m.key, m.label) for m in classification.ARM_METHODS] == [
        (k, vocab.METHOD_LABELS[k]) for k in vocab.CLASSIFICATION_METHODS]
    assert table5.TABLE5_METHODS == {k: vocab.METHOD_LABELS[k] for k in vocab.REGRESSION_METHODS}


def test_gal_overrides_are_fresh_copies():
    a = vocab.gal_overrides("gal_noise")
    a["arch"].append(3)
    assert vocab.gal_overrides("gal_noise")["arch"] == []
    with pytest.raises(UnknownName, match="unknown method 'gal_beta0'; choose one of baseline, gal"):
        vocab.gal_overrides("gal_beta0")


def test_every_config_dataset_is_in_the_registry():
    loaders = {"cifar.yaml": "image", "imagenet.yaml": "image", "regression.yaml": "regression",
               "detr.yaml": "coco"}
    for name, loader in loaders.items():
        for cfg in _profiles(name):
            for key in cfg["datasets"]:
                assert vocab.DATASETS[key].loader == loader, (name, key)
    for key, entry in vocab.DATASETS.items():
        assert entry.stands_in_for is None or vocab.DATASETS[entry.stands_in_for].stands_in_for is None, key


def test_tables_read_the_dataset_registry():
    from gal_suite.tables import classification, table5

    assert classification._DATASETS == {1: ("cifar10", "cifar10_jpeg"), 2: ("cifar100", "tiny100_32")}
    assert classification._PAPER_DATASET == {1: "CIFAR-10", 2: "CIFAR-100"}
    assert table5.TABLE5_DATASETS == ("boston", "diabetes", "california")
    assert table5.DATASET_LABELS["boston"] == vocab.DATASETS["boston"].label == "Boston housing"
    with pytest.raises(UnknownName, match="unknown dataset 'cifar1000'"):
        vocab.with_stand_ins("cifar1000")
