"""A model of the whole grid: metric ~ factors + their interactions + seed (a block), fitted by
ordinary least squares (statsmodels), per metric. Pure: no MLflow.

A grid crosses factors (blocks, upsampler, ...) and runs each cell once per seed; a seed sets
the weights' initialisation and the patch stream of every configuration alike, so it is a
block: a fixed effect of its own. Every factor, the seed included, is sum-coded (effects sum to
zero over the levels), so that the F-test of a term is its Type III test.

From the fit:

- :func:`term_tests`: an F-test per term (main effects, interaction) with its degrees of freedom;
- :func:`marginal_means`: the estimated marginal mean of each level, the model's prediction
  averaged with equal weight over the cells of the other factors and over the seeds (so a
  missing or dropped run does not tilt it);
- :func:`contrast`: a difference of two levels' marginal means (within one level of another
  factor, with ``at``), with its standard error, degrees of freedom and 95 % interval. The
  depth main effect of a blocks x upsampler grid is ``contrast(fit, "blocks", "8", "2")``.

Where the grid leaves a cell empty, the interaction cannot be estimated and the model drops it
(:attr:`GridFit.interaction`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

SEED = "seed"
FIT_COLUMNS = ("run_id", SEED)


@dataclass(frozen=True)
class GridFit:
    """An OLS fit of ``metric`` on ``factors`` (name -> levels, in order) with seed blocks."""

    metric: str
    factors: dict[str, tuple[str, ...]]
    seeds: tuple[str, ...]
    interaction: bool  # False where an empty cell left the interaction inestimable
    result: object  # statsmodels RegressionResults
    data: pd.DataFrame  # the runs fitted: run_id, seed, the factors, the metric

    @property
    def residual_df(self) -> float:
        return float(self.result.df_resid)

    @property
    def residual_sd(self) -> float:
        return math.sqrt(float(self.result.scale))

    @property
    def cells(self) -> int:
        return math.prod(len(levels) for levels in self.factors.values())


@dataclass(frozen=True)
class Estimate:
    """A linear combination of the fit's coefficients: its value, standard error, degrees of
    freedom and two-sided p-value (H0: 0)."""

    value: float
    se: float
    df: float
    p: float

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        half = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.value - half, self.value + half


# ---------------------------------------------------------------- design


def sum_coded(values: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    """Sum (deviation) coding: a column per level but the last, 1 for that level, -1 for the
    last level, 0 otherwise."""
    values = values.astype(str).to_numpy()
    columns = [np.where(values == level, 1.0, 0.0) - np.where(values == levels[-1], 1.0, 0.0) for level in levels[:-1]]
    return np.column_stack(columns) if columns else np.zeros((len(values), 0))


def terms(factors: dict[str, tuple[str, ...]], interaction: bool) -> list[tuple[str, ...]]:
    """The model's terms: each factor, then (with ``interaction``) each product of two or more."""
    names = list(factors)
    found = [(name,) for name in names]
    if interaction:
        found += [combo for size in range(2, len(names) + 1) for combo in itertools.combinations(names, size)]
    return found


def design_matrix(frame: pd.DataFrame, factors: dict[str, tuple[str, ...]], seeds: tuple[str, ...],
                  interaction: bool) -> tuple[np.ndarray, dict[tuple[str, ...], slice]]:
    """The model matrix of ``frame`` (intercept, each term's columns, then the seed blocks) and
    the columns of each term."""
    coded = {name: sum_coded(frame[name], levels) for name, levels in factors.items()}
    blocks, slices, start = [np.ones((len(frame), 1))], {}, 1
    for term in terms(factors, interaction):
        columns = coded[term[0]]
        for name in term[1:]:
            columns = np.einsum("ij,ik->ijk", columns, coded[name]).reshape(len(frame), -1)
        blocks.append(columns)
        slices[term] = slice(start, start + columns.shape[1])
        start += columns.shape[1]
    blocks.append(sum_coded(frame[SEED], seeds))
    return np.hstack(blocks), slices


# ---------------------------------------------------------------- fit


def fit_grid(data: pd.DataFrame, metric: str, factors: dict[str, tuple[str, ...]]) -> GridFit | None:
    """Fits ``metric`` of ``data`` (a row per run: ``run_id``, ``seed``, a column per factor)
    on ``factors`` (only the levels present count); None when fewer than two levels of every
    factor, two seeds, or a residual degree of freedom are left."""
    data = data[[*FIT_COLUMNS, *factors, metric]].dropna(subset=[metric]).copy()
    data[SEED] = data[SEED].astype(int).astype(str)
    present = {name: tuple(level for level in levels if (data[name].astype(str) == level).any()) for name, levels in factors.items()}
    present = {name: levels for name, levels in present.items() if len(levels) >= 2}
    seeds = tuple(sorted(data[SEED].unique(), key=int))
    if not present or len(seeds) < 2:
        return None
    data = data[np.logical_and.reduce([data[name].astype(str).isin(levels) for name, levels in present.items()])]
    full = len(data[list(present)].astype(str).drop_duplicates()) == math.prod(len(v) for v in present.values())
    for interaction in ((True, False) if full else (False,)):
        matrix, _ = design_matrix(data, present, seeds, interaction)
        if np.linalg.matrix_rank(matrix) == matrix.shape[1] and len(data) > matrix.shape[1]:
            result = sm.OLS(data[metric].to_numpy(dtype=float), matrix).fit()
            return GridFit(metric=metric, factors=present, seeds=seeds, interaction=interaction, result=result,
                           data=data.reset_index(drop=True))
    return None


