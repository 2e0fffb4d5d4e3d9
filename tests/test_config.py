"""gal_suite.config: profiles deep-merge over `common`, overrides, and one clear ConfigError per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from gal_suite.config import ConfigError, deep_merge, load_config, parse_overrides

REPO = Path(__file__).resolve().parents[1]
REGRESSION = REPO / "experiments" / "configs" / "regression.yaml"

BASIC = """\
common:
  seeds: 5             # comment
  name: demo
  flag: true
  maybe: null
  train:
    lr: 0.001
    epochs: 10
    hidden: [64, 32]
  datasets:
    a: {epochs: 3, batch: 8}
    b: {epochs: 4, batch: 16}
profiles:
  paper: {}
  cpu:
    train:
      epochs: 2
    datasets:
      b: {batch: 4}
"""


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    p = tmp_path / "basic.yaml"
    p.write_text(BASIC)
    return p


def test_profile_deep_merges_over_common(basic: Path) -> None:
    paper = load_config(basic, "paper")
    cpu = load_config(basic, "cpu")
    assert paper["train"] == {"lr": 0.001, "epochs": 10, "hidden": [64, 32]}
    assert cpu["train"] == {"lr": 0.001, "epochs": 2, "hidden": [64, 32]}
    assert cpu["datasets"] == {"a": {"epochs": 3, "batch": 8}, "b": {"epochs": 4, "batch": 4}}


def test_overrides_nested_dotted_and_int_to_float(basic: Path) -> None:
    cfg = load_config(basic, "cpu", {"train.lr": 1, "datasets": {"a": {"epochs": 7}}, "maybe": 3})
    assert cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)
    assert cfg["datasets"]["a"] == {"epochs": 7, "batch": 8}
    assert cfg["maybe"] == 3
    # the input file is not mutated between loads
    assert load_config(basic, "cpu")["train"]["lr"] == 0.001


def test_parse_overrides_yaml_values() -> None:
    assert parse_overrides(["train.lr=1e-2", "train.hidden=[8, 4]", "flag=false", "name=x y"]) == {
        "train.lr": 0.01, "train.hidden": [8, 4], "flag": False, "name": "x y"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.lr"])


def test_deep_merge_is_unchecked_and_pure() -> None:
    a = {"x": {"y": 1, "z": 2}}
    assert deep_merge(a, {"x": {"y": 5}, "w": 1}) == {"x": {"y": 5, "z": 2}, "w": 1}
    assert a == {"x": {"y": 1, "z": 2}}


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"train.lrr": 0.1}, ["unknown key 'train.lrr'", "known keys under train: epochs, hidden, lr",
                              "add 'train.lrr'"]),
        ({"train.epochs": "ten"}, ["'train.epochs' must be of type int", "got str 'ten'"]),
        ({"train.epochs": 2.5}, ["'train.epochs' must be of type int", "got float"]),
        ({"flag": 2}, ["'flag' must be of type bool"]),
        ({"train.hidden": 64}, ["'train.hidden' must be of type list"]),
        ({"train": 3}, ["'train' is a section"]),
        ({"datasets.c.epochs": 1}, ["unknown key 'datasets.c'", "known keys under datasets: a, b"]),
    ],
)
def test_bad_overrides_give_one_clear_error(basic: Path, overrides: dict, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(basic, "cpu", overrides)
    msg = str(ei.value)
    assert str(basic) in msg and "overrides" in msg
    for n in needles:
        assert n in msg, msg
    assert ei.value.__cause__ is None


def test_unknown_profile(basic: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'gpu' \(available: cpu, paper\)"):
        load_config(basic, "gpu")


def test_profile_with_unknown_key_names_profile(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("common:\n  a: 1\nprofiles:\n  cpu:\n    b: 2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: profile 'cpu': unknown key 'b'"):
        load_config(p, "cpu")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("common:\n  a: [1, 2\nprofiles: {}\n", "malformed YAML at line"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("common:\n  a: 1\n", "'profiles:' is missing"),
        ("common:\n  a: 1\nprofiles: {cpu: {}}\nextra: 1\n", "unknown top-level key(s) extra"),
        ("common:\n  a: 1\nprofiles:\n  cpu: 3\n", "profile 'cpu' must be a mapping"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(p, "cpu")
    assert needle in str(ei.value) and str(p) in str(ei.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", "cpu")


@pytest.mark.parametrize("profile", ["paper", "cpu"])
def test_regression_config_resolves(profile: str) -> None:
    cfg = load_config(REGRESSION, profile)
    assert cfg["task"] == "regression" and cfg["table"] == 5 and cfg["seeds"] == 5
    assert cfg["gal"]["alpha"] == 0.001 and cfg["gal"]["beta"] == 0.001  # Sec. V-B
    assert cfg["train"]["optimizer"] == "adam"
    assert cfg["datasets"]["boston"]["hidden"] == [100, 50]
    assert cfg["datasets"]["diabetes"]["hidden"] == [64, 32]
    assert cfg["datasets"]["california"]["hidden"] == [256, 64]
    assert cfg["datasets"]["boston"]["adjuster_arch"] == [16, 4]
    assert cfg["datasets"]["diabetes"]["adjuster_arch"] == [128, 4]
    assert cfg["datasets"]["california"]["adjuster_arch"] == [128, 2]


def test_regression_config_documents_unstated_settings() -> None:
    """Every setting the paper leaves open carries an 'UNSTATED' comment in the YAML."""
    text = REGRESSION.read_text()
    for key in ("test_size:", "split_seed:", "lr:", "epochs:", "batch_size:", "granularity:",
                "h_optimizer:", "num_threads:"):
        lines = [ln for ln in text.splitlines() if ln.strip().startswith(key)]
        assert lines, key
        assert any("UNSTATED" in ln for ln in lines), key


def test_exponent_floats_without_dot_are_floats(tmp_path: Path) -> None:
    """YAML 1.1 reads `1e-3` as a string; the config loader reads it as the float it means."""
    p = tmp_path / "e.yaml"
    p.write_text("common:\n  lr: 0.1\nprofiles:\n  cpu:\n    lr: 1e-3\n")
    assert load_config(p, "cpu")["lr"] == 0.001


# --------------------------------------------------------------------------- types and ranges
DETR = REPO / "experiments" / "configs" / "detr.yaml"
CIFAR = REPO / "experiments" / "configs" / "cifar.yaml"


@pytest.mark.parametrize("text", ["0" * 64, "1234", "0x1f", "007", "true"])
def test_a_checksum_override_stays_text(text: str) -> None:
    """``--set ...sha256=000...0`` was the integer 0 (and disabled the check); ``=1234`` crashed
    later. A key whose default is null but a string in its sibling datasets stays the text."""
    cfg = load_config(DETR, "cpu", parse_overrides([f"datasets.coco.data.sha256={text}"]))
    assert cfg["datasets"]["coco"]["data"]["sha256"] == text


def test_overrides_keep_the_type_of_their_default(basic: Path) -> None:
    cfg = load_config(basic, "cpu", parse_overrides(["name=0012", "flag=no", "train.lr=1e-2",
                                                     "train.epochs=7", "maybe=1e-3"]))
    assert cfg["name"] == "0012" and cfg["flag"] is False
    assert cfg["train"]["lr"] == 0.01 and cfg["train"]["epochs"] == 7 and cfg["maybe"] == 0.001
    for text, want in (("true", True), ("false", False), ("yes", True), ("1", True), ("0", False)):
        assert load_config(basic, "cpu", parse_overrides([f"flag={text}"]))["flag"] is want
    with pytest.raises(ConfigError, match="key 'flag' must be of type bool"):
        load_config(basic, "cpu", parse_overrides(["flag=maybe"]))
    with pytest.raises(ConfigError, match="key 'train.epochs' must be of type int"):
        load_config(basic, "cpu", parse_overrides(["train.epochs=two"]))


def test_amp_and_channels_last_take_true_false_or_auto() -> None:
    import torch

    from experiments.classification_spec import _auto

    for text in ("auto", "true", "false"):
        cfg = load_config(CIFAR, "cpu", parse_overrides([f"train.amp={text}",
                                                         f"train.channels_last={text}"]))
        assert cfg["train"]["amp"] == text and cfg["train"]["channels_last"] == text
    cpu = torch.device("cpu")
    assert [_auto(t, cpu) for t in ("auto", "true", "false", True, False)] == [False, True, False,
                                                                              True, False]
    with pytest.raises(ConfigError, match="train.amp must be auto, true or false"):
        _auto("sometimes", cpu)


@pytest.mark.parametrize(("item", "needle"), [
    ("train.epochs=0", "'train.epochs' must be an integer >= 1, got 0"),
    ("train.batch_size=0", "'train.batch_size' must be an integer >= 1, got 0"),
    ("train.test_batch_size=-2", "'train.test_batch_size' must be an integer >= 1"),
    ("optimizers.sgd.lr=0", "'optimizers.sgd.lr' must be a number > 0, got 0.0"),
    ("optimizers.adabound.lr=-1e-3", "'optimizers.adabound.lr' must be a number > 0"),
    ("seeds=0", "'seeds' must be an integer >= 1"),
])
def test_out_of_range_settings_are_one_line(item: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(CIFAR, "cpu", parse_overrides([item]))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_every_profile_of_every_config_is_in_range() -> None:
    import yaml

    for path in sorted((REPO / "experiments" / "configs").glob("*.yaml")):
        for profile in yaml.safe_load(path.read_text())["profiles"]:
            load_config(path, profile)


@pytest.mark.parametrize("item", ["datasets.diabetes.epochs=0", "datasets.diabetes.batch_size=0",
                                  "train.lr=0", "train.lr=-0.1"])
def test_bad_range_stops_a_runner_before_any_partial_dir(tmp_path: Path, item: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``epochs=0`` crashed with ZeroDivisionError and left a ``.partial/config.yaml``."""
    from experiments import regression as reg

    rc = reg.main(["--seeds", "1", "--datasets", "diabetes", "--variants", "paper", "--methods",
                   "baseline", "--runs-root", str(tmp_path / "runs"), "--no-progress",
                   "--set", item])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and item.split("=")[0] in err
    assert not (tmp_path / "runs").exists()


