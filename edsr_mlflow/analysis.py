"""The statistics of a study grid, as ``compare --grid`` reports them. Pure: no MLflow.

From the runs of a grid file's configurations (``grid.grid_runs``) and their metrics:

- **the grid's model** per metric (``factorial``): an F-test per term, the depth main effect and
  the other two-level effects with 95 % intervals, the estimated marginal means, and each
  two-level factor's effect within every level of the others;
- **the primary family** (a grid file's ``primary:``): every hypothesis on every primary metric,
  Holm across all of them, each with a verdict that says what it tested (``statistics``);
- **exploratory comparisons** (``comparisons:``): paired by seed, uncorrected, no verdict;
- **planning** (``planning``): per hypothesis and comparison, the minimum detectable effect at
  80 % power with the seeds run, and the seeds that detect a difference of the margin and that
  show equivalence within it, at Holm's first step;
- **divergence** (``divergence:``): the runs whose training loss broke the rule, per
  configuration, and whether the fits left them out;
- when each of these was declared, against the start times of the grid's runs.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from . import factorial, planning, statistics
from .hypotheses import DivergenceRule, ModelContrast, PairedComparison

PRIMARY_COLUMNS = ["metric", "hypothesis", "seeds", "value", "se", "df", "ci_low", "ci_high", *statistics.FAMILY_COLUMNS, "declared"]
PLANNING_COLUMNS = ["metric", "hypothesis", "family", "seeds_run", "sd_per_seed", "df", "alpha", "mde_80",
                    "seeds_for_margin", "seeds_for_equivalence"]
DIVERGENCE_COLUMNS = ["configuration", "runs", "diverged", "diverged_run_ids"]


@dataclass(frozen=True)
class StudyStatistics:
    """The tables of :func:`study_statistics` (each a DataFrame; empty where not asked for)."""

    terms: pd.DataFrame
    means: pd.DataFrame
    simple_effects: pd.DataFrame
    primary: pd.DataFrame
    exploratory: pd.DataFrame
    planning: pd.DataFrame
    divergence: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"model_terms": self.terms, "marginal_means": self.means, "simple_effects": self.simple_effects,
                "primary_family": self.primary, "exploratory_comparisons": self.exploratory, "planning": self.planning,
                "divergence": self.divergence}


# ---------------------------------------------------------------- divergence


def diverged_runs(loss_histories: pd.DataFrame, rule: DivergenceRule) -> set[str]:
    """Runs (``run_store.metric_histories`` of ``train_loss``) with an epoch whose loss exceeds
    ``rule.loss_rise_factor`` times the lowest loss of the epochs before it."""
    diverged = set()
    for run_id, history in loss_histories.groupby("run_id"):
        if rule.broken_by(history.sort_values("step")["value"].to_numpy(dtype=float)):
            diverged.add(str(run_id))
    return diverged


def configuration_names(data: pd.DataFrame, factors) -> pd.Series:
    """``blocks=8, upsampler=subpixel``: the factor levels of each run, as one label."""
    return data[list(factors)].astype(str).apply(lambda row: ", ".join(f"{k}={v}" for k, v in row.items()), axis=1)


def divergence_table(data: pd.DataFrame, factors, diverged: set[str]) -> pd.DataFrame:
    """Per configuration (factor levels): runs, diverged runs and their ids."""
    if data.empty:
        return pd.DataFrame(columns=DIVERGENCE_COLUMNS)
    labelled = data.assign(configuration=configuration_names(data, factors), is_diverged=data["run_id"].isin(diverged))
    rows = [
        {"configuration": name, "runs": len(group), "diverged": int(group["is_diverged"].sum()),
         "diverged_run_ids": ",".join(group.loc[group["is_diverged"], "run_id"])}
        for name, group in labelled.groupby("configuration", sort=False)
    ]
    return pd.DataFrame(rows, columns=DIVERGENCE_COLUMNS)


# ---------------------------------------------------------------- declarations


def declared_note(declared: dt.datetime | None, grid: pd.DataFrame, factors, configurations: int) -> str:
    """When a hypothesis was declared against the grid's runs: before any started, or after
    how many of the grid's ``configurations`` (seed included) had a run started."""
    if declared is None:
        return "declaration time not recorded"
    started = pd.to_datetime(grid["start_time"], utc=True, errors="coerce") if len(grid) else pd.Series([], dtype="datetime64[ns, UTC]")
    before = grid[started < pd.Timestamp(declared)]
    existing = len(before[["seed", *factors]].drop_duplicates()) if len(before) else 0
    stamp = declared.strftime("%Y-%m-%d %H:%M UTC")
    if existing == 0:
        return f"declared {stamp}, before any run"
    return f"declared {stamp}, after {existing} of {configurations} runs had started (post hoc)"


