"""The grid's model, checked against a 2 x 2 grid with three seeds worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from edsr_mlflow import factorial

FACTORS = {"blocks": ("2", "8"), "upsampler": ("subpixel", "transpose")}
# PSNR (dB) by (blocks, upsampler) and seed 1, 2, 3
CELLS = {("2", "subpixel"): [27.00, 27.06, 26.98], ("2", "transpose"): [27.11, 27.14, 27.05],
         ("8", "subpixel"): [27.31, 27.33, 27.26], ("8", "transpose"): [27.20, 27.27, 27.19]}


def grid_frame() -> pd.DataFrame:
    return pd.DataFrame([{"run_id": f"b{b}-{u}-{seed}", "seed": seed, "blocks": b, "upsampler": u, "val_psnr": value}
                         for (b, u), values in CELLS.items() for seed, value in enumerate(values, start=1)])


def by_hand():
    """The balanced two-way layout with seed blocks: residual = y - cell mean - seed mean + grand mean."""
    y = np.array(list(CELLS.values()))  # cells x seeds
    grand, cell, seed = y.mean(), y.mean(axis=1, keepdims=True), y.mean(axis=0, keepdims=True)
    residual_ss = float(((y - cell - seed + grand) ** 2).sum())
    residual_df = (4 - 1) * (3 - 1)  # 12 runs - 4 cells - 2 seed effects
    sigma2 = residual_ss / residual_df
    b2, b8 = y[:2].mean(), y[2:].mean()
    interaction = (y[3].mean() - y[2].mean()) - (y[1].mean() - y[0].mean())  # transpose - subpixel, at 8 minus at 2
    return {"sigma2": sigma2, "df": residual_df, "depth": b8 - b2, "depth_se": math.sqrt(sigma2 * (1 / 6 + 1 / 6)),
            "b8_mean": b8, "mean_se": math.sqrt(sigma2 / 6), "interaction": interaction,
            "interaction_F": interaction ** 2 / (sigma2 * 4 / 3), "depth_at_subpixel": y[2].mean() - y[0].mean(),
            "simple_se": math.sqrt(sigma2 * 2 / 3)}


def test_the_model_of_a_two_by_two_grid_matches_the_hand_computation():
    fit = factorial.fit_grid(grid_frame(), "val_psnr", FACTORS)
    hand = by_hand()
    assert fit.interaction and fit.residual_df == hand["df"] and fit.residual_sd ** 2 == pytest.approx(hand["sigma2"])
    depth = factorial.contrast(fit, "blocks", "8", "2")
    assert depth.value == pytest.approx(hand["depth"]) and depth.se == pytest.approx(hand["depth_se"]) and depth.df == 6
    low, high = depth.interval()
    assert high - depth.value == pytest.approx(stats.t.ppf(0.975, 6) * hand["depth_se"])
    mean = factorial.marginal_mean(fit, "blocks", "8")
    assert mean.value == pytest.approx(hand["b8_mean"]) and mean.se == pytest.approx(hand["mean_se"])
    terms = factorial.term_tests(fit).set_index("term")
    assert terms.loc["blocks (8 - 2)", "estimate"] == pytest.approx(hand["depth"])
    assert terms.loc["blocks (8 - 2)", "F"] == pytest.approx(hand["depth"] ** 2 / hand["depth_se"] ** 2)
    assert terms.loc["blocks x upsampler", "F"] == pytest.approx(hand["interaction_F"])
    assert terms.loc["blocks x upsampler", "p"] == pytest.approx(stats.f.sf(hand["interaction_F"], 1, 6))
    simple = factorial.simple_effects(fit).set_index(["factor", "at"])
    at_subpixel = simple.loc[("blocks", "upsampler=subpixel")]
    assert at_subpixel["estimate"] == pytest.approx(hand["depth_at_subpixel"])
    assert at_subpixel["ci_high"] - at_subpixel["estimate"] == pytest.approx(stats.t.ppf(0.975, 6) * hand["simple_se"])


def test_type_three_tests_agree_with_statsmodels_formula_anova():
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    frame = grid_frame().drop(index=4)  # unbalanced: one run missing
    fit = factorial.fit_grid(frame, "val_psnr", FACTORS)
    reference = anova_lm(smf.ols("val_psnr ~ C(blocks, Sum) * C(upsampler, Sum) + C(seed, Sum)", frame).fit(), typ=3)
    ours = factorial.term_tests(fit).set_index("term")["F"]
    assert ours["blocks (8 - 2)"] == pytest.approx(reference.loc["C(blocks, Sum)", "F"])
    assert ours["upsampler (transpose - subpixel)"] == pytest.approx(reference.loc["C(upsampler, Sum)", "F"])
    assert ours["blocks x upsampler"] == pytest.approx(reference.loc["C(blocks, Sum):C(upsampler, Sum)", "F"])


def test_a_marginal_mean_weights_cells_equally_when_a_run_is_missing():
    frame = grid_frame().drop(index=0)  # blocks 2, subpixel, seed 1
    fit = factorial.fit_grid(frame, "val_psnr", FACTORS)
    cells = [factorial.marginal_mean(fit, "blocks", "2", at={"upsampler": u}).value for u in FACTORS["upsampler"]]
    assert factorial.marginal_mean(fit, "blocks", "2").value == pytest.approx(np.mean(cells))


def test_an_empty_cell_drops_the_interaction_and_too_little_data_fits_nothing():
    frame = grid_frame()
    no_cell = frame[~((frame["blocks"] == "8") & (frame["upsampler"] == "transpose"))]
    assert factorial.fit_grid(no_cell, "val_psnr", FACTORS).interaction is False
    assert factorial.fit_grid(frame[frame["seed"] == 1], "val_psnr", FACTORS) is None  # one seed: no blocks to fit
