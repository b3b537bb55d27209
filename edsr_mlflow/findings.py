"""The findings table: training runs in, one row per configuration out. Pure pandas, no MLflow.

Input is the DataFrame of :func:`run_store.training_runs` (MLflow's ``search_runs`` columns:
``run_id``, ``status``, ``params.<name>`` as strings, ``metrics.<name>`` latest values,
``tags.<name>``). A configuration is (scale, upsampler, blocks, filters), where the upsampler
is shown with its controls (``transpose_k6``, ``subpixel_icnr``: ``schema.upsampler_variant``). A row
is a configuration trained with one budget (``schema.BUDGET_PARAMS``: epochs, steps, patch,
batch, time limit, precision): its runs (seeds) are aggregated as mean, sample standard
deviation (NaN for a single run) and count; runs of other budgets are rows of their own.

Runs that cannot be compared (not FINISHED, a needed metric or param missing) are never
dropped silently: :func:`split_runs` returns them with the reason.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .errors import ConfigError
from .schema import BUDGET_PARAMS, DEFAULT_TRANSPOSE_KERNEL, MODEL_FACTS, EvalKey, parse_eval_key, run_name, upsampler_variant

CONFIG_KEYS = ("scale", "upsampler", "blocks", "filters")
# What a row of the table is: a configuration trained with one budget (never pooled across budgets).
ROW_KEYS = (*CONFIG_KEYS, "budget")
INTEGER_PARAMS = ("scale", "blocks", "filters")
# Metrics a run needs to be compared; their latest value is the final one.
REQUIRED_METRICS = ("val_psnr", "val_psnr_gain", "val_ssim", "train_time_s", "step_time_ms")
QUALITY_METRICS = ("val_psnr", "val_psnr_gain", "val_ssim")
COST_METRICS = ("train_time_s", "step_time_ms")
# Per benchmark, in table order: quality, then where the error lies (``spectral``).
BENCHMARK_MEASURES = ("psnr", "gain", "psnr_low", "psnr_high", "periodic_index", "bicubic_periodic_index")
# Params that identify a run rather than its configuration, so may differ between seeds.
PER_RUN_PARAMS = {"seed", *MODEL_FACTS}
# Params folded into the ``upsampler`` column (``transpose_k6``, ``subpixel_icnr``).
VARIANT_PARAMS = ("transpose_kernel", "icnr")
EXCLUDED_COLUMNS = ["run_id", "run_name", "experiment_id", "status", "reason"]
EXPORT_NAMES = {
    "markdown": "findings.md", "csv": "findings.csv", "html": "findings.html",
    "latex": "findings.tex", "json": "findings.json",
}
EXCLUDED_FILE = "excluded_runs.csv"
# The cost the table's Pareto column is against: the structural cost of a configuration, the same
# on every machine (training wall time is not: it follows the machine and its load).
PARETO_COST = "macs_per_lr_pixel"


# ---------------------------------------------------------------- runs -> tidy runs


def tidy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with plain column names: ``run_id``, ``run_name``, ``experiment_id``,
    ``status``, the config keys and model facts (numbers where they parse), every metric
    (``metrics.`` prefix dropped) and the other params (prefixed ``param:``, as logged)."""
    tidy = pd.DataFrame({
        "run_id": _column(runs, "run_id"),
        "run_name": _column(runs, "tags.mlflow.runName"),
        "experiment_id": _column(runs, "experiment_id"),
        "status": _column(runs, "status"),
        "upsampler": _variants(runs),
    })
    for name in (*INTEGER_PARAMS, *MODEL_FACTS, "seed"):
        tidy[name] = pd.to_numeric(_column(runs, f"params.{name}"), errors="coerce")
    metrics = {c.removeprefix("metrics."): runs[c].astype(float) for c in runs.columns if c.startswith("metrics.")}
    others = {
        f"param:{c.removeprefix('params.')}": runs[c]
        for c in runs.columns
        if c.startswith("params.") and c.removeprefix("params.") not in {*CONFIG_KEYS, *VARIANT_PARAMS, *PER_RUN_PARAMS}
    }
    return pd.concat([tidy, pd.DataFrame(metrics, index=runs.index), pd.DataFrame(others, index=runs.index)], axis=1).reset_index(drop=True)


def _variants(runs: pd.DataFrame) -> pd.Series:
    """The upsampler of each run with its controls; runs logged before the controls existed
    have neither param and used their defaults."""
    kernels = pd.to_numeric(_column(runs, "params.transpose_kernel"), errors="coerce").fillna(DEFAULT_TRANSPOSE_KERNEL)
    icnr = _column(runs, "params.icnr").astype(str).str.lower() == "true"
    names = [
        upsampler_variant(u, int(k), bool(i)) if isinstance(u, str) and u else None
        for u, k, i in zip(_column(runs, "params.upsampler"), kernels, icnr)
    ]
    return pd.Series(names, index=runs.index, dtype=object)


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs.columns else pd.Series([None] * len(runs), index=runs.index, dtype=object)


