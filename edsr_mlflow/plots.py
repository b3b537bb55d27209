"""Figures of the comparison, built from the findings table. Pure matplotlib, no MLflow.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot, so no global backend
or figure registry is touched; :func:`save_png` renders them with Agg. PSNRs of different
scales are not comparable, so every plot has one panel per scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .findings import several_budgets

LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
ONE_SEED = "one seed per point, no error bars"


def has_spread(table: pd.DataFrame) -> bool:
    """Whether some row of the findings table has two or more runs (``n``), so a standard
    deviation over seeds to draw as an error bar."""
    return bool((table["n"] >= 2).any()) if "n" in table.columns else False


def error_bar_text(table: pd.DataFrame) -> str:
    """What the error bars of a figure of ``table`` are, for its title."""
    if not has_spread(table):
        return ONE_SEED
    return "error bars: std over seeds" + ("" if (table["n"] >= 2).all() else ", none where one seed")


def _budgets(table: pd.DataFrame) -> list[str]:
    """The table's budgets where its rows have several (each then drawn apart), else [None]."""
    if not several_budgets(table):
        return [None]
    return list(dict.fromkeys(table["budget"]))


def _of_budget(table: pd.DataFrame, budget) -> pd.DataFrame:
    return table if budget is None else table[table["budget"] == budget]


def _points(ax, x, y, *, spread: bool, xerr=None, yerr=None, **style) -> None:
    """Plots (x, y) with error bars where the table has a spread to show (a row of one run has
    a NaN std: no bar there), else plain points or lines."""
    if spread:
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, capsize=3, **style)
    else:
        ax.plot(x, y, **style)


def upsampler_colours(upsamplers) -> dict[str, tuple]:
    """The same colour for an upsampler in every figure (tab10, by sorted name)."""
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {name: palette(i % 10) for i, name in enumerate(sorted(set(upsamplers)))}


def _panels(scales, title: str, width: float = 5.5, height: float = 4.0) -> tuple[Figure, dict[int, object]]:
    scales = sorted(set(int(s) for s in scales))
    figure = Figure(figsize=(width * len(scales), height), layout="constrained")
    axes = figure.subplots(1, len(scales), squeeze=False)[0]
    figure.suptitle(title)
    for ax, scale in zip(axes, scales):
        ax.set_title(f"x{scale}")
        ax.grid(True, alpha=0.3)
    return figure, dict(zip(scales, axes))


def psnr_vs_blocks(table: pd.DataFrame) -> Figure:
    """Mean validation PSNR against residual blocks, one line per upsampler (and per filter
    count where several were run, per budget where several were); error bars: standard
    deviation over seeds, drawn (and named in the title) only where some row has two seeds."""
    figure, axes = _panels(table["scale"], f"Validation PSNR vs residual blocks\n({error_bar_text(table)})")
    colours = upsampler_colours(table["upsampler"])
    several_filters = table["filters"].nunique() > 1
    filter_styles = {f: LINESTYLES[i % len(LINESTYLES)] for i, f in enumerate(sorted(table["filters"].unique()))}
    spread = has_spread(table)
    for index, budget in enumerate(_budgets(table)):
        for (scale, upsampler, filters), rows in _of_budget(table, budget).groupby(["scale", "upsampler", "filters"]):
            rows = rows.sort_values("blocks")
            label = f"{upsampler} f{filters}" if several_filters else upsampler
            style = {"color": colours[upsampler], "linestyle": filter_styles[filters], "marker": MARKERS[index % len(MARKERS)],
                     "label": label if budget is None else f"{label} ({budget})"}
            _points(axes[scale], rows["blocks"], rows["val_psnr_mean"], spread=spread, yerr=rows["val_psnr_std"], **style)
    for ax in axes.values():
        ax.set_xticks(sorted(table["blocks"].unique()))
        ax.set_xlabel("residual blocks")
        ax.set_ylabel("validation PSNR (dB, Y)")
        ax.legend(fontsize="small")
    return figure


