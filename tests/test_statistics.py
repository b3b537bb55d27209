"""Paired comparisons and the primary family's verdicts: checked against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from edsr_mlflow import statistics


def test_t_interval_and_paired_p_by_hand():
    # d = 0.1, 0.2, 0.3 dB: mean 0.2, sd 0.1, sem 0.1/sqrt(3); t(0.975, 2) = 4.302653;
    # t = 0.2 / (0.1/sqrt(3)) = 3.4641; for 2 degrees of freedom p = 1 - |t| / sqrt(t^2 + 2).
    mean, half = statistics.t_interval([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2)
    assert half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    t = 0.2 / (0.1 / math.sqrt(3))
    assert statistics.paired_t_p([0.1, 0.2, 0.3]) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)
    assert math.isnan(statistics.t_interval([0.4])[1]) and math.isnan(statistics.paired_t_p([0.4]))
    assert statistics.paired_t_p([0.1, 0.1]) == 0.0 and statistics.paired_t_p([0.0, 0.0]) == 1.0


def test_holm_by_hand():
    # sorted 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> kept monotone at 0.06
    np.testing.assert_allclose(statistics.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(statistics.holm([0.5, float("nan"), 0.2]), [0.5, float("nan"), 0.4])
    np.testing.assert_allclose(statistics.holm([0.9, 0.8]), [1.0, 1.0])  # capped at 1


def test_holm_levels_hold_at_the_first_step_not_rejected():
    # m = 3: steps at 0.05/3, 0.05/2, 0.05. p 0.001 < 0.0167 rejected; 0.03 >= 0.025 stops there,
    # so the last test is judged at 0.025 too (its own step, 0.05, would reject 0.04).
    np.testing.assert_allclose(statistics.holm_levels([0.04, 0.001, 0.03]), [0.025, 0.05 / 3, 0.025])
    np.testing.assert_allclose(statistics.holm_levels([0.001, 0.01, 0.04]), [0.05 / 3, 0.025, 0.05])
    levels = statistics.holm_levels([0.2, float("nan")])
    assert levels[0] == 0.05 and math.isnan(levels[1])


def test_tost_p_by_hand():
    # value 0.01, se 0.01, df 10, margin 0.05: t = (0.01 + 0.05) / 0.01 = 6 and (0.01 - 0.05) / 0.01 = -4.
    from scipy import stats

    assert statistics.tost_p(0.01, 0.01, 10, 0.05) == pytest.approx(max(stats.t.sf(6, 10), stats.t.cdf(-4, 10)))
    assert math.isnan(statistics.tost_p(0.0, 0.0, 10, 0.05))


@pytest.mark.parametrize("value, se, expected", [
    (0.20, 0.01, "larger than the margin"),          # adjusted interval clear of +0.05
    (0.06, 0.01, "difference"),                      # clear of 0, reaches below 0.05 and above it
    (0.02, 0.004, "difference, equivalent within ±0.05 dB"),  # real, and small enough to be within the margin
    (0.00, 0.005, "equivalent within ±0.05 dB"),
    (0.10, 0.20, "not resolved"),
    (0.10, float("nan"), "not resolved"),
])
def test_family_verdicts_say_what_they_tested(value, se, expected):
    # one test per family: judged at 95 %, TOST at 5 %
    (row,) = statistics.family_verdicts(pd.DataFrame({"value": [value], "se": [se], "df": [20.0]}), margin=0.05).to_dict("records")
    assert row["verdict"] == expected


def test_family_verdicts_correct_across_the_family():
    # the same estimate alone is a difference; in a family of 4 its step is alpha / 4 and it is not
    # t = 0.05 / 0.02 = 2.5 on 20 df: p = 0.021 < 0.05, but > 0.0125
    alone = statistics.family_verdicts(pd.DataFrame({"value": [0.05], "se": [0.02], "df": [20.0]}), margin=0.05)
    family = statistics.family_verdicts(pd.DataFrame({"value": [0.05, 0.0, 0.0, 0.0], "se": [0.02, 1, 1, 1], "df": [20.0] * 4}), margin=0.05)
    assert alone["verdict"][0] == "difference" and family["verdict"][0] == "not resolved"
    assert family["p_holm"][0] == pytest.approx(4 * alone["p"][0])
    assert family["adjusted_confidence"][0] == pytest.approx(1 - 0.05 / 4)
    from scipy import stats

    assert family["adjusted_high"][0] - 0.05 == pytest.approx(stats.t.ppf(1 - 0.05 / 8, 20) * 0.02)


def run_rows(upsampler: str, values: dict[int, float], blocks: int = 8) -> list[dict]:
    return [{"run_id": f"{upsampler}{seed}", "scale": 4, "blocks": blocks, "filters": 32, "upsampler": upsampler,
             "seed": seed, "val_psnr": value} for seed, value in values.items()]


def test_paired_table_pairs_by_seed_and_corrects_across_comparisons():
    usable = pd.DataFrame(
        run_rows("subpixel", {1: 29.1, 2: 29.3, 3: 29.2})
        + run_rows("transpose", {1: 29.0, 2: 29.1, 3: 28.9, 4: 35.0})  # seed 4 has no partner: left out
        + run_rows("nearest", {1: 29.1, 2: 29.3, 3: 29.2})
    )
    table = statistics.paired_table(usable, [("edsr_x4_b8_f32_subpixel", "edsr_x4_b8_f32_transpose"),
                                             ("edsr_x4_b8_f32_subpixel", "edsr_x4_b8_f32_nearest")], ["val_psnr"])
    first, second = table.to_dict("records")
    assert first["n"] == 3 and first["seeds"] == "1,2,3"
    assert first["mean_diff"] == pytest.approx(0.2)  # differences 0.1, 0.2, 0.3
    assert first["p"] == pytest.approx(statistics.paired_t_p([0.1, 0.2, 0.3]))
    assert second["mean_diff"] == pytest.approx(0.0) and second["p"] == 1.0
    assert first["sd"] == pytest.approx(0.1) and "verdict" not in first  # exploratory: no verdict
    text = statistics.paired_markdown(table)
    assert "| val_psnr | edsr_x4_b8_f32_subpixel - edsr_x4_b8_f32_transpose | 3 | +0.200 |" in text


def test_a_comparison_without_runs_has_no_estimate():
    usable = pd.DataFrame(run_rows("subpixel", {1: 29.0}))
    (row,) = statistics.paired_table(usable, [("edsr_x4_b8_f32_subpixel", "edsr_x4_b8_f32_bilinear")], ["val_psnr"]).to_dict("records")
    assert row["n"] == 0 and math.isnan(row["mean_diff"]) and math.isnan(row["p"])


def test_runs_of_different_budgets_never_pair_nor_average():
    short = [{**r, "param:epochs": "10"} for r in run_rows("subpixel", {1: 29.1, 2: 29.3}) + run_rows("transpose", {1: 29.0, 2: 29.1})]
    # transpose seed 1 trained again, ten times longer: not a second measurement of the short run
    longer = [{**r, "run_id": "transpose1-long", "param:epochs": "100"} for r in run_rows("transpose", {1: 35.0})]
    (row,) = statistics.paired_table(pd.DataFrame(short + longer), [("edsr_x4_b8_f32_subpixel", "edsr_x4_b8_f32_transpose")],
                                     ["val_psnr"]).to_dict("records")
    assert row["n"] == 2 and row["seeds"] == "1,2"
    assert row["mean_diff"] == pytest.approx(0.15)  # differences 0.1 and 0.2, the 35 dB run left out


def test_sides_with_their_steps_pair_a_compute_matched_arm_across_budgets():
    budget = {"param:epochs": "10", "param:steps_per_epoch": "200"}
    matched = {"param:epochs": "10", "param:steps_per_epoch": "327"}
    rows = ([{**r, **budget} for r in run_rows("subpixel", {1: 29.1, 2: 29.3}) + run_rows("transpose", {1: 29.0, 2: 29.1})]
            + [{**r, **matched, "run_id": f"{r['run_id']}-matched"} for r in run_rows("transpose", {1: 29.3, 2: 29.2, 3: 29.9})])
    usable = pd.DataFrame(rows)
    across, within = statistics.paired_table(usable, [
        ("edsr_x4_b8_f32_transpose@3270", "edsr_x4_b8_f32_subpixel@2000"),  # seed 3 has no sub-pixel partner
        ("edsr_x4_b8_f32_subpixel", "edsr_x4_b8_f32_transpose"),  # within each budget: the 2,000-step runs only
    ], ["val_psnr"]).to_dict("records")
    assert across["n"] == 2 and across["seeds"] == "1,2"
    assert across["mean_diff"] == pytest.approx(0.05)  # 29.3 - 29.1, 29.2 - 29.3
    assert within["n"] == 2 and within["mean_diff"] == pytest.approx(0.15)
    assert "| val_psnr | edsr_x4_b8_f32_transpose@3270 - edsr_x4_b8_f32_subpixel@2000 | 2 | +0.050 |" in statistics.paired_markdown(
        statistics.paired_table(usable, [("edsr_x4_b8_f32_transpose@3270", "edsr_x4_b8_f32_subpixel@2000")], ["val_psnr"]))


def test_sides_with_their_precision_pair_bfloat16_with_float32_runs_of_the_same_steps():
    steps = {"param:epochs": "10", "param:steps_per_epoch": "200"}
    f32 = [{**r, **steps, "param:precision": "float32"} for r in run_rows("transpose", {1: 29.0, 2: 29.1, 3: 29.3})]
    bf16 = [{**r, **steps, "param:precision": "mixed_bfloat16", "run_id": f"{r['run_id']}-bf16"}
            for r in run_rows("transpose", {1: 29.02, 2: 29.06, 4: 30.0})]  # seed 4 has no float32 partner
    usable = pd.DataFrame(f32 + bf16)
    across, pooled = statistics.paired_table(usable, [
        ("edsr_x4_b8_f32_transpose@2000@mixed_bfloat16", "edsr_x4_b8_f32_transpose@2000@float32"),
        ("edsr_x4_b8_f32_transpose@2000", "edsr_x4_b8_f32_transpose@2000"),  # no precision named: both precisions, averaged by seed
    ], ["val_psnr"]).to_dict("records")
    assert across["n"] == 2 and across["seeds"] == "1,2"
    assert across["mean_diff"] == pytest.approx(-0.01)  # +0.02 and -0.04
    assert pooled["mean_diff"] == pytest.approx(0.0) and pooled["n"] == 4
