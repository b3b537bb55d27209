"""How many seeds a question needs: the power of a t-test (noncentral t), the minimum detectable
effect and the seeds that resolve a margin. Pure SciPy.

An estimate (a paired mean difference, or a contrast of the grid's model) has a standard error
that shrinks as 1 / sqrt(seeds) and degrees of freedom that grow with the seeds; a
:class:`Design` holds how, from what was run. Each hypothesis is planned at the level it is
tested at: for a family of ``m`` under Holm, the worst case is Holm's first step, ``alpha / m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize, stats

POWER = 0.8
MAX_SEEDS = 100  # the planner looks no further: "more than 100" is the answer past it


@dataclass(frozen=True)
class Design:
    """An estimate's precision as a function of the seeds ``n``: standard error
    ``unit_sd / sqrt(n)``, degrees of freedom ``df_run + df_per_seed * (n - seeds_run)``.

    A paired difference of ``n`` seeds: ``unit_sd`` is the SD of the differences, one degree of
    freedom per seed. A contrast of a grid model with ``c`` cells and seed blocks: ``c - 1`` per
    seed (the residual degrees of freedom of ``c * n`` runs less ``c + n - 1`` parameters)."""

    unit_sd: float
    seeds_run: int
    df_run: float
    df_per_seed: float = 1.0

    def standard_error(self, seeds: int) -> float:
        return self.unit_sd / math.sqrt(seeds)

    def df(self, seeds: int) -> float:
        return self.df_run + self.df_per_seed * (seeds - self.seeds_run)


def design_of(standard_error: float, df: float, seeds_run: int, df_per_seed: float = 1.0) -> Design:
    """The :class:`Design` of an estimate with ``standard_error`` and ``df`` from ``seeds_run`` seeds."""
    return Design(unit_sd=standard_error * math.sqrt(seeds_run), seeds_run=seeds_run, df_run=df, df_per_seed=df_per_seed)


def t_test_power(noncentrality: float, df: float, alpha: float) -> float:
    """Power of the two-sided t-test at level ``alpha`` when the true effect is ``noncentrality``
    standard errors: P(|T| > t_crit) for T ~ noncentral t(df, noncentrality)."""
    if not df > 0:
        return math.nan
    critical = stats.t.ppf(1 - alpha / 2, df)
    # The far tail (below -t_crit for a positive effect) is negligible; SciPy's nct gives NaN there.
    far_tail = float(stats.nct.cdf(-critical, df, abs(noncentrality)))
    return float(stats.nct.sf(critical, df, abs(noncentrality))) + (0.0 if math.isnan(far_tail) else far_tail)


def equivalence_power(margin_in_se: float, df: float, alpha: float) -> float:
    """A lower bound on the power of TOST (two one-sided tests, each at ``alpha``) to show
    equivalence within +-margin when the true difference is 0 (the margin given in standard
    errors): 1 - P(the lower test fails) - P(the upper test fails), each a noncentral t."""
    if not df > 0:
        return math.nan
    critical = stats.t.ppf(1 - alpha, df)
    return max(0.0, 1 - 2 * float(stats.nct.cdf(critical, df, margin_in_se)))


def minimum_detectable_effect(design: Design, seeds: int, alpha: float, power: float = POWER) -> float:
    """The smallest true effect (in the estimate's unit) the two-sided test at ``alpha`` detects
    with probability ``power``, with ``seeds`` seeds; NaN without residual degrees of freedom."""
    df = design.df(seeds)
    if not df > 0 or not design.unit_sd > 0:
        return math.nan
    upper = 1.0
    while t_test_power(upper, df, alpha) < power:
        upper *= 2
    noncentrality = optimize.brentq(lambda ncp: t_test_power(ncp, df, alpha) - power, 0.0, upper, xtol=1e-10)
    return noncentrality * design.standard_error(seeds)


def seeds_to_detect(design: Design, effect: float, alpha: float, power: float = POWER) -> int | None:
    """The fewest seeds (from 2) whose test at ``alpha`` detects a true ``effect`` with
    ``power``; None if more than :data:`MAX_SEEDS` (or no spread was seen to plan from)."""
    if not design.unit_sd > 0:
        return None
    return _fewest_seeds(lambda n: t_test_power(effect / design.standard_error(n), design.df(n), alpha) >= power)


def seeds_to_show_equivalence(design: Design, margin: float, alpha: float, power: float = POWER) -> int | None:
    """The fewest seeds (from 2) whose TOST at ``alpha`` shows equivalence within +-``margin``
    with ``power`` when the true difference is 0 (:func:`equivalence_power`); None past
    :data:`MAX_SEEDS`."""
    if not design.unit_sd > 0:
        return None
    return _fewest_seeds(lambda n: equivalence_power(margin / design.standard_error(n), design.df(n), alpha) >= power)


def _fewest_seeds(enough) -> int | None:
    for seeds in range(2, MAX_SEEDS + 1):
        if enough(seeds):
            return seeds
    return None
