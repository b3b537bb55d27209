"""The planner: power of the t-test against statsmodels' power module and G*Power's table."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.power import TTestPower

from edsr_mlflow import planning


def unit_design(seeds_run: int = 3) -> planning.Design:
    """A paired difference whose per-seed SD is 1 (so effects are in SD units, Cohen's d)."""
    return planning.design_of(1 / np.sqrt(seeds_run), seeds_run - 1, seeds_run)


@pytest.mark.parametrize("d, n, alpha", [(0.5, 34, 0.05), (1.0, 5, 0.05), (2.0, 3, 0.05 / 6), (0.3, 100, 0.01)])
def test_power_matches_statsmodels_for_a_paired_t_test(d, n, alpha):
    power = planning.t_test_power(d * np.sqrt(n), n - 1, alpha)
    assert power == pytest.approx(TTestPower().power(effect_size=d, nobs=n, alpha=alpha, alternative="two-sided"), rel=1e-9)


def test_seeds_match_g_power_for_d_one_half():
    # G*Power 3, t-test of one mean (= paired), d = 0.5, two-tailed alpha 0.05, power 0.80: n = 34
    # (actual power 0.8078), whatever the pilot's seeds.
    assert planning.seeds_to_detect(unit_design(3), 0.5, 0.05) == 34
    assert planning.t_test_power(0.5 * np.sqrt(34), 33, 0.05) == pytest.approx(0.8078, abs=1e-4)
    assert planning.seeds_to_detect(unit_design(8), 0.5, 0.05) == 34


def test_minimum_detectable_effect_inverts_the_power():
    design = unit_design(3)
    mde = planning.minimum_detectable_effect(design, 34, 0.05)
    assert mde == pytest.approx(TTestPower().solve_power(nobs=34, alpha=0.05, power=0.8), rel=1e-5)
    # Holm's first step of a family of 6 asks more of the same seeds
    assert planning.minimum_detectable_effect(design, 34, 0.05 / 6) > mde


def test_a_grid_contrast_gains_cells_minus_one_degrees_of_freedom_per_seed():
    design = planning.design_of(0.01, 22, 3, df_per_seed=11)  # 12 cells, 3 seeds: 36 - 14 = 22 df
    assert design.df(5) == 44 and design.standard_error(12) == pytest.approx(0.01 / 2)


def test_equivalence_power_is_a_lower_bound_on_tost_by_simulation():
    rng = np.random.default_rng(7)
    n, margin, alpha = 6, 1.2, 0.05  # per-seed SD 1, true difference 0
    d = rng.standard_normal((40_000, n))
    mean, se = d.mean(axis=1), d.std(axis=1, ddof=1) / np.sqrt(n)
    from scipy import stats

    critical = stats.t.ppf(1 - alpha, n - 1)
    simulated = np.mean(((mean + margin) / se > critical) & ((mean - margin) / se < -critical))
    bound = planning.equivalence_power(margin * np.sqrt(n), n - 1, alpha)
    assert 0 < bound <= simulated + 0.01


def test_no_spread_or_too_many_seeds_is_said_not_guessed():
    assert planning.seeds_to_detect(planning.design_of(0.0, 2, 3), 0.05, 0.05) is None
    assert planning.seeds_to_detect(unit_design(3), 0.01, 0.05) is None  # d = 0.01 needs ~78,000 seeds


def power_by_integration(noncentrality: float, df: float, alpha: float) -> float:
    """P(|T| > t_crit) for T = (Z + noncentrality) / sqrt(V / df), integrated over V ~ chi2(df)
    directly: no noncentral-t routine (SciPy's and statsmodels' lose the far tail, and
    statsmodels returns NaN at high noncentrality)."""
    from scipy import integrate, stats

    critical = stats.t.ppf(1 - alpha / 2, df)

    def rejecting(v: float) -> float:
        bound = critical * np.sqrt(v / df)
        return (stats.norm.sf(bound - noncentrality) + stats.norm.cdf(-bound - noncentrality)) * stats.chi2.pdf(v, df)

    return integrate.quad(rejecting, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("noncentrality, df, alpha", [
    (2.8, 10, 0.05), (1.0, 2, 0.05), (6.0, 2, 0.05 / 6), (12.0, 4, 0.05 / 11), (40.0, 2, 0.05 / 6), (0.0, 5, 0.05),
])
def test_power_matches_direct_integration(noncentrality, df, alpha):
    assert planning.t_test_power(noncentrality, df, alpha) == pytest.approx(power_by_integration(noncentrality, df, alpha), abs=1e-7)