def test_class_count_hint_names_a_real_key() -> None:
    import torch

    from experiments.image_data import DataError, ImageSet, check_pair

    s = ImageSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b", "c"], "x")
    with pytest.raises(DataError) as e:
        check_pair(s, s, 2, "datasets.cifar10.num_classes")
    assert "set datasets.cifar10.num_classes to 3" in str(e.value)
    cfg = load_config(CIFAR, "cpu", parse_overrides(["datasets.cifar10.num_classes=3"]))
    assert cfg["datasets"]["cifar10"]["num_classes"] == 3


@pytest.mark.parametrize("raw, want", [("false", False), ("true", True), ("auto", False),
                                       ("off", False), ("True", True)])
def test_amp_and_channels_last_take_true_false_auto(raw: str, want: bool) -> None:
    """``--set train.amp=false`` (a YAML bool) replaces the default ``auto``; on CPU ``auto`` is off."""
    from experiments.classification_spec import RunSpec, run_settings

    over = parse_overrides([f"train.amp={raw}", f"train.channels_last={raw}", "device=cpu"])
    cfg = load_config(CIFAR, "paper", over)
    s = run_settings(cfg, RunSpec(1, "paper", "cifar10", "sgd", "baseline", 0))
    assert s["amp"] is want and s["channels_last"] is want


