"""Paired comparisons: checked against numbers worked out by hand."""

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


@pytest.mark.parametrize("mean, low, high, p_holm, expected", [
    (0.20, 0.10, 0.30, 0.01, "difference"),
    (0.03, 0.01, 0.05, 0.01, "inconclusive"),  # real but below the practical threshold, interval reaches it
    (0.01, -0.03, 0.04, 0.60, "no detectable difference"),
    (0.10, -0.20, 0.40, 0.40, "inconclusive"),
    (0.10, float("nan"), float("nan"), float("nan"), "inconclusive"),
])
def test_verdicts(mean, low, high, p_holm, expected):
    assert statistics.verdict(mean, low, high, p_holm) == expected


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
    assert first["p_holm"] == pytest.approx(min(1.0, 2 * first["p"]))
    assert first["verdict"] == "inconclusive"  # p_holm ~0.15 with three seeds
    assert second["verdict"] == "no detectable difference"
    text = statistics.paired_markdown(table)
    assert "| val_psnr | edsr_x4_b8_f32_subpixel - edsr_x4_b8_f32_transpose | 3 | +0.200 |" in text


def test_a_comparison_without_runs_is_inconclusive():
    usable = pd.DataFrame(run_rows("subpixel", {1: 29.0}))
    (row,) = statistics.paired_table(usable, [("edsr_x4_b8_f32_subpixel", "edsr_x4_b8_f32_bilinear")], ["val_psnr"]).to_dict("records")
    assert row["n"] == 0 and row["verdict"] == "inconclusive"


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
