"""The study statistics (``analysis.StudyStatistics``) as files: Markdown (also appended to
``findings.md``), HTML, a CSV per table and one JSON. Pure pandas."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from .analysis import StudyStatistics

FILE_STEM = "statistics"


def _number(value, decimals: int = 3, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def _interval(low, high, decimals: int = 3) -> str:
    return "-" if low is None or math.isnan(low) else f"[{low:+.{decimals}f}, {high:+.{decimals}f}]"


def _p(value) -> str:
    if value is None or math.isnan(value):
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _seeds(value) -> str:
    return "more than 100" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def terms_section(stats: StudyStatistics) -> list[str]:
    lines = ["## The grid's model", "",
             "Per metric, OLS of the metric on the factors, their interaction and the seed (a block), every "
             "factor sum-coded: an F-test per term (Type III); a two-level factor's main effect (last level "
             "minus first, averaged over the other factors) with its 95 % interval. Exploratory, except "
             "where the primary family below names a term.", ""]
    rows = [[r.metric, r.term, f"{r.df:g}, {r.residual_df:g}", f"{r.F:.2f}", _p(r.p),
             "-" if math.isnan(r.estimate) else f"{_number(r.estimate)} {_interval(r.ci_low, r.ci_high)}"]
            for r in stats.terms.itertuples()]
    lines += _table(["metric", "term", "df", "F", "p", "effect (dB) [95 % CI]"], rows)
    lines += ["", "Estimated marginal means (dB; each level's prediction averaged with equal weight over the "
              "other factors' cells and the seeds), 95 % intervals:", ""]
    rows = [[r.metric, r.factor, r.level, f"{r.mean:.3f}", _interval(r.ci_low, r.ci_high).replace("+", "")]
            for r in stats.means.itertuples()]
    lines += _table(["metric", "factor", "level", "mean", "95 % CI"], rows)
    if not stats.simple_effects.empty:
        lines += ["", "Each two-level factor's effect within each level of the others (from the model: the "
                  "residual variance pooled over the grid), 95 % intervals, uncorrected:", ""]
        rows = [[r.metric, f"{r.factor} {r.contrast}", r.at, f"{_number(r.estimate)} {_interval(r.ci_low, r.ci_high)}", _p(r.p)]
                for r in stats.simple_effects.itertuples()]
        lines += _table(["metric", "effect", "at", "dB [95 % CI]", "p"], rows)
    return lines


def primary_section(stats: StudyStatistics, margin: float) -> list[str]:
    if stats.primary.empty:
        return ["## Primary family", "", "None declared (a grid file's `primary:`): every comparison below is exploratory."]
    size = len(stats.primary)
    lines = ["## Primary family", "",
             f"{size} tests (every hypothesis on every primary metric), Holm across all {size}; margin ±{margin:g} dB; "
             f"{stats.primary['declared'].iloc[0]}. Verdicts: *difference* = the Holm-adjusted interval excludes 0; "
             "*larger than the margin* = it excludes the margin; *equivalent* = TOST rejects at the family's level "
             "(Holm); else *not resolved*.", ""]
    rows = [[r.metric, r.hypothesis, str(r.seeds), _number(r.value), _interval(r.ci_low, r.ci_high),
             f"{_interval(r.adjusted_low, r.adjusted_high)} ({r.adjusted_confidence:.2%})", _p(r.p_holm), _p(r.p_tost_holm), r.verdict]
            for r in stats.primary.itertuples()]
    return lines + _table(["metric", "hypothesis", "seeds", "estimate (dB)", "95 % CI", "Holm-adjusted CI", "p (Holm)",
                           "TOST p (Holm)", "verdict"], rows)


def planning_section(stats: StudyStatistics, margin: float) -> list[str]:
    lines = ["## Planning: the seeds each question needs", "",
             "From each estimate's observed spread: the minimum effect detected with 80 % power with the seeds run "
             "(two-sided t, noncentral), and the fewest seeds for 80 % power to detect a true difference of "
             f"{margin:g} dB and to show equivalence within ±{margin:g} dB when the truth is 0; each at Holm's first "
             "step (alpha / family size; an exploratory comparison as if added to the primary family). A spread "
             "seen on few seeds is itself uncertain (from 3 seeds, paired: its 95 % interval spans 0.5x to 6x), "
             "so plan from a pilot and re-plan as seeds arrive.", ""]
    rows = [[r.metric, r.hypothesis, r.family, _seeds(r.seeds_run) if not math.isnan(r.seeds_run) else "-",
             _number(r.sd_per_seed, 4, signed=False), f"{r.alpha:.4f}", _number(r.mde_80, 3, signed=False),
             _seeds(r.seeds_for_margin), _seeds(r.seeds_for_equivalence)]
            for r in stats.planning.itertuples()]
    return lines + _table(["metric", "hypothesis", "family", "seeds run", "SE x √seeds", "alpha", "MDE 80 % (dB)",
                           f"seeds: detect {margin:g} dB", f"seeds: equivalence ±{margin:g}"], rows)


def exploratory_section(stats: StudyStatistics) -> list[str]:
    if stats.exploratory.empty:
        return []
    lines = ["## Exploratory comparisons", "",
             "a - b paired by seed: mean, 95 % t-interval, paired-t p, uncorrected and without a verdict "
             "(none of these is in the primary family).", ""]
    rows = [[r.metric, f"{r.a} - {r.b}", str(r.n), _number(r.mean_diff), _interval(r.ci_low, r.ci_high), _p(r.p), r.declared]
            for r in stats.exploratory.itertuples()]
    return lines + _table(["metric", "a - b", "seeds", "mean (dB)", "95 % CI", "p", "declared"], rows)


def divergence_section(stats: StudyStatistics) -> list[str]:
    if stats.divergence.empty or not stats.divergence["diverged"].sum():
        return []
    rows = [[r.configuration, f"{r.diverged} of {r.runs}", r.diverged_run_ids] for r in stats.divergence.itertuples() if r.diverged]
    return ["## Divergence", "", "Configurations with a diverged run (the others: none):", "",
            *_table(["configuration", "diverged", "runs"], rows)]


def statistics_markdown(stats: StudyStatistics, margin: float) -> str:
    sections = [terms_section(stats), primary_section(stats, margin), planning_section(stats, margin),
                exploratory_section(stats), divergence_section(stats)]
    notes = ["Notes:", "", *(f"- {note}" for note in stats.notes)] if stats.notes else []
    return "\n\n".join("\n".join(s) for s in [*sections, notes] if s) + "\n"


def statistics_html(tables: dict[str, pd.DataFrame]) -> str:
    """Every table as HTML under its name (the Markdown holds the reading)."""
    parts = [f"<h2>{html.escape(name.replace('_', ' '))}</h2>\n{frame.to_html(index=False, na_rep='-', float_format=lambda v: f'{v:.4g}')}"
             for name, frame in tables.items() if not frame.empty]
    return "<section class=\"statistics\">\n" + "\n".join(parts) + "\n</section>\n"


def export_statistics(stats: StudyStatistics, margin: float, output_dir: Path) -> dict[str, Path]:
    """Writes ``statistics.md``, ``statistics.html``, ``statistics.json`` and a CSV per table
    (``statistics_<table>.csv``) into ``output_dir``; returns {name: path}."""
    output_dir.mkdir(parents=True, exist_ok=True)
    markdown = statistics_markdown(stats, margin)
    tables = stats.tables()
    paths = {"statistics_markdown": output_dir / f"{FILE_STEM}.md", "statistics_html": output_dir / f"{FILE_STEM}.html",
             "statistics_json": output_dir / f"{FILE_STEM}.json"}
    paths["statistics_markdown"].write_text(markdown)
    paths["statistics_html"].write_text(statistics_html(tables))
    records = {name: json.loads(frame.to_json(orient="records", double_precision=15)) for name, frame in tables.items()}
    paths["statistics_json"].write_text(json.dumps({"margin_db": margin, "notes": stats.notes, **records}, indent=2) + "\n")
    for name, frame in tables.items():
        paths[f"statistics_{name}"] = output_dir / f"{FILE_STEM}_{name}.csv"
        frame.to_csv(paths[f"statistics_{name}"], index=False)
    return paths