def param_values(runs: pd.DataFrame, name: str) -> pd.Series:
    """A logged param of :func:`tidy_runs` rows (``param:<name>``) as logged, strings; None
    where a run lacks it."""
    return _column(runs, f"param:{name}")


def param_numbers(runs: pd.DataFrame, name: str) -> pd.Series:
    """A logged param of :func:`tidy_runs` rows (``param:<name>``, strings) as numbers; NaN where
    a run lacks it or it does not parse."""
    return pd.to_numeric(param_values(runs, name), errors="coerce")


def aggregated_metrics(table: pd.DataFrame) -> list[str]:
    """The metrics :func:`aggregate` gave a ``<metric>_mean`` column, in table order."""
    return [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]


def exclusion_reasons(tidy: pd.DataFrame) -> pd.Series:
    """Why each run cannot be compared ("" when it can): its status, missing metrics, missing
    or non-numeric configuration params."""
    reasons = pd.DataFrame(index=tidy.index)
    reasons["status"] = np.where(tidy["status"] == "FINISHED", "", "status " + tidy["status"].fillna("unknown").astype(str))
    missing_metrics = pd.DataFrame({m: tidy[m].isna() if m in tidy else True for m in REQUIRED_METRICS}, index=tidy.index)
    reasons["metrics"] = _names_where(missing_metrics, "missing metrics: ")
    missing_params = pd.DataFrame({k: tidy[k].isna() for k in CONFIG_KEYS}, index=tidy.index)
    reasons["params"] = _names_where(missing_params, "missing or non-numeric params: ")
    return reasons.apply(lambda row: "; ".join(r for r in row if r), axis=1).astype(str) if len(tidy) else pd.Series([], dtype=str)


def _names_where(flags: pd.DataFrame, prefix: str) -> np.ndarray:
    names = flags.apply(lambda row: ", ".join(row.index[row.to_numpy(dtype=bool)]), axis=1) if len(flags) else pd.Series([], dtype=str)
    return np.where(names != "", prefix + names, "")


def split_runs(tidy: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs to compare, excluded runs with a ``reason`` column)."""
    reasons = exclusion_reasons(tidy)
    usable = tidy[reasons == ""].copy()
    for name in INTEGER_PARAMS:
        usable[name] = usable[name].astype(int)
    excluded = tidy[reasons != ""].assign(reason=reasons[reasons != ""])[EXCLUDED_COLUMNS]
    return usable.reset_index(drop=True), excluded.sort_values(["status", "run_name", "run_id"], ignore_index=True)


# ---------------------------------------------------------------- learning speed

# Gains over bicubic (dB) whose first crossing on the validation curve the table reports, where
# a grid file asks (``steps_to_gain_db``): each compared run's curve costs a request.
DEFAULT_GAIN_THRESHOLDS_DB: tuple[float, ...] = ()
_STEPS_TO_GAIN = re.compile(r"steps_to_gain_(?P<threshold>\d+(?:\.\d+)?)db")


def steps_to_gain_column(threshold_db: float) -> str:
    """The table's column of :func:`steps_to_gain` for a threshold: ``steps_to_gain_1db``,
    ``steps_to_gain_0.5db``."""
    return f"steps_to_gain_{threshold_db:g}db"


def steps_to_gain(usable: pd.DataFrame, histories: pd.DataFrame, threshold_db: float) -> np.ndarray:
    """Training steps each run of ``usable`` took to first reach a validation PSNR of its
    bicubic baseline (``bicubic_val_psnr``) + ``threshold_db``, read off its per-epoch
    ``val_psnr`` curve (``histories``: ``run_id``, ``step`` = epoch from 1, ``value`` in dB),
    so to the resolution of one epoch (``steps_per_epoch`` steps).

    ``inf`` where the curve never got there within the run's budget; NaN where the run has no
    curve, no bicubic value or no ``steps_per_epoch`` param."""
    runs = usable.set_index("run_id")
    target = runs["bicubic_val_psnr"].astype(float) + threshold_db if "bicubic_val_psnr" in runs else pd.Series(np.nan, index=runs.index)
    steps_per_epoch = param_numbers(runs, "steps_per_epoch")
    points = histories[histories["run_id"].isin(runs.index)]
    reached = points[points["value"].to_numpy(dtype=float) >= points["run_id"].map(target).to_numpy(dtype=float)]
    first_epoch = reached.groupby("run_id")["step"].min()
    with_curve = set(points["run_id"])
    known = target.notna() & steps_per_epoch.notna() & runs.index.isin(with_curve)
    steps = first_epoch.reindex(runs.index).to_numpy(dtype=float) * steps_per_epoch.to_numpy(dtype=float)
    return np.where(known, np.where(np.isnan(steps), np.inf, steps), np.nan)


def with_steps_to_gain(usable: pd.DataFrame, histories: pd.DataFrame, thresholds_db: tuple[float, ...]) -> pd.DataFrame:
    """``usable`` with a :func:`steps_to_gain_column` per threshold."""
    return usable.assign(**{steps_to_gain_column(t): steps_to_gain(usable, histories, t) for t in thresholds_db})


def steps_to_gain_columns(columns) -> list[str]:
    """The :func:`steps_to_gain_column` columns among ``columns``, by threshold."""
    found = [(float(m["threshold"]), c) for c in columns if (m := _STEPS_TO_GAIN.fullmatch(c))]
    return [c for _, c in sorted(found)]


# ---------------------------------------------------------------- training budgets


def budget_label(epochs=None, steps_per_epoch=None, patch_size=None, batch_size=None,
                 time_budget_s=None, precision=None) -> str:
    """How much training a run had, as tables show it: ``10x1000 steps, 48 px, batch 16``
    (epochs x steps per epoch, LR patch side in pixels, patches per step), then ``600 s limit``
    for a non-zero time budget (seconds) and the precision where one is given. Unknown parts
    (None, NaN) are left out; "unknown budget" when every part is."""
    parts = []
    if _known(epochs) and _known(steps_per_epoch):
        parts.append(f"{_number(epochs)}x{_number(steps_per_epoch)} steps")
    elif _known(epochs):
        parts.append(f"{_number(epochs)} epochs")
    elif _known(steps_per_epoch):
        parts.append(f"{_number(steps_per_epoch)} steps per epoch")
    if _known(patch_size):
        parts.append(f"{_number(patch_size)} px")
    if _known(batch_size):
        parts.append(f"batch {_number(batch_size)}")
    if _known(time_budget_s) and float(time_budget_s) > 0:
        parts.append(f"{_number(time_budget_s)} s limit")
    if _known(precision) and str(precision):
        parts.append(str(precision))
    return ", ".join(parts) or "unknown budget"


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _number(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def budget_labels(runs: pd.DataFrame) -> pd.Series:
    """The :func:`budget_label` of each run, from the ``param:<name>`` columns of
    :func:`tidy_runs` (spellings such as "10" and "10.0" are one budget). The precision is
    named only where the runs do not all share one."""
    numeric = [name for name in BUDGET_PARAMS if name != "precision"]
    values = {name: param_numbers(runs, name) for name in numeric}
    precision = param_values(runs, "precision")
    values["precision"] = precision if precision.nunique(dropna=False) > 1 else pd.Series([None] * len(runs), index=runs.index, dtype=object)
    labels = [budget_label(**dict(zip(values, row))) for row in zip(*values.values())]
    return pd.Series(labels, index=runs.index, dtype=object)


def with_budget(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a ``budget`` column (:func:`budget_labels`) unless it has one."""
    return runs if "budget" in runs.columns else runs.assign(budget=budget_labels(runs))