# ---------------------------------------------------------------- the analysis


def study_statistics(usable: pd.DataFrame, grid: pd.DataFrame, definition, loss_histories: pd.DataFrame | None = None) -> StudyStatistics:
    """The tables of the module docstring for ``definition`` (a ``grid.SweepDefinition``):
    ``usable`` the comparable runs (``findings.split_runs``), ``grid`` the grid's runs
    (``grid.grid_runs``, any status), ``loss_histories`` the ``train_loss`` curves of the grid's
    runs (needed where the grid has a divergence rule)."""
    factors, notes = definition.factors, []
    family = definition.primary
    metrics = list(dict.fromkeys([*(family.metrics if family else ()), *definition.comparison_metrics]))
    present = [m for m in metrics if m in usable.columns]
    data = grid.drop(columns=["start_time"]).merge(usable[["run_id", *present]], on="run_id")
    rule = definition.divergence
    diverged = diverged_runs(loss_histories, rule) if rule is not None and loss_histories is not None else set()
    divergence = divergence_table(data, factors, diverged)
    if rule is not None:
        kept = "left out of the model and the tests" if rule.drop else "kept in the model and the tests"
        notes.append(f"divergence rule ({rule.description}; {declared_note(rule.declared, grid, factors, len(definition.configs))}): "
                     f"{len(diverged & set(data['run_id']))} of {len(data)} runs diverged, {kept}")
        if rule.drop:
            data = data[~data["run_id"].isin(diverged)]
            usable = usable[~usable["run_id"].isin(diverged)]
    fits = {m: factorial.fit_grid(data, m, factors) for m in present}
    fits = {m: f for m, f in fits.items() if f is not None}
    for metric, fit in fits.items():
        run_id, residual = factorial.largest_residual(fit)
        notes.append(f"{metric}: {len(fit.data)} runs, {fit.cells} cells x {len(fit.seeds)} seeds, "
                     f"{'with' if fit.interaction else 'without (a cell is empty)'} the interaction; residual SD {fit.residual_sd:.4f} "
                     f"on {fit.residual_df:g} df; largest studentised residual {residual:+.1f} (run {run_id})")
    primary, primary_planning = _primary(usable, fits, definition, grid)
    exploratory = statistics.paired_table(usable, list(definition.comparisons), list(definition.comparison_metrics))
    declared = [declared_note(d, grid, factors, len(definition.configs)) for d in definition.comparisons_declared]
    exploratory["declared"] = declared * len(definition.comparison_metrics) if declared else []
    alpha = statistics.ALPHA / ((family.size if family else 0) + 1)
    exploratory_planning = [
        _plan(r.metric, f"{r.a} - {r.b}", "exploratory", planning.design_of(r.sd / math.sqrt(r.n), r.n - 1, r.n) if r.n > 1 else None,
              alpha, definition.margin_db)
        for r in exploratory.itertuples()
    ]
    return StudyStatistics(
        terms=_concat([factorial.term_tests(f) for f in fits.values()], factorial.TERM_COLUMNS),
        means=_concat([factorial.marginal_means_table(f) for f in fits.values()], factorial.MEANS_COLUMNS),
        simple_effects=_concat([factorial.simple_effects(f) for f in fits.values()], factorial.SIMPLE_COLUMNS),
        primary=primary, exploratory=exploratory,
        planning=pd.DataFrame(primary_planning + exploratory_planning, columns=PLANNING_COLUMNS),
        divergence=divergence, notes=notes,
    )


