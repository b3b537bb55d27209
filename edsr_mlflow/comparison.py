"""The ``compare`` workflow: training runs from the tracking store -> findings table, files,
figures, and a ``comparison`` run that keeps them all.

Queries go through ``run_store``; ``findings`` and ``plots`` are pure and know nothing of
MLflow. The table costs one ``search_runs`` query; the plotted curves and sample images a
request per configuration; the steps-to-gain columns and per-image tables, where asked for, a
request per compared run (and set).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import analysis, findings, grid, plots, run_store, schema, statistics, statistics_report, tracking
from .errors import NothingToCompare

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = Path("outputs/comparison")
PER_IMAGE_FOLDER = "per_image"
PLOT_NAMES = {
    "psnr_vs_blocks": "psnr_vs_blocks.png",
    "psnr_per_epoch": "val_psnr_per_epoch.png",
    "psnr_vs_time": "psnr_vs_training_time.png",
    "psnr_vs_macs": "psnr_vs_macs.png",
    "psnr_vs_throughput": "psnr_vs_throughput.png",  # only with a throughput file
    "samples": "sample_crops.png",
}
# The throughput file compare was given, and its metadata, as copied into the output folder.
THROUGHPUT_FILE, THROUGHPUT_METADATA_FILE = "throughput.csv", "throughput.json"


@dataclass(frozen=True)
class ComparisonOutcome:
    """What ``compare_run`` produced. ``table`` and ``excluded`` are the DataFrames of
    :mod:`findings`; ``files`` are the written outputs (all logged to run ``run_id``)."""

    run_id: str
    experiment_name: str
    table: pd.DataFrame
    excluded: pd.DataFrame
    markdown: str
    files: list[Path]
    without_samples: list[str]
    paired: pd.DataFrame | None = None  # statistics.paired_table, when comparisons were declared
    paired_markdown: str = ""
    statistics: analysis.StudyStatistics | None = None  # with a grid definition
    statistics_markdown: str = ""


def compare_run(
    experiment: str | None = None,
    parent_run_id: str | None = None,
    output_dir: Path = DEFAULT_OUTPUT_DIR,
    comparisons: tuple[tuple[str, str], ...] = (),
    comparison_metrics: tuple[str, ...] = ("val_psnr",),
    sweep: str | None = None,
    gain_thresholds_db: tuple[float, ...] = findings.DEFAULT_GAIN_THRESHOLDS_DB,
    throughput: Path | None = None,
    per_image: bool = False,
    definition: grid.SweepDefinition | None = None,
) -> ComparisonOutcome:
    """Compares the training runs of ``experiment`` (None: every experiment) and/or the child
    runs of ``parent_run_id``, or of every parent run of ``sweep`` in ``experiment``; writes the
    table in five formats, the excluded runs and five figures (six with ``throughput``) to
    ``output_dir``, with ``per_image`` also the per-image tables (a download per run and set:
    on 1,000 runs the most costly part of a comparison, so asked for); logs them all to a new run named ``comparison`` (tag
    ``edsr_mlflow.kind=comparison``) in the experiment holding most of the compared runs.

    With ``comparisons`` (pairs of run names, a grid file's pre-declared ones), also the paired
    per-seed differences of ``comparison_metrics`` (``paired_comparisons.csv`` / ``.md``).
    For each of ``gain_thresholds_db`` (a grid file's ``steps_to_gain_db``), a column of the
    steps each configuration took to reach bicubic + that gain on its validation curve
    (``findings.steps_to_gain``; a request per run).
    With ``definition`` (a grid file's), also the study statistics of its runs
    (``analysis.study_statistics``: the grid's model, the primary family, planning, divergence),
    as ``statistics.*`` files and a section of ``findings.md`` / ``.html``; the ``train_loss``
    curves of the grid's runs cost a request each where the grid has a divergence rule.
    With ``throughput`` (a CSV of ``benchmarks/grid_throughput.py``), the measured step and
    inference times of each configuration and the Pareto front against the measured step time
    (``findings.with_throughput``), and the file itself among the logged ones.

    Raises ``ConfigError`` when the throughput file is missing or malformed (before any query);
    ``TrackingError`` when the store is unreachable or the experiment or parent run unknown;
    ``NothingToCompare`` (one) when no run can be compared.
    """
    measured = findings.read_throughput(throughput) if throughput is not None else None
    uri = tracking.check_tracking_server()
    scope = run_store.comparison_scope(experiment, parent_run_id, sweep)
    runs = run_store.training_runs(scope)
    if runs.empty:
        raise NothingToCompare(
            f"no training runs in {scope.description} of {uri}; train some (edsr-mlflow train ...) "
            "or pass another --experiment / --parent-run-id"
        )
    usable, excluded = findings.split_runs(findings.tidy_runs(runs))
    excluded_path = findings.export_excluded(excluded, output_dir)
    if usable.empty:
        raise NothingToCompare(
            f"none of the {len(runs)} training runs in {scope.description} can be compared "
            f"(not FINISHED, or missing metrics): see {excluded_path}"
        )
    # Every run's validation curve for the steps-to-gain columns; else only the plotted ones'.
    curve_runs = usable["run_id"] if gain_thresholds_db else findings.representative_runs(usable)["run_id"]
    histories = run_store.metric_histories(list(curve_runs), "val_psnr")
    usable = findings.with_steps_to_gain(usable, histories, gain_thresholds_db)
    table = findings.aggregate(usable)
    if measured is not None:
        table = findings.with_throughput(table, measured)
    table_files = findings.export_table(table, output_dir)
    plot_files, without_samples = write_figures(table, usable, histories, output_dir / "plots")
    per_image_files = write_per_image_tables(usable, output_dir / PER_IMAGE_FOLDER) if per_image else []
    throughput_files = copy_throughput_files(throughput, output_dir) if throughput is not None else []
    paired, paired_text = None, ""
    if comparisons:
        paired = statistics.paired_table(usable, list(comparisons), list(comparison_metrics))
        paired_text = statistics.paired_markdown(paired)
        paired.to_csv(output_dir / "paired_comparisons.csv", index=False)
        (output_dir / "paired_comparisons.md").write_text(paired_text)
        table_files["paired_csv"] = output_dir / "paired_comparisons.csv"
        table_files["paired_markdown"] = output_dir / "paired_comparisons.md"
    study, study_text = None, ""
    if definition is not None:
        study = grid_statistics(definition, runs, usable)
        study_text = statistics_report.statistics_markdown(study, definition.margin_db)
        table_files.update(statistics_report.export_statistics(study, definition.margin_db, output_dir))
        append_to_findings(table_files, study_text, statistics_report.statistics_html(study.tables()))

    experiment_id = findings.home_experiment_id(runs)
    params = {
        "experiment": experiment or "", "parent_run_id": parent_run_id or "", **({"sweep": sweep} if sweep else {}),
        **({"throughput": str(throughput)} if throughput is not None else {}),
        "compared_runs": len(usable), "excluded_runs": len(excluded), "configurations": len(table),
    }
    with tracking.closing_run(run_store.start_comparison_run(experiment_id, params)) as run:
        tracking.mark_model_training(run.info.experiment_id)
        run_store.log_files([*table_files.values(), excluded_path, *throughput_files])
        run_store.log_files(plot_files, artifact_path="plots")
        run_store.log_files(per_image_files, artifact_path=PER_IMAGE_FOLDER)
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
    return ComparisonOutcome(
        run_id=run_id, experiment_name=run_store.experiment_name(experiment_id),
        table=table, excluded=excluded, markdown=table_files["markdown"].read_text(),
        files=[*table_files.values(), excluded_path, *throughput_files, *plot_files, *per_image_files],
        without_samples=without_samples,
        paired=paired, paired_markdown=paired_text, statistics=study, statistics_markdown=study_text,
    )


def plan_study(definition: grid.SweepDefinition, experiment: str | None = None, parent_run_id: str | None = None) -> analysis.StudyStatistics:
    """The study statistics of ``definition``'s runs so far (in ``experiment``, default the
    grid's), for ``compare --plan``: read only, nothing written or logged. Raises
    ``NothingToCompare`` when none of the grid's runs can be compared yet."""
    tracking.check_tracking_server()
    runs = run_store.training_runs(run_store.comparison_scope(experiment or definition.experiment, parent_run_id))
    usable, _ = findings.split_runs(findings.tidy_runs(runs)) if not runs.empty else (pd.DataFrame(), None)
    if usable.empty or not usable["run_id"].isin(grid.grid_runs(definition, runs)["run_id"]).any():
        raise NothingToCompare(f"no FINISHED run of grid {definition.name} to plan from; train a pilot first "
                               f"(e.g. edsr-mlflow sweep --grid <file> with two seeds)")
    return grid_statistics(definition, runs, usable)


def grid_statistics(definition: grid.SweepDefinition, runs: pd.DataFrame, usable: pd.DataFrame) -> analysis.StudyStatistics:
    """The study statistics of ``definition``'s runs among ``runs`` (``search_runs`` columns;
    ``usable`` the comparable ones), with their ``train_loss`` curves where the grid has a
    divergence rule (a request per run)."""
    grid_runs = grid.grid_runs(definition, runs)
    losses = run_store.metric_histories(list(grid_runs["run_id"]), "train_loss") if definition.divergence else None
    return analysis.study_statistics(usable, grid_runs, definition, losses)


def append_to_findings(files: dict[str, Path], markdown: str, html_section: str) -> None:
    """The statistics under the table in ``findings.md`` and ``findings.html``."""
    with files["markdown"].open("a") as out:
        out.write("\n" + markdown)
    with files["html"].open("a") as out:
        out.write(html_section)


def write_figures(table: pd.DataFrame, usable: pd.DataFrame, histories: pd.DataFrame, plot_dir: Path) -> tuple[list[Path], list[str]]:
    """Writes the PNG figures of :data:`PLOT_NAMES` (``histories``: the runs' ``val_psnr``
    curves, as ``run_store.metric_histories``; PSNR vs measured throughput only where the table
    has a measured step time); returns their paths and the configurations (labels) that logged no
    sample image (left out of the crop grid)."""
    curves = findings.representative_runs(usable)
    samples, without_samples = sample_images(curves)
    figures = {
        "psnr_vs_blocks": plots.psnr_vs_blocks(table),
        "psnr_per_epoch": plots.psnr_per_epoch(histories[histories["run_id"].isin(curves["run_id"])], curves),
        "psnr_vs_time": plots.psnr_vs_training_time(table),
        "psnr_vs_macs": plots.psnr_vs_macs(table),
        "samples": plots.sample_grid(samples),
    }
    if findings.MEASURED_PARETO_COST in table.columns and table[findings.MEASURED_PARETO_COST].notna().any():
        figures["psnr_vs_throughput"] = plots.psnr_vs_throughput(table)
    paths = [plots.save_png(figure, plot_dir / PLOT_NAMES[name]) for name, figure in figures.items()]
    return paths, without_samples


def write_per_image_tables(usable: pd.DataFrame, folder: Path) -> list[Path]:
    """For each benchmark set the runs were scored on (the default way) and each scale,
    ``<set>_x<scale>.csv`` and ``.md``: PSNR image by image, bicubic and each configuration
    (``findings.per_image_table``), from the runs' ``eval/`` tables (one request per run and
    set). Returns the written paths."""
    paths = []
    for dataset in filter(schema.is_default_evaluation, findings.eval_datasets(usable.columns)):
        scored = usable[usable[schema.EvalKey(dataset, "psnr").key].notna()] if schema.EvalKey(dataset, "psnr").key in usable else usable.iloc[:0]
        for scale, runs in scored.groupby("scale"):
            tables = run_store.eval_tables(list(zip(runs["run_id"], runs["scale"])), dataset)
            table = findings.per_image_table(runs, tables)
            if table.empty:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            stem = folder / f"{dataset}_x{scale}"
            table.to_csv(stem.with_suffix(".csv"), index=False)
            title = (f"{dataset} x{scale}: PSNR (dB, Y) per image, mean over seeds; breadth across images for the weights "
                     "these runs trained, not a test of a difference between configurations")
            stem.with_suffix(".md").write_text(findings.per_image_markdown(table, title))
            paths += [stem.with_suffix(".csv"), stem.with_suffix(".md")]
    return paths


def copy_throughput_files(throughput: Path, output_dir: Path) -> list[Path]:
    """The throughput file and its metadata (``findings.throughput_metadata_path``, where there
    is one) copied into ``output_dir`` as ``throughput.csv`` / ``.json``, so the comparison keeps
    the timings it was drawn from; returns the copies' paths."""
    copies = []
    for source, name in ((Path(throughput), THROUGHPUT_FILE), (findings.throughput_metadata_path(throughput), THROUGHPUT_METADATA_FILE)):
        target = output_dir / name
        if source.is_file():
            if not target.exists() or not source.samefile(target):
                shutil.copyfile(source, target)
            copies.append(target)
    return copies


def sample_images(curves: pd.DataFrame) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The first logged sample of each configuration's representative run, labelled
    ``<configuration> (<image>)``; and the labels of configurations without one."""
    from PIL import Image

    samples, missing = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for curve in curves.itertuples():
            path = run_store.download_first_sample(curve.run_id, Path(tmp) / curve.run_id)
            if path is None:
                missing.append(curve.label)
                continue
            with Image.open(path) as image:
                samples.append((f"{curve.label} ({path.name})", np.asarray(image.convert("RGB"))))
    return samples, missing