def several_budgets(frame: pd.DataFrame) -> bool:
    """Whether the rows (or runs) of ``frame`` were trained with more than one budget."""
    return "budget" in frame.columns and frame["budget"].nunique() > 1


def _natural_key(text: str) -> list:
    """Sorts ``3x100 steps`` before ``10x100 steps``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


# ---------------------------------------------------------------- tidy runs -> table


def eval_datasets(columns) -> list[str]:
    """Benchmark datasets with an ``eval_<dataset>_psnr`` or ``_gain`` column, sorted."""
    return sorted({key.dataset for c in columns if (key := parse_eval_key(c)) and key.measure in ("psnr", "gain")})


def value_columns(columns) -> list[str]:
    """Metrics the table aggregates, in table order: validation quality, steps to a gain
    over bicubic (:func:`steps_to_gain`), benchmark quality
    (PSNR and gain per dataset), training cost, inference speed per dataset."""
    present = set(columns)
    benchmarks = [EvalKey(d, m).key for d in eval_datasets(columns) for m in BENCHMARK_MEASURES if EvalKey(d, m).key in present]
    speeds = sorted(c for c in columns if (key := parse_eval_key(c)) and key.measure == "ms_per_mp")
    return [*QUALITY_METRICS, *steps_to_gain_columns(columns), *benchmarks, *COST_METRICS, *speeds]


def aggregate(usable: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration and training budget, sorted by scale, upsampler, blocks,
    filters, budget (runs of one configuration with different budgets are never pooled).

    Columns: the config keys; ``budget`` (:func:`budget_label`); ``n`` (runs, i.e. seeds); ``params_count``,
    ``macs_per_lr_pixel``; ``<metric>_mean``, ``<metric>_std`` and ``<metric>_ci95`` (half-width
    of the 95 % t-interval of the mean; NaN for one run) for each of
    :func:`value_columns` (PSNR and gains in dB, SSIM 0..1, ``train_time_s`` seconds,
    ``step_time_ms`` and ``eval_<dataset>_ms_per_mp`` milliseconds); ``eval_<dataset>_n``
    (runs evaluated on that dataset); ``pareto`` (:func:`pareto_by_scale`: compared with at
    least one other configuration of the same scale and budget, and none of them costs no more
    MACs per LR pixel for a higher mean validation PSNR, or fewer for the same);
    ``differing_params`` (params other than the seed that differ between the runs of the row;
    "" when none).
    """
    usable = with_budget(usable)
    keys = list(ROW_KEYS)
    # Benchmark and steps-to-gain columns only where a compared run has a value (excluded runs
    # may have some; runs without a validation curve have none).
    optional = {*steps_to_gain_columns(usable.columns)}
    present = [c for c in usable.columns if not (c.startswith("eval_") or c in optional) or usable[c].notna().any()]
    values = value_columns(present)
    spec = {"n": ("run_id", "size")}
    spec.update({fact: (fact, "median") for fact in MODEL_FACTS})
    for column in values:
        spec[f"{column}_mean"] = (column, "mean")
        spec[f"{column}_std"] = (column, "std")
    for dataset in eval_datasets(present):
        column = EvalKey(dataset, "psnr").key if EvalKey(dataset, "psnr").key in present else EvalKey(dataset, "gain").key
        spec[f"eval_{dataset}_n"] = (column, "count")
    grouped = usable.groupby(keys, sort=True)
    table = grouped.agg(**spec).reset_index()
    for column in values:  # half-width of the 95 % t-interval of the mean over seeds (NaN for one run)
        counts = grouped[column].count().to_numpy()
        t = stats.t.ppf(0.975, np.maximum(counts - 1, 1))
        table[f"{column}_ci95"] = np.where(counts >= 2, t * table[f"{column}_std"].to_numpy() / np.sqrt(np.maximum(counts, 1)), np.nan)
    table["pareto"] = pareto_by_scale(table)
    table["differing_params"] = differing_params(usable, table[keys])
    return sort_rows(table)


