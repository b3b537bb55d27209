"""Tests of a study's comparisons. Pure numpy/scipy/pandas.

Two configurations trained with the same seed see the same patch stream (it depends only on the
seed), so their runs pair by seed: the per-seed difference removes what the seed does to both.
For each comparison (a grid file's ``comparisons:``) and metric, :func:`paired_table` gives the
mean difference, its 95 % t-interval and the paired-t p-value: exploratory, without a verdict.

Verdicts belong to a primary family only (:func:`family_verdicts`: a grid file's ``primary:``,
Holm across all its tests), each saying what it tested, against a practical margin m:

- ``larger than the margin``: the Holm-adjusted interval excludes +-m on the estimate's side;
- ``difference``: the Holm-adjusted interval excludes 0 (exactly when Holm rejects);
- ``equivalent within +-m``: TOST (two one-sided tests) rejects at the family's level (Holm);
- ``not resolved``: none of these.

The Holm-adjusted interval of a test is the t-interval at the level of the Holm step it is
judged at: 1 - alpha / (m - k + 1) for its rank k, or the rank of the first step not
rejected when that comes before it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .findings import configuration_labels, param_numbers, param_values, with_budget
from .schema import ComparisonSide, comparison_side

ALPHA = 0.05
PAIRED_COLUMNS = ["metric", "a", "b", "n", "mean_diff", "sd", "ci_low", "ci_high", "p", "seeds"]
FAMILY_COLUMNS = ["p", "p_holm", "adjusted_confidence", "adjusted_low", "adjusted_high", "p_tost", "p_tost_holm", "verdict"]
NOT_RESOLVED, DIFFERENCE, LARGER = "not resolved", "difference", "larger than the margin"


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the two-sided t-interval); half-width NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if len(values) else math.nan
    if len(values) < 2:
        return mean, math.nan
    sem = float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * sem


def paired_t_p(differences) -> float:
    """Two-sided p-value of the paired t-test (H0: mean difference 0); NaN below 2 pairs, 0 or 1
    when every difference is the same (no spread)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return math.nan
    sd = float(d.std(ddof=1))
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = float(d.mean()) / (sd / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), len(d) - 1))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment; NaN stays NaN and does not count as a test."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def equivalent_verdict(margin: float) -> str:
    return f"equivalent within ±{margin:g} dB"