def _concat(frames: list[pd.DataFrame], columns) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _primary(usable, fits, definition, grid) -> tuple[pd.DataFrame, list[dict]]:
    family = definition.primary
    if family is None:
        return pd.DataFrame(columns=PRIMARY_COLUMNS), []
    declared = declared_note(family.declared, grid, definition.factors, len(definition.configs))
    rows, designs = [], []
    runs = statistics.labelled(usable) if len(usable) else usable
    for metric in family.metrics:
        for hypothesis in family.hypotheses:
            value, se, df, seeds, design = _estimate(hypothesis, metric, fits.get(metric), runs)
            rows.append({"metric": metric, "hypothesis": hypothesis.label, "seeds": seeds, "value": value, "se": se, "df": df,
                         "declared": declared})
            designs.append(design)
    frame = pd.DataFrame(rows)
    half = np.array([_half_width(r.se, r.df) for r in frame.itertuples()])
    frame = statistics.family_verdicts(frame.assign(ci_low=frame["value"] - half, ci_high=frame["value"] + half), definition.margin_db)
    alpha = statistics.ALPHA / family.size
    plans = [_plan(r["metric"], r["hypothesis"], "primary", design, alpha, definition.margin_db) for r, design in zip(rows, designs)]
    return frame[PRIMARY_COLUMNS], plans


def _half_width(se: float, df: float) -> float:
    return float(stats.t.ppf(0.975, df)) * se if df > 0 and se > 0 else math.nan


def _estimate(hypothesis, metric, fit, runs) -> tuple[float, float, float, int, planning.Design | None]:
    """(value, se, df, seeds, design) of one hypothesis on one metric; NaNs where it cannot be
    estimated (no fit, no pairs)."""
    if isinstance(hypothesis, ModelContrast):
        if fit is None or hypothesis.factor not in fit.factors:
            return math.nan, math.nan, math.nan, 0, None
        estimate = factorial.contrast(fit, hypothesis.factor, hypothesis.a, hypothesis.b, dict(hypothesis.at))
        seeds = len(fit.seeds)
        return estimate.value, estimate.se, estimate.df, seeds, planning.design_of(estimate.se, estimate.df, seeds, fit.cells - 1)
    assert isinstance(hypothesis, PairedComparison)
    d = statistics.paired_differences(runs, hypothesis.a, hypothesis.b, metric) if len(runs) else pd.Series([], dtype=float)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), math.nan, math.nan, len(d), None
    se = float(d.std(ddof=1)) / math.sqrt(len(d))
    return float(d.mean()), se, len(d) - 1.0, len(d), planning.design_of(se, len(d) - 1.0, len(d))


def _plan(metric: str, hypothesis: str, family: str, design: planning.Design | None, alpha: float, margin: float) -> dict:
    row = {"metric": metric, "hypothesis": hypothesis, "family": family, "alpha": alpha}
    if design is None:
        return {**row, "seeds_run": math.nan, "sd_per_seed": math.nan, "df": math.nan, "mde_80": math.nan,
                "seeds_for_margin": None, "seeds_for_equivalence": None}
    return {**row, "seeds_run": design.seeds_run, "sd_per_seed": design.unit_sd, "df": design.df_run,
            "mde_80": planning.minimum_detectable_effect(design, design.seeds_run, alpha),
            "seeds_for_margin": planning.seeds_to_detect(design, margin, alpha),
            "seeds_for_equivalence": planning.seeds_to_show_equivalence(design, margin, alpha)}
