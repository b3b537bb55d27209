"""Paired comparisons of configurations run with the same seeds. Pure numpy/scipy/pandas.

Two configurations trained with the same seed see the same patch stream (it depends only on the
seed), so their runs pair by seed: the per-seed difference removes what the seed does to both.
For each pre-declared comparison (a grid file's ``comparisons:``) and metric, :func:`paired_table`
gives the mean difference, its 95 % t-interval, the paired-t p-value, the p-value Holm-corrected
across the comparisons of that metric, and a verdict against a practical threshold:

- ``difference``: Holm-corrected p < 0.05 and the mean difference at least the threshold;
- ``no detectable difference``: the whole 95 % interval within +- the threshold;
- ``inconclusive``: neither (or fewer than two seeds).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .findings import configuration_labels, param_numbers, param_values, with_budget
from .schema import ComparisonSide, comparison_side

PRACTICAL_THRESHOLD_DB = 0.05
ALPHA = 0.05
PAIRED_COLUMNS = ["metric", "a", "b", "n", "mean_diff", "ci_low", "ci_high", "p", "p_holm", "verdict", "seeds"]


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


def verdict(mean: float, ci_low: float, ci_high: float, p_holm: float, threshold: float = PRACTICAL_THRESHOLD_DB) -> str:
    if math.isnan(ci_low) or math.isnan(p_holm):
        return "inconclusive"
    if p_holm < ALPHA and abs(mean) >= threshold:
        return "difference"
    if -threshold < ci_low and ci_high < threshold:
        return "no detectable difference"
    return "inconclusive"


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
    metric's unit, dB for PSNR); Holm's correction runs over the comparisons of each metric."""
    runs = labelled(usable)
    rows = []
    for metric in metrics:
        block = []
        for a, b in comparisons:
            d = paired_differences(runs, a, b, metric)
            mean, half = t_interval(d)
            block.append({"metric": metric, "a": a, "b": b, "n": len(d), "mean_diff": mean,
                          "ci_low": mean - half, "ci_high": mean + half, "p": paired_t_p(d),
                          "seeds": ",".join(str(int(s)) for s in d.index.get_level_values("seed"))})
        for row, adjusted in zip(block, holm([r["p"] for r in block])):
            row["p_holm"] = adjusted
            row["verdict"] = verdict(row["mean_diff"], row["ci_low"], row["ci_high"], adjusted)
        rows += block
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def paired_markdown(table: pd.DataFrame) -> str:
    """The paired comparisons as a Markdown table (differences in dB, 95 % intervals)."""
    lines = ["| metric | a - b | seeds | mean (dB) | 95 % CI | p | p (Holm) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        ci = "-" if math.isnan(r.ci_low) else f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        p = "-" if math.isnan(r.p) else f"{r.p:.3f}"
        p_holm = "-" if math.isnan(r.p_holm) else f"{r.p_holm:.3f}"
        mean = "-" if math.isnan(r.mean_diff) else f"{r.mean_diff:+.3f}"
        lines.append(f"| {r.metric} | {r.a} - {r.b} | {r.n} | {mean} | {ci} | {p} | {p_holm} | {r.verdict} |")
    return "\n".join(lines) + "\n"