def holm_levels(p_values, alpha: float = ALPHA) -> np.ndarray:
    """The level each test is judged at under Holm's step-down: alpha / (m - k + 1) for the
    test of rank k (1 = smallest p), held at the level of the first step not rejected for every
    test after it; so a test's interval at that level excludes 0 exactly when Holm rejects it.
    NaN stays NaN and does not count."""
    p = np.asarray(p_values, dtype=float)
    levels = np.full(len(p), np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    stopped = None
    for rank, index in enumerate(order):
        level = alpha / (len(order) - rank) if stopped is None else stopped
        if stopped is None and p[index] >= level:
            stopped = level
        levels[index] = level
    return levels


def tost_p(value: float, se: float, df: float, margin: float) -> float:
    """p-value of TOST for equivalence within +-margin: the larger of the two one-sided tests'."""
    if not se > 0 or not df > 0:
        return math.nan
    return float(max(stats.t.sf((value + margin) / se, df), stats.t.cdf((value - margin) / se, df)))


def family_verdicts(estimates: pd.DataFrame, margin: float, alpha: float = ALPHA) -> pd.DataFrame:
    """``estimates`` (columns ``value``, ``se``, ``df``, a row per test of one family) with the
    columns :data:`FAMILY_COLUMNS`: two-sided p, Holm-adjusted p, the Holm-adjusted interval
    (and its confidence), TOST p raw and Holm-adjusted, and the verdict (module docstring)."""
    value, se, df = (estimates[c].to_numpy(dtype=float) for c in ("value", "se", "df"))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where((se > 0) & (df > 0), 2 * stats.t.sf(np.abs(value / se), np.where(df > 0, df, 1)), np.nan)
    levels = holm_levels(p, alpha)
    with np.errstate(invalid="ignore"):
        half = stats.t.ppf(1 - levels / 2, np.where(df > 0, df, np.nan)) * se
    tost = np.array([tost_p(v, s, d, margin) for v, s, d in zip(value, se, df)])
    frame = estimates.assign(p=p, p_holm=holm(p), adjusted_confidence=1 - levels, adjusted_low=value - half, adjusted_high=value + half,
                             p_tost=tost, p_tost_holm=holm(tost))
    verdicts = [
        _verdict(r.adjusted_low, r.adjusted_high, r.p_tost_holm, margin, alpha) for r in frame.itertuples()
    ]
    return frame.assign(verdict=verdicts)


def _verdict(low: float, high: float, p_tost_holm: float, margin: float, alpha: float) -> str:
    if math.isnan(low):
        return NOT_RESOLVED
    if low > margin or high < -margin:
        return LARGER
    equivalent = p_tost_holm < alpha
    if low > 0 or high < 0:
        return f"{DIFFERENCE}, {equivalent_verdict(margin)}" if equivalent else DIFFERENCE
    return equivalent_verdict(margin) if equivalent else NOT_RESOLVED


def labelled(usable: pd.DataFrame) -> pd.DataFrame:
    """``usable`` runs (findings.split_runs) with a ``label`` column (the configuration's run
    name), a ``budget`` column (findings.budget_labels), ``total_steps`` (epochs x
    steps_per_epoch; NaN where a run logged neither) and ``precision`` (as logged; None where
    a run did not log it)."""
    total_steps = param_numbers(usable, "epochs") * param_numbers(usable, "steps_per_epoch")
    return with_budget(usable).assign(label=configuration_labels(usable), total_steps=total_steps,
                                      precision=param_values(usable, "precision"))


def paired_differences(runs: pd.DataFrame, a: str, b: str, metric: str) -> pd.Series:
    """``metric`` of configuration ``a`` minus that of ``b``, per seed and training budget both
    have (indexed by budget and seed): runs of different budgets never pair, nor are averaged.
    ``runs`` is :func:`labelled`; a configuration with several runs of one seed and budget uses
    their mean.

    Sides written ``<run name>@<steps>`` (both, ``schema.comparison_side``) pair across budgets:
    the runs of ``a`` trained for its steps with those of ``b`` trained for its, by seed (the
    budget level of the index reads ``a@.. vs b@..``); ``<run name>@<steps>@<precision>`` also
    keeps only the runs trained in that precision (bfloat16 against float32)."""
    if metric not in runs.columns:
        return _no_pairs()
    side_a, side_b = comparison_side(a), comparison_side(b)
    if side_a.steps is not None and side_b.steps is not None:
        per_seed = [_runs_of(runs, side).groupby("seed")[metric].mean() for side in (side_a, side_b)]
        d = (per_seed[0] - per_seed[1]).dropna()
        return pd.Series(d.to_numpy(), index=pd.MultiIndex.from_arrays([[f"{a} vs {b}"] * len(d), d.index], names=["budget", "seed"]))
    per_seed = runs[runs["label"].isin([a, b])].groupby(["label", "budget", "seed"])[metric].mean().unstack("label")
    if a not in per_seed or b not in per_seed:
        return _no_pairs()
    return (per_seed[a] - per_seed[b]).dropna()


def _runs_of(runs: pd.DataFrame, side: ComparisonSide) -> pd.DataFrame:
    """The :func:`labelled` runs a side with its steps names (and its precision, if it names one)."""
    chosen = (runs["label"] == side.name) & (runs["total_steps"] == side.steps)
    if side.precision is not None:
        chosen &= runs["precision"] == side.precision
    return runs[chosen]


def _no_pairs() -> pd.Series:
    return pd.Series([], dtype=float, index=pd.MultiIndex.from_arrays([[], []], names=["budget", "seed"]))


def paired_table(usable: pd.DataFrame, comparisons: list[tuple[str, str]], metrics: list[str]) -> pd.DataFrame:
    """One row per (metric, comparison), columns :data:`PAIRED_COLUMNS` (differences in the
    metric's unit, dB for PSNR; ``sd`` of the per-seed differences); exploratory: no
    correction, no verdict."""
    runs = labelled(usable)
    rows = []
    for metric in metrics:
        for a, b in comparisons:
            d = paired_differences(runs, a, b, metric)
            mean, half = t_interval(d)
            rows.append({"metric": metric, "a": a, "b": b, "n": len(d), "mean_diff": mean,
                         "sd": float(d.std(ddof=1)) if len(d) > 1 else math.nan,
                         "ci_low": mean - half, "ci_high": mean + half, "p": paired_t_p(d),
                         "seeds": ",".join(str(int(s)) for s in d.index.get_level_values("seed"))})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def paired_markdown(table: pd.DataFrame) -> str:
    """The paired comparisons as a Markdown table (differences in dB, 95 % intervals; exploratory)."""
    lines = ["Exploratory: a - b paired by seed, uncorrected, no verdict.", "",
             "| metric | a - b | seeds | mean (dB) | 95 % CI | p |", "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        ci = "-" if math.isnan(r.ci_low) else f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        p = "-" if math.isnan(r.p) else f"{r.p:.3f}"
        mean = "-" if math.isnan(r.mean_diff) else f"{r.mean_diff:+.3f}"
        lines.append(f"| {r.metric} | {r.a} - {r.b} | {r.n} | {mean} | {ci} | {p} |")
    return "\n".join(lines) + "\n"