def psnr_per_epoch(histories: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """Validation PSNR per epoch, one line per configuration.

    ``histories``: ``run_id``, ``step`` (epoch), ``value`` (dB); ``curves``: ``run_id``,
    ``label``, ``scale``, ``upsampler``, ``blocks`` of the run that stands for each
    configuration. Colour: upsampler; line width grows with the number of blocks.
    """
    figure, axes = _panels(curves["scale"], "Validation PSNR per epoch (one seed per configuration)")
    colours = upsampler_colours(curves["upsampler"])
    block_counts = sorted(curves["blocks"].unique())
    widths = dict(zip(block_counts, np.linspace(1.0, 2.5, len(block_counts))))
    by_run = dict(tuple(histories.groupby("run_id")))
    for curve in curves.itertuples():
        history = by_run.get(curve.run_id)
        if history is None or history.empty:
            continue
        axes[curve.scale].plot(
            history["step"], history["value"], color=colours[curve.upsampler],
            linewidth=widths[curve.blocks], marker="." if len(history) < 30 else None, label=curve.label,
        )
    for ax in axes.values():
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation PSNR (dB, Y)")
        if ax.lines:
            ax.legend(fontsize="x-small", ncols=1 + len(ax.lines) // 20, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def psnr_vs_training_time(table: pd.DataFrame) -> Figure:
    """Mean validation PSNR against mean training time, error bars in both directions where
    some row has two seeds. No Pareto front: wall time follows the machine and its load, so the
    front is drawn against MACs (:func:`psnr_vs_macs`) and measured throughput
    (:func:`psnr_vs_throughput`)."""
    return _psnr_vs_cost(table, "train_time_s_mean", "train_time_s_std", None, "training time (s)",
                         "Validation PSNR vs training time")


def psnr_vs_macs(table: pd.DataFrame) -> Figure:
    """Mean validation PSNR against multiply-accumulates per LR pixel (the structural cost, the
    same for every seed: no horizontal bars), vertical error bars where some row has two seeds;
    the configurations on the Pareto front against MACs (``pareto`` column, one front per scale
    and budget) are ringed and joined. The title says which of these it shows."""
    return _psnr_vs_cost(table, "macs_per_lr_pixel", None, "pareto", "multiply-accumulates per LR pixel",
                         "Validation PSNR vs MACs per LR pixel")


def psnr_vs_throughput(table: pd.DataFrame) -> Figure:
    """Mean validation PSNR against the training step time measured in one process for every
    configuration (``train_step_ms_measured``, ``findings.with_throughput``; a median over
    rounds, no horizontal bars), vertical error bars where some row has two seeds; the Pareto
    front against it (``pareto_measured``) ringed and joined. Rows without a measurement are
    left out."""
    measured = table[table["train_step_ms_measured"].notna()]
    return _psnr_vs_cost(measured, "train_step_ms_measured", None, "pareto_measured", "training step, measured (ms)",
                         "Validation PSNR vs measured training step time")


def _psnr_vs_cost(table: pd.DataFrame, cost: str, cost_std: str | None, front_column: str | None, xlabel: str, title: str) -> Figure:
    """Mean validation PSNR against the ``cost`` column, one panel per scale, colour by
    upsampler, marker by budget, ``b<blocks>`` beside each point; error bars (``cost_std``
    horizontally where given) where some row has two seeds; the rows of ``front_column`` ringed
    and joined, one front per scale and budget (None: no front drawn or claimed)."""
    front_text = "" if front_column is None else ("ringed: Pareto front; " if table[front_column].any() else "no Pareto front; ")
    figure, axes = _panels(table["scale"], f"{title}\n({front_text}{error_bar_text(table)})")
    colours = upsampler_colours(table["upsampler"])
    spread = has_spread(table)
    for index, budget in enumerate(_budgets(table)):
        marker = MARKERS[index % len(MARKERS)]
        for (upsampler, scale), rows in _of_budget(table, budget).groupby(["upsampler", "scale"]):
            style = {"color": colours[upsampler], "marker": marker, "linestyle": "none",
                     "label": upsampler if budget is None else f"{upsampler} ({budget})"}
            _points(axes[scale], rows[cost], rows["val_psnr_mean"], spread=spread,
                    xerr=rows[cost_std] if cost_std else None, yerr=rows["val_psnr_std"], **style)
        if front_column is None:
            continue
        for scale, rows in _of_budget(table, budget).groupby("scale"):
            front = rows[rows[front_column]].sort_values(cost)
            if front.empty:
                continue
            ax = axes[scale]
            ax.step(front[cost], front["val_psnr_mean"], where="post", color="black", linewidth=1, alpha=0.6,
                    label="Pareto front" if budget is None else f"Pareto front ({budget})")
            ax.scatter(front[cost], front["val_psnr_mean"], s=160, facecolors="none", edgecolors="black", zorder=3)
    for scale, rows in table.groupby("scale"):
        ax = axes[scale]
        for row in rows.itertuples():
            ax.annotate(f"b{row.blocks}", (getattr(row, cost), row.val_psnr_mean), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation PSNR (dB, Y)")
        ax.legend(fontsize="small")
    return figure


def sample_grid(samples: list[tuple[str, np.ndarray]], width: float = 11.0) -> Figure:
    """One labelled row per configuration: its logged sample strip (LR | bicubic | SR | HR
    crops of the same validation image), uint8 RGB arrays."""
    aspect = max((image.shape[0] / image.shape[1] for _, image in samples), default=0.25)
    row_height = width * aspect + 0.4  # inches; room for the row's title
    figure = Figure(figsize=(width, row_height * max(len(samples), 1)), layout="constrained")
    axes = figure.subplots(max(len(samples), 1), 1, squeeze=False)[:, 0]
    figure.suptitle("Sample crops per configuration (LR | bicubic | SR | HR)")
    for ax, (label, image) in zip(axes, samples):
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(label, loc="left", fontsize="small")
    if not samples:
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no configuration logged samples", ha="center", va="center")
    return figure


def save_png(figure: Figure, path: Path, dpi: int = 100) -> Path:
    """Renders ``figure`` with Agg into ``path`` (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=dpi, format="png")
    return path