def _prediction_rows(fit: GridFit, chosen: dict[str, str]) -> np.ndarray:
    """Model-matrix rows of every cell (and seed) with the ``chosen`` levels."""
    levels = {name: ((chosen[name],) if name in chosen else values) for name, values in fit.factors.items()}
    cells = pd.DataFrame(list(itertools.product(*levels.values(), fit.seeds)), columns=[*levels, SEED])
    return design_matrix(cells, fit.factors, fit.seeds, fit.interaction)[0]


def combination(fit: GridFit, weights: np.ndarray) -> Estimate:
    test = fit.result.t_test(weights[None, :])
    return Estimate(value=float(np.squeeze(test.effect)), se=float(np.squeeze(test.sd)), df=float(test.df_denom),
                    p=float(np.squeeze(test.pvalue)))


def marginal_mean(fit: GridFit, factor: str, level: str, at: dict[str, str] | None = None) -> Estimate:
    return combination(fit, _prediction_rows(fit, {**(at or {}), factor: level}).mean(axis=0))


def contrast(fit: GridFit, factor: str, a: str, b: str, at: dict[str, str] | None = None) -> Estimate:
    """Marginal mean of level ``a`` minus that of ``b`` (within the ``at`` levels of others)."""
    at = at or {}
    weights = _prediction_rows(fit, {**at, factor: a}).mean(axis=0) - _prediction_rows(fit, {**at, factor: b}).mean(axis=0)
    return combination(fit, weights)


# ---------------------------------------------------------------- tables

TERM_COLUMNS = ["metric", "term", "df", "residual_df", "F", "p", "estimate", "ci_low", "ci_high"]
MEANS_COLUMNS = ["metric", "factor", "level", "at", "mean", "ci_low", "ci_high"]


def term_tests(fit: GridFit) -> pd.DataFrame:
    """An F-test per term (H0: every effect of the term is 0), columns :data:`TERM_COLUMNS`;
    for a two-level factor also its main effect (last level minus first) with a 95 % interval."""
    _, slices = design_matrix(fit.data.iloc[:1], fit.factors, fit.seeds, fit.interaction)
    rows = []
    for term, columns in slices.items():
        restriction = np.eye(fit.result.params.size)[columns]
        test = fit.result.f_test(restriction)
        row = {"metric": fit.metric, "term": " x ".join(term), "df": restriction.shape[0], "residual_df": fit.residual_df,
               "F": float(np.squeeze(test.fvalue)), "p": float(np.squeeze(test.pvalue)),
               "estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan}
        if len(term) == 1 and len(fit.factors[term[0]]) == 2:
            low, high = fit.factors[term[0]]
            effect = contrast(fit, term[0], high, low)
            row.update(term=f"{term[0]} ({high} - {low})", estimate=effect.value)
            row["ci_low"], row["ci_high"] = effect.interval()
        rows.append(row)
    return pd.DataFrame(rows, columns=TERM_COLUMNS)


def marginal_means_table(fit: GridFit) -> pd.DataFrame:
    """The estimated marginal mean of every level of every factor, with 95 % intervals."""
    rows = []
    for factor, levels in fit.factors.items():
        for level in levels:
            estimate = marginal_mean(fit, factor, level)
            low, high = estimate.interval()
            rows.append({"metric": fit.metric, "factor": factor, "level": level, "at": "", "mean": estimate.value,
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=MEANS_COLUMNS)


SIMPLE_COLUMNS = ["metric", "factor", "contrast", "at", "estimate", "ci_low", "ci_high", "p"]


def simple_effects(fit: GridFit) -> pd.DataFrame:
    """Each two-level factor's effect (last level minus first) within each level of every other
    factor, from the model (pooled residual variance), with 95 % intervals: where the
    interaction puts it."""
    rows = []
    for factor, levels in fit.factors.items():
        if len(levels) != 2:
            continue
        low, high = levels
        for other, other_levels in fit.factors.items():
            for level in other_levels if other != factor else ():
                effect = contrast(fit, factor, high, low, at={other: level})
                ci_low, ci_high = effect.interval()
                rows.append({"metric": fit.metric, "factor": factor, "contrast": f"{high} - {low}", "at": f"{other}={level}",
                             "estimate": effect.value, "ci_low": ci_low, "ci_high": ci_high, "p": effect.p})
    return pd.DataFrame(rows, columns=SIMPLE_COLUMNS)


def largest_residual(fit: GridFit) -> tuple[str, float]:
    """The run whose externally studentised residual is largest in size, and that residual (an
    outlier such as a diverged run shows here: beyond about 3 is rare under the model)."""
    residuals = fit.result.get_influence().resid_studentized_external
    index = int(np.nanargmax(np.abs(residuals)))
    return str(fit.data["run_id"].iloc[index]), float(residuals[index])