def sort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` sorted by the config keys, then budget in natural order (3x100 before 10x100)."""
    order = {b: i for i, b in enumerate(sorted(frame["budget"].unique(), key=_natural_key))}
    return frame.sort_values(list(ROW_KEYS), key=lambda c: c.map(order) if c.name == "budget" else c,
                             kind="stable", ignore_index=True)


def differing_params(usable: pd.DataFrame, configurations: pd.DataFrame) -> list[str]:
    """For each row of ``configurations`` (config keys and budget), the names of the params
    other than the seed that differ between its runs in ``usable``, comma-separated ("" when none)."""
    usable = with_budget(usable)
    params = [c for c in usable.columns if c.startswith("param:")]
    if not params or usable.empty:
        return [""] * len(configurations)
    counts = usable.groupby(list(ROW_KEYS))[params].nunique(dropna=False)
    names = {key: ", ".join(c.removeprefix("param:") for c in counts.columns[row > 1]) for key, row in zip(counts.index, counts.to_numpy())}
    return [names.get(tuple(key), "") for key in configurations.itertuples(index=False)]


def findings_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MLflow runs -> (findings table, excluded runs with a reason)."""
    usable, excluded = split_runs(tidy_runs(runs))
    return aggregate(usable), excluded


# ---------------------------------------------------------------- Pareto front


def pareto_front(cost, quality) -> np.ndarray:
    """True where no other point has lower-or-equal cost and higher-or-equal quality with one
    of them strictly better. Points with a NaN coordinate are never on the front."""
    cost, quality = np.asarray(cost, dtype=float), np.asarray(quality, dtype=float)
    on_front = np.zeros(len(cost), dtype=bool)
    valid = np.flatnonzero(~(np.isnan(cost) | np.isnan(quality)))
    # Cheapest first, best first among equal costs: a point is on the front when it beats the
    # best quality of every cheaper point, or ties a front point exactly.
    order = valid[np.lexsort((-quality[valid], cost[valid]))]
    best, best_cost = -np.inf, None
    for index in order:
        if quality[index] > best:
            on_front[index], best, best_cost = True, quality[index], cost[index]
        elif quality[index] == best and cost[index] == best_cost:
            on_front[index] = True
    return on_front


def pareto_groups(table: pd.DataFrame) -> np.ndarray:
    """The group number of each row for the Pareto front: its scale (PSNRs of different scales
    are not comparable) and, where the table has one, its budget (nor are those of different
    training budgets)."""
    if table.empty:
        return np.zeros(0, dtype=int)
    keys = ["scale", "budget"] if "budget" in table.columns else ["scale"]
    return table.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()


def pareto_ranked(table: pd.DataFrame, cost: str = PARETO_COST) -> np.ndarray:
    """True where the Pareto front against ``cost`` (a column of ``table``) means something for a
    row: it has that cost and a mean validation PSNR, and at least one other row of its scale and
    budget has both."""
    if table.empty:
        return np.zeros(0, dtype=bool)
    costs = _cost_values(table, cost)
    quality = table["val_psnr_mean"].to_numpy(dtype=float)
    valid = ~(np.isnan(costs) | np.isnan(quality))
    groups = pareto_groups(table)
    comparable = np.bincount(groups[valid], minlength=groups.max() + 1)  # rows with both, per group
    return valid & (comparable[groups] >= 2)


def pareto_by_scale(table: pd.DataFrame, cost: str = PARETO_COST) -> np.ndarray:
    """The Pareto front of ``cost`` (a column of ``table``, lower is better: by default the MACs
    per LR pixel, the structural cost) vs mean validation PSNR, within each scale and budget
    (:func:`pareto_groups`). Only :func:`pareto_ranked` rows can be on it: a row alone in its
    group, or without that cost, never is."""
    on_front = np.zeros(len(table), dtype=bool)
    ranked, groups = pareto_ranked(table, cost), pareto_groups(table)
    costs, quality = _cost_values(table, cost), table["val_psnr_mean"].to_numpy(dtype=float)
    for group in np.unique(groups[ranked]):
        positions = np.flatnonzero(ranked & (groups == group))
        on_front[positions] = pareto_front(costs[positions], quality[positions])
    return on_front


def _cost_values(table: pd.DataFrame, cost: str) -> np.ndarray:
    """The ``cost`` column as floats; NaN everywhere where the table has no such column (no
    throughput measured: no row is ranked)."""
    return table[cost].to_numpy(dtype=float) if cost in table.columns else np.full(len(table), np.nan)


# ---------------------------------------------------------------- measured throughput

# The columns of a throughput file (benchmarks/grid_throughput.py writes it, ``compare
# --throughput`` reads it): one row per configuration, ``label`` its run name
# (:func:`configuration_labels`), the timings medians over rounds.
THROUGHPUT_LABEL = "label"
THROUGHPUT_TIMINGS = ("train_step_ms", "train_patches_per_s", "infer_ms_per_mp")
THROUGHPUT_COLUMNS = (THROUGHPUT_LABEL, "scale", "upsampler", "blocks", "filters", "params", "macs_per_lr_pixel",
                      *THROUGHPUT_TIMINGS, "rounds")
# The table's columns from a throughput file (timing -> column), and the front against the first.
MEASURED_COLUMNS = {"train_step_ms": "train_step_ms_measured", "infer_ms_per_mp": "infer_ms_per_mp_measured"}
MEASURED_PARETO_COST = MEASURED_COLUMNS["train_step_ms"]


def throughput_metadata_path(path: Path) -> Path:
    """Where the metadata of a throughput file is (the machine, the date, the library versions,
    the benchmark's settings): beside it, with ``.json`` for its suffix."""
    return Path(path).with_suffix(".json")


def read_throughput(path: Path) -> pd.DataFrame:
    """A throughput file (CSV with :data:`THROUGHPUT_COLUMNS`; columns past ``label`` and the
    timings are not needed here): ``label`` and the timings as floats (milliseconds per step,
    patches per second, milliseconds per output megapixel). Raises ``ConfigError``, one line,
    when the file is missing, not a CSV, lacks a column, holds a timing that is not a positive
    number, or names a configuration twice."""
    path = Path(path)
    fix = "write it with python benchmarks/grid_throughput.py --grid GRID --output PATH"
    try:
        raw = pd.read_csv(path, dtype={THROUGHPUT_LABEL: str})
    except FileNotFoundError:
        raise ConfigError(f"throughput file {path} does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"throughput file {path} is not a readable CSV ({reason}); {fix}") from None
    needed = (THROUGHPUT_LABEL, *MEASURED_COLUMNS)
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise ConfigError(f"throughput file {path} lacks column(s) {', '.join(missing)} (it needs {', '.join(needed)}); {fix}")
    timings = raw[list(MEASURED_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    bad = raw.loc[~(timings > 0).all(axis=1) | raw[THROUGHPUT_LABEL].isna(), THROUGHPUT_LABEL]
    if len(bad):
        raise ConfigError(f"throughput file {path}: row(s) {', '.join(map(str, bad.fillna('(no label)')))} need a label and "
                          f"positive numbers in {', '.join(MEASURED_COLUMNS)}; {fix}")
    repeated = sorted(set(raw.loc[raw[THROUGHPUT_LABEL].duplicated(), THROUGHPUT_LABEL]))
    if repeated:
        raise ConfigError(f"throughput file {path} names {', '.join(repeated)} more than once; keep one row per configuration")
    return pd.concat([raw[[THROUGHPUT_LABEL]], timings], axis=1)


def with_throughput(table: pd.DataFrame, throughput: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the measured timings of :func:`read_throughput` as
    :data:`MEASURED_COLUMNS`, matched by configuration label, blank (NaN) for configurations
    without a row; and ``pareto_measured``: the front against the measured training step time.
    The step time was measured at the file's patch and batch size (the grid's): rows of one
    configuration with other budgets get the same numbers."""
    by_label = throughput.set_index(THROUGHPUT_LABEL)
    labels = pd.Series(configuration_labels(table), index=table.index, dtype=object)
    measured = table.assign(**{column: labels.map(by_label[timing]).astype(float) for timing, column in MEASURED_COLUMNS.items()})
    measured["pareto_measured"] = pareto_by_scale(measured, MEASURED_PARETO_COST)
    return measured


# ---------------------------------------------------------------- curves to plot


def configuration_labels(frame: pd.DataFrame) -> list[str]:
    """The run name of each row's configuration (config-key columns; ``upsampler`` is the
    variant), e.g. ``edsr_x4_b8_f32_transpose_k6``."""
    return [run_name(r.scale, r.blocks, r.filters, r.upsampler) for r in frame.itertuples()]


def row_labels(frame: pd.DataFrame) -> list[str]:
    """:func:`configuration_labels`, with the budget in brackets where the rows have several
    (``edsr_x2_b1_f8_subpixel (3x100 steps, 24 px, batch 4)``)."""
    names = configuration_labels(frame)
    if not several_budgets(frame):
        return names
    return [f"{name} ({budget})" for name, budget in zip(names, frame["budget"])]


def representative_runs(usable: pd.DataFrame) -> pd.DataFrame:
    """One run per row of the table (configuration and budget), the seed whose final
    validation PSNR is nearest the row's mean: columns config keys, ``budget``, ``run_id``,
    ``label`` (:func:`row_labels`), sorted like the table."""
    usable = with_budget(usable)
    keys = list(ROW_KEYS)
    distance = (usable["val_psnr"] - usable.groupby(keys)["val_psnr"].transform("mean")).abs()
    ranked = usable.assign(distance=distance).sort_values([*keys, "distance", "run_id"])
    chosen = sort_rows(ranked.drop_duplicates(keys)[[*keys, "run_id"]])
    chosen["label"] = row_labels(chosen)
    return chosen


# ---------------------------------------------------------------- per-image tables

BICUBIC_COLUMN, BEST_COLUMN, MEAN_ROW = "bicubic", "best", "mean"


def per_image_table(usable: pd.DataFrame, tables: dict[str, pd.DataFrame], measure: str = "psnr") -> pd.DataFrame:
    """One benchmark set's scores image by image: ``tables`` are runs' per-image tables
    (``eval/<set>_x<scale>.csv``: ``image``, ``<measure>``, ``bicubic_<measure>``) by run id,
    runs of one scale.

    Rows: the images (natural order), then ``mean`` (the mean of the rows above). Columns:
    ``bicubic``, one per table row (:func:`row_labels`: configuration, and budget where they
    differ) holding the mean over its seeds, in table order; ``best``, the column with the
    highest value, bicubic included (the first on a tie). Runs of ``usable`` without a table
    are left out."""
    runs = with_budget(usable[usable["run_id"].isin(list(tables))])
    if runs.empty:
        return pd.DataFrame()
    rows = sort_rows(runs.drop_duplicates(list(ROW_KEYS))[list(ROW_KEYS)])
    labels = dict(zip(map(tuple, rows[list(ROW_KEYS)].to_numpy()), row_labels(rows)))
    run_labels = {r.run_id: labels[tuple(getattr(r, k) for k in ROW_KEYS)] for r in runs.itertuples()}
    scores = pd.concat(
        [tables[run_id][["image", measure, f"bicubic_{measure}"]].assign(label=label) for run_id, label in run_labels.items()],
        ignore_index=True,
    )
    wide = scores.pivot_table(index="image", columns="label", values=measure, aggfunc="mean")[list(dict.fromkeys(labels.values()))]
    table = pd.concat([scores.groupby("image")[f"bicubic_{measure}"].mean().rename(BICUBIC_COLUMN), wide], axis=1)
    table = table.loc[sorted(table.index, key=_natural_key)]
    table.loc[MEAN_ROW] = table.mean()
    table[BEST_COLUMN] = table.idxmax(axis=1)
    return table.rename_axis("image").reset_index()


def per_image_markdown(table: pd.DataFrame, title: str, decimals: int = 2) -> str:
    """:func:`per_image_table` as a Markdown table under a heading, the best score of each row
    in bold."""
    scores = [c for c in table.columns if c not in ("image", BEST_COLUMN)]

    def cell(row, column):
        text = f"{row[column]:.{decimals}f}" if pd.notna(row[column]) else ""
        return f"**{text}**" if column == row[BEST_COLUMN] else text

    lines = [f"## {title}", "", "| image | " + " | ".join(scores) + " |", "|---|" + "---|" * len(scores)]
    lines += ["| " + " | ".join([str(row["image"]), *(cell(row, c) for c in scores)]) + " |" for _, row in table.iterrows()]
    return "\n".join(lines) + "\n"


def home_experiment_id(runs: pd.DataFrame) -> str:
    """The experiment holding most of ``runs`` (the lowest id on a tie): where the comparison
    run goes."""
    counts = runs["experiment_id"].astype(str).value_counts()
    return sorted(counts[counts == counts.max()].index, key=lambda e: (len(e), e))[0]


# ---------------------------------------------------------------- presentation


HEADERS = {
    "val_psnr": "val PSNR (dB)", "val_psnr_gain": "gain (dB)", "val_ssim": "val SSIM",
    "train_time_s": "train time (s)", "step_time_ms": "step (ms)",
    "train_step_ms_measured": "step, measured (ms)", "infer_ms_per_mp_measured": "inference, measured (ms/MP)",
}
# The Pareto columns of the shown table, each named with the cost it is against.
PARETO_HEADERS = {"pareto": "Pareto (MACs)", "pareto_measured": "Pareto (measured)"}


def _decimals(column: str) -> int:
    if _STEPS_TO_GAIN.fullmatch(column):
        return 0
    if column.endswith("ssim"):
        return 4
    if column.endswith(("psnr", "gain", "psnr_low", "psnr_high")):
        return 2
    return 1


def _header(column: str) -> str:
    if column in HEADERS:
        return HEADERS[column]
    if match := _STEPS_TO_GAIN.fullmatch(column):
        return f"steps to +{match['threshold']} dB"
    key = parse_eval_key(column)
    name, measure = key.dataset, key.measure
    return {"psnr": f"{name} PSNR (dB)", "gain": f"{name} gain (dB)", "ms_per_mp": f"{name} ms/MP",
            "psnr_low": f"{name} PSNR < LR Nyquist (dB)", "psnr_high": f"{name} PSNR > LR Nyquist (dB)",
            "periodic_index": f"{name} periodic-error index", "bicubic_periodic_index": f"{name} bicubic periodic index"}[measure]


def mean_std_text(mean: float, std: float, decimals: int, plus_minus: str = "±") -> str:
    """``32.10 ± 0.05``; the mean alone for one run; "" when there is no value; ``not reached``
    for an infinite mean (:func:`steps_to_gain`: some run never got there)."""
    if pd.isna(mean):
        return ""
    if np.isinf(mean):
        return NOT_REACHED
    grouping = "," if decimals == 0 else ""  # step counts: 1,400 ± 200
    if pd.isna(std):
        return f"{mean:{grouping}.{decimals}f}"
    return f"{mean:{grouping}.{decimals}f} {plus_minus} {std:{grouping}.{decimals}f}"


NOT_REACHED = "not reached"
# Marks a gain over bicubic below 0 dB; :func:`table_notes` says what it means.
BELOW_BICUBIC_MARK = "†"
MIXED_BUDGETS_NOTE = "rows were trained with different budgets: compare PSNR only between rows of the same budget"


def gain_columns(columns) -> list[str]:
    """The gain-over-bicubic metrics among :func:`value_columns` (``val_psnr_gain``,
    ``eval_<set>_gain``)."""
    return [c for c in value_columns(columns) if c == "val_psnr_gain" or ((key := parse_eval_key(c)) and key.measure == "gain")]


def below_bicubic(table: pd.DataFrame) -> np.ndarray:
    """True where a row's mean gain over bicubic (validation or any benchmark) is below 0 dB:
    the model is worse than the interpolation it learns to improve, i.e. under-trained."""
    gains = [f"{c}_mean" for c in gain_columns(aggregated_metrics(table))]
    return (table[gains].to_numpy(dtype=float) < 0).any(axis=1) if gains else np.zeros(len(table), dtype=bool)


def display_table(table: pd.DataFrame, plus_minus: str = "±") -> pd.DataFrame:
    """The table for people: strings, mean ± half-width of its 95 % t-interval over seeds in one
    cell (the mean alone for one run), units in the headers. A ``budget`` column only where
    rows differ in budget; a gain below 0 dB carries :data:`BELOW_BICUBIC_MARK`; ``Pareto
    (MACs)`` says yes only on a front that means something (:func:`pareto_by_scale`); with a
    throughput file (:func:`with_throughput`), the measured step and inference times and ``Pareto
    (measured)``, the front against the measured step time. :func:`table_notes` says what these
    mean."""
    shown = pd.DataFrame({
        "scale": "x" + table["scale"].astype(str),
        "upsampler": table["upsampler"],
        "blocks": table["blocks"].astype(str),
        "filters": table["filters"].astype(str),
    })
    if several_budgets(table):
        shown["budget"] = table["budget"].astype(str)
    shown["runs"] = table["n"].astype(str)
    shown["params"] = [f"{v:,.0f}" if pd.notna(v) else "" for v in table["params_count"]]
    shown["MACs/LR px"] = [f"{v:,.0f}" if pd.notna(v) else "" for v in table["macs_per_lr_pixel"]]
    columns = aggregated_metrics(table)
    gains = set(gain_columns(columns))
    for column in value_columns(columns):
        decimals = _decimals(column)
        shown[_header(column)] = [
            mean_std_text(m, s, decimals, plus_minus) + (f" {BELOW_BICUBIC_MARK}" if column in gains and m < 0 else "")
            for m, s in zip(table[f"{column}_mean"], table[f"{column}_ci95"])
        ]
    for column in MEASURED_COLUMNS.values():
        if column in table.columns:
            shown[HEADERS[column]] = [f"{v:,.1f}" if pd.notna(v) else "" for v in table[column]]
    for column, header in PARETO_HEADERS.items():
        if column in table.columns:
            shown[header] = np.where(table[column], "yes", "")
    if table["differing_params"].astype(bool).any():
        shown["differs within row"] = table["differing_params"]
    return shown


def table_notes(table: pd.DataFrame) -> list[str]:
    """What a reader must know to read the table, one line each: budgets that differ between
    rows, rows below bicubic, what the steps-to-gain columns count, Pareto (MACs) cells left
    blank, and what the measured Pareto column is against ([] for a table of one budget, every
    model above bicubic, no steps-to-gain column, no throughput file and a Pareto front over
    several configurations)."""
    notes = []
    if several_budgets(table):
        notes.append(MIXED_BUDGETS_NOTE)
    below = below_bicubic(table)
    if below.any():
        budgets = "; ".join(dict.fromkeys(table.loc[below, "budget"])) if "budget" in table.columns else ""
        notes.append(f"{BELOW_BICUBIC_MARK} below bicubic: under-trained{f' ({budgets})' if budgets else ''}; train longer")
    if steps := steps_to_gain_columns(aggregated_metrics(table)):
        notes.append(f"{', '.join(_header(c) for c in steps)}: training steps until the validation PSNR first reached "
                     f"bicubic's + that gain (to one epoch); {NOT_REACHED}: not by every seed within its budget")
    ranked = pareto_ranked(table)
    costed = not np.isnan(_cost_values(table, PARETO_COST)).any()
    if len(table) and not ranked.any():
        notes.append("no Pareto front: one configuration per scale and budget" if costed else
                     "no Pareto front: fewer than two configurations with MACs per LR pixel per scale and budget")
    elif (~ranked).any():
        notes.append(f"{PARETO_HEADERS['pareto']}: only among configurations of one scale and budget; {int((~ranked).sum())} row(s) "
                     "with no other to compare against" + ("" if costed else " or without MACs per LR pixel") + " left blank")
    if "pareto_measured" in table.columns:
        unmeasured = int(table[MEASURED_PARETO_COST].isna().sum())
        notes.append(f"{PARETO_HEADERS['pareto_measured']}: against the training step time measured for all configurations "
                     "in one process, rounds alternating (benchmarks/grid_throughput.py; median of rounds), not the runs' own times"
                     + (f"; {unmeasured} row(s) not in the throughput file left blank" if unmeasured else ""))
    return notes


def markdown_table(shown: pd.DataFrame, notes: list[str] = ()) -> str:
    """A GitHub-flavoured Markdown table of string cells, the ``notes`` as a list under it."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rows = [line(shown.columns), "|" + "|".join("---" for _ in shown.columns) + "|"]
    rows += [line(row) for row in shown.itertuples(index=False)]
    text = "\n".join(rows) + "\n"
    return text + "".join(["\n", *(f"- {note}\n" for note in notes)]) if notes else text


def html_table(table: pd.DataFrame) -> str:
    """An HTML table of :func:`display_table`, the :func:`table_notes` as a list under it."""
    text = display_table(table).to_html(index=False, border=0, classes="findings")
    notes = table_notes(table)
    if notes:
        text += '\n<ul class="findings-notes">\n' + "".join(f"<li>{html.escape(n)}</li>\n" for n in notes) + "</ul>"
    return text


def latex_table(table: pd.DataFrame) -> str:
    """A booktabs ``tabular`` of :func:`display_table`, the :func:`table_notes` as rows
    spanning the table at its foot."""
    shown = display_table(table, plus_minus="\x00")
    escaped = shown.map(_latex_escape).map(_latex_symbols)
    escaped.columns = [_latex_escape(c) for c in shown.columns]
    text = escaped.to_latex(index=False, escape=False, column_format="l" * len(shown.columns))
    notes = table_notes(table)
    if notes:
        rows = "".join(rf"\multicolumn{{{len(shown.columns)}}}{{l}}{{{_latex_symbols(_latex_escape(n))}}} \\" + "\n" for n in notes)
        text = text.replace("\\bottomrule", "\\midrule\n" + rows + "\\bottomrule")
    return text


def _latex_symbols(text: str) -> str:
    return text.replace("\x00", r"$\pm$").replace(BELOW_BICUBIC_MARK, r"$^\dagger$")


def _latex_escape(text: str) -> str:
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(specials.get(ch, ch) for ch in str(text))


def excluded_report(excluded: pd.DataFrame) -> str:
    """One line per excluded run: id, name and reason ("" when none was excluded)."""
    return "\n".join(f"  {r.run_id} {r.run_name or ''}: {r.reason}" for r in excluded.itertuples())


# ---------------------------------------------------------------- files


def export_table(table: pd.DataFrame, output_dir: Path) -> dict[str, Path]:
    """Writes the table as Markdown, CSV, HTML, LaTeX and JSON into ``output_dir``.

    CSV and JSON hold every number at full precision (NaN: empty / null); Markdown, HTML and
    LaTeX hold :func:`display_table` with the :func:`table_notes` under it. Returns
    {format: path}. Existing files are replaced.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {fmt: output_dir / name for fmt, name in EXPORT_NAMES.items()}
    paths["markdown"].write_text(markdown_table(display_table(table), table_notes(table)))
    table.to_csv(paths["csv"], index=False)
    paths["html"].write_text(html_table(table))
    paths["latex"].write_text(latex_table(table))
    records = json.loads(table.to_json(orient="records", double_precision=15))
    paths["json"].write_text(json.dumps(records, indent=2) + "\n")
    return paths


def export_excluded(excluded: pd.DataFrame, output_dir: Path) -> Path:
    """Writes the excluded runs (with their reasons) as CSV; written even when empty."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / EXCLUDED_FILE
    excluded[EXCLUDED_COLUMNS].to_csv(path, index=False)
    return path
