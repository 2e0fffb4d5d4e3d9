"""Table IV's control contrasts (Sec. V-B): paired differences of two method rows, checked
against a hand computation of the paired t interval, the direction rule and Holm's adjustment,
and the note on differences from the paper's setting."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as st

from gal_suite.tables.contrasts import Contrast, contrast_cell, contrast_stats, holm_contrasts
from gal_suite.tables.table4 import differences


def _arm(values: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"seed": list(values), "ap": list(values.values())})


def test_contrast_is_the_paired_t_interval_of_b_minus_a_by_hand():
    a = _arm({0: 60.0, 1: 62.0, 2: 58.0, 3: 61.0})
    b = _arm({0: 57.0, 1: 60.5, 2: 55.0, 3: 58.5, 9: 10.0})  # seed 9 has no pair: left out
    c = contrast_stats(a, b, "ap", higher_is_better=True)
    d = [-3.0, -1.5, -3.0, -2.5]
    mean, sd = sum(d) / 4, math.sqrt(sum((x - sum(d) / 4) ** 2 for x in d) / 3)
    half = st.t.ppf(0.975, 3) * sd / 2
    assert c["n"] == 4 and c["mean"] == pytest.approx(mean)
    assert c["ci"] == pytest.approx((mean - half, mean + half))
    assert c["p"] == pytest.approx(st.ttest_1samp(d, 0.0).pvalue)
    assert c["direction"] == "B worse"  # the CI lies below 0 and AP is higher-is-better
    cell = contrast_cell(c, Contrast("gal_noise", "baseline", "x"), 2)
    assert cell.startswith("-2.50 [") and cell.endswith("n=4; gal_noise worse")


def test_unresolved_contrast_and_holm_marks():
    a = _arm({0: 1.0, 1: 2.0, 2: 3.0})
    same = contrast_stats(a, _arm({0: 1.5, 1: 1.5, 2: 3.2}), "ap", True)
    assert same["direction"] == "no difference resolved"
    clear = contrast_stats(a, _arm({0: 5.0, 1: 6.1, 2: 6.9}), "ap", True)
    assert clear["direction"] == "B better"
    rows = [{"c": "x"}, {"c": "y"}]
    holm_contrasts([(same, rows[0], "c"), (clear, rows[1], "c")])
    adj = sorted([same["p"], clear["p"]])
    assert clear["holm_p"] == pytest.approx(min(1.0, 2 * adj[0]))  # Holm: smallest p times m
    assert rows[0]["c"] == "x"  # an unresolved contrast gets no mark
    assert rows[1]["c"] == "y (Holm " + ("✓" if clear["holm_p"] < 0.05 else "✗") + ")"


def test_differences_from_the_papers_setting():
    row = {"settings.model.backbone": "resnet10t", "settings.model.num_queries": 10,
           "settings.model.d_model": 256, "settings.model.encoder_layers": 6,
           "settings.model.decoder_layers": 6, "settings.model.variant": "conditional_detr",
           "settings.train.epochs": 20, "settings.train.lr": 1e-4,
           "settings.train.lr_backbone": 1e-5, "settings.train.batch_size": 8}
    assert differences(row) == ["backbone resnet10t (paper resnet50)", "num_queries 10 (paper 100)",
                                "variant conditional_detr (paper detr)", "epochs 20 (paper 150)"]
    row["settings.model.variant"] = float("nan")  # an old record without the key: DETR
    assert "variant" not in " ".join(differences(row))


def test_diagnostics_note_averages_epochs_then_runs(tmp_path):
    """GAL's step diagnostics of Table IV: per run the mean over its epochs, then mean and sd
    over the complete runs (a failed run and the baseline, which has none, left out)."""
    from gal_suite.tables.table4 import diagnostics, diagnostics_note

    hist = {("gal", 0): {"cosine": [0.1, 0.3], "abs_remainder": [1e-5, 3e-5], "accept_rate": [1.0, 0.5],
                         "g_beats_grad": [0.4, 0.6]},
            ("gal", 1): {"cosine": [-0.2, 0.0], "abs_remainder": [2e-5, 2e-5], "accept_rate": [1.0, 1.0],
                         "g_beats_grad": [0.5, 0.5]},
            ("gal", 2): {"cosine": [9.0, 9.0], "abs_remainder": [9.0, 9.0], "accept_rate": [0.0, 0.0],
                         "g_beats_grad": [0.0, 0.0]},  # failed: left out
            ("baseline", 0): {}}
    rows = []
    for (method, seed), cols in hist.items():
        d = tmp_path / method / f"seed-{seed}"
        d.mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], **cols}).to_csv(d / "history.csv", index=False)
        rows.append({"profile": "cpu", "dataset": "shapes", "model_key": "m", "method": method, "seed": seed,
                     "status": "failed" if seed == 2 else "complete", "path": str(d)})
    out = diagnostics(pd.DataFrame(rows))
    assert list(out) == [("cpu", "shapes", "m")] and list(out[("cpu", "shapes", "m")]) == ["gal"]
    gal = out[("cpu", "shapes", "m")]["gal"]
    cos = [0.2, -0.1]  # the two complete runs' epoch means
    assert gal["cosine"][0] == pytest.approx(0.05) and gal["cosine"][2] == 2
    assert gal["cosine"][1] == pytest.approx(math.sqrt(sum((c - 0.05) ** 2 for c in cos)))
    assert gal["abs_remainder"][0] == pytest.approx(2e-5) and gal["accept_rate"][0] == pytest.approx(0.875)
    note = diagnostics_note(pd.DataFrame(rows))
    assert "`cpu`/shapes/m: GAL (proposed) (n = 2): cos(ṽ, ∂ℓ/∂z) +0.0500 ± 0.2121" in note
    assert "g accepted 87.5% ± 17.7%" in note and "g beats ∂ℓ/∂z 50.0% ± 0.0%" in note


def test_diagnostics_note_pairs_gal_with_the_noise_control_by_seed(tmp_path):
    from gal_suite.tables.table4 import diagnostics_note

    beats = {"gal": {0: 0.46, 1: 0.47, 2: 0.45}, "gal_noise": {0: 0.50, 1: 0.505, 2: 0.49, 7: 0.1}}
    rows = []
    for method, seeds in beats.items():
        for seed, b in seeds.items():
            d = tmp_path / method / f"seed-{seed}"
            d.mkdir(parents=True)
            pd.DataFrame({"epoch": [1, 2], "cosine": [0.0, 0.0], "g_beats_grad": [b, b]}).to_csv(
                d / "history.csv", index=False)
            rows.append({"profile": "cpu", "dataset": "shapes", "model_key": "m", "method": method,
                         "seed": seed, "status": "complete", "path": str(d)})
    d = [100 * (beats["gal"][s] - beats["gal_noise"][s]) for s in (0, 1, 2)]  # seed 7 has no pair
    mean, sd = sum(d) / 3, math.sqrt(sum((x - sum(d) / 3) ** 2 for x in d) / 2)
    half = st.t.ppf(0.975, 2) * sd / math.sqrt(3)
    note = diagnostics_note(pd.DataFrame(rows))
    assert (f"g beats ∂ℓ/∂z {mean:+.1f} points [{mean - half:+.1f}, {mean + half:+.1f}] (n = 3)"
            in note), note
    assert "GAL (proposed) − N(0,1) noise at GAL's α" in note