def test_amp_rejects_other_values_with_one_clear_error(tmp_path: Path) -> None:
    from experiments.classification_spec import RunSpec, run_settings

    cfg = load_config(CIFAR, "paper", {"train.amp": "yes please", "device": "cpu"})  # a str passes the schema
    with pytest.raises(ConfigError, match=r"train.amp must be auto, true or false, got 'yes please'"):
        run_settings(cfg, RunSpec(1, "paper", "cifar10", "sgd", "baseline", 0))
    from experiments.common import choose_device

    with pytest.raises(ConfigError, match="not a device name"):
        choose_device(True)  # type: ignore[arg-type]


def test_committed_records_keep_their_config_hash() -> None:
    """The defaults' stored values are unchanged: a committed cpu-profile Table I record's
    settings (``amp: auto`` in ``train``, resolved ``amp: false``) and config hash are what its
    config resolves to today (keys added to ``train`` after the record was made left out)."""
    import yaml

    from experiments.classification_spec import RunSpec, run_settings
    from experiments.common import config_hash

    rec = Path(__file__).resolve().parents[1] / "results/runs/table1/cpu/cifar10_jpeg/sgd/baseline/seed-0"
    stored = yaml.safe_load((rec / "config.yaml").read_text())
    s = run_settings(load_config(CIFAR, "cpu", {"device": "cpu"}),
                     RunSpec(1, "cpu", "cifar10_jpeg", "sgd", "baseline", 0))
    s["train"] = {k: v for k, v in s["train"].items() if k in stored["settings"]["train"]}
    assert s["train"]["amp"] == "auto" and s["amp"] is False and s["channels_last"] is False
    assert s == stored["settings"]
    assert config_hash(s) == stored["config_hash"]
