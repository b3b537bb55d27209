"""``compare``: findings from a real (temporary) SQLite tracking store of synthetic runs.

No training: runs are written with MlflowClient, with known numbers, so the aggregation can
be checked exactly. One store serves the module (creating an MLflow database takes seconds);
each scenario lives in its own experiment.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.entities import Metric, Param

from edsr_mlflow import cli, findings, plots, run_store, schema
from edsr_mlflow.errors import TrackingError

from helpers import copy_migrated_store
from servers import free_port

EPOCHS = 3


def log_training_run(client, experiment_id, *, upsampler, blocks, seed, val_psnr, train_time_s, filters=8, scale=2,
                     status="FINISHED", parent_run_id=None, drop=(), extra_metrics=None, extra_params=None, sample=None):
    """A run shaped like ``edsr-mlflow train``'s: tags, string params, per-epoch and final metrics."""
    name = schema.run_name(scale, blocks, filters, upsampler)
    tags = {schema.KIND_TAG: "train", "upsampler": upsampler, "blocks": str(blocks), "scale": str(scale), "mlflow.runName": name}
    if parent_run_id:
        tags[schema.PARENT_RUN_TAG] = parent_run_id
    run_id = client.create_run(experiment_id, tags=tags, run_name=name).info.run_id
    params = {
        "upsampler": upsampler, "blocks": blocks, "filters": filters, "scale": scale, "res_scale": 1.0,
        "dataset": "sample", "epochs": EPOCHS, "seed": seed, "learning_rate": 0.001,
        "params_count": 1000 * blocks + filters, "macs_per_lr_pixel": 900 * blocks,
        **(extra_params or {}),
    }
    metrics = []
    for epoch in range(1, EPOCHS + 1):
        per_epoch = {"train_loss": 10.0 / epoch, "val_psnr": val_psnr - (EPOCHS - epoch), "val_ssim": 0.9 - 0.01 * (EPOCHS - epoch),
                     "val_psnr_rgb": val_psnr - 1.5, "step_time_ms": 5.0 * blocks + epoch, "patches_per_s": 100.0, "learning_rate": 1e-3}
        metrics += [(k, v, epoch) for k, v in per_epoch.items()]
    final = {"train_time_s": train_time_s, "best_val_psnr": val_psnr, "bicubic_val_psnr": 28.0, "bicubic_val_ssim": 0.8,
             "val_psnr_gain": val_psnr - 28.0, "epochs_completed": EPOCHS, **(extra_metrics or {})}
    metrics += [(k, v, 0) for k, v in final.items()]
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), 0, step) for k, v, step in metrics if k not in drop],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    if sample is not None:
        client.log_artifact(run_id, str(sample), artifact_path="samples")
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def study(tmp_path_factory, migrated_store):
    """A store with experiments 'study' (known numbers, excluded runs, one evaluated config,
    samples for one config), 'sweep' (a parent with two children and an outsider), 'empty'."""
    import mlflow
    from PIL import Image

    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        copy_migrated_store(migrated_store, folder / "mlflow.db")
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(name, raising=False)
        client = mlflow.MlflowClient()
        sample = folder / "baboon.png"
        Image.fromarray(np.full((20, 60, 3), 128, dtype=np.uint8)).save(sample)
        ids = {}
        study_id = client.create_experiment("study")
        # subpixel b1: three seeds, val PSNR 30/31/32 (mean 31, std 1), time 10/20/30 (mean 20, std 10)
        for seed, psnr, seconds in ((1, 30.0, 10.0), (2, 31.0, 20.0), (3, 32.0, 30.0)):
            evaluated = {"eval_set5_psnr": psnr + 1, "eval_set5_gain": 2.0 + seed, "eval_set5_bicubic_psnr": 29.0, "eval_set5_ms_per_mp": 100.0 * seed}
            ids[f"subpixel_b1_s{seed}"] = log_training_run(
                client, study_id, upsampler="subpixel", blocks=1, seed=seed, val_psnr=psnr, train_time_s=seconds,
                extra_metrics=evaluated if seed < 3 else None, sample=sample,
            )
        log_training_run(client, study_id, upsampler="subpixel", blocks=1, filters=16, seed=1, val_psnr=33.0, train_time_s=40.0)
        for seed in (1, 2):
            log_training_run(client, study_id, upsampler="subpixel", blocks=2, seed=seed, val_psnr=33.0 + seed, train_time_s=50.0)
            log_training_run(client, study_id, upsampler="transpose", blocks=1, seed=seed, val_psnr=29.0, train_time_s=5.0)
            log_training_run(client, study_id, upsampler="transpose", blocks=2, seed=seed, val_psnr=30.0, train_time_s=15.0,
                             extra_params={"learning_rate": 0.001 * seed})
        ids["failed"] = log_training_run(client, study_id, upsampler="transpose", blocks=2, seed=9, val_psnr=99.0, train_time_s=1.0, status="FAILED")
        ids["running"] = log_training_run(client, study_id, upsampler="transpose", blocks=2, seed=8, val_psnr=99.0, train_time_s=1.0, status="RUNNING")
        ids["no_ssim"] = log_training_run(client, study_id, upsampler="transpose", blocks=2, seed=7, val_psnr=99.0, train_time_s=1.0, drop=("val_ssim", "train_time_s"))

        sweep_id = client.create_experiment("sweep")
        parent = client.create_run(sweep_id, tags={schema.KIND_TAG: "sweep"}, run_name="sweep").info.run_id
        client.set_terminated(parent, "FINISHED")
        ids["parent"] = parent
        for seed in (1, 2):
            log_training_run(client, sweep_id, upsampler="nearest", blocks=1, seed=seed, val_psnr=28.5 + seed, train_time_s=3.0, parent_run_id=parent)
        log_training_run(client, sweep_id, upsampler="bilinear", blocks=1, seed=1, val_psnr=20.0, train_time_s=3.0)
        client.create_experiment("empty")

        # 'budgets': one configuration trained with two budgets, and a model below bicubic (28 dB).
        budgets_id = client.create_experiment("budgets")
        for seed, psnr, seconds in ((1, 31.0, 10.0), (2, 32.0, 12.0)):
            log_training_run(client, budgets_id, upsampler="subpixel", blocks=1, seed=seed, val_psnr=psnr, train_time_s=seconds,
                             extra_params=SHORT_BUDGET)
        log_training_run(client, budgets_id, upsampler="subpixel", blocks=1, seed=1, val_psnr=34.0, train_time_s=100.0,
                         extra_params={**SHORT_BUDGET, "epochs": 30})
        log_training_run(client, budgets_id, upsampler="transpose", blocks=1, seed=1, val_psnr=27.0, train_time_s=8.0,
                         extra_params=SHORT_BUDGET)
        yield ids


SHORT_BUDGET = {"epochs": EPOCHS, "steps_per_epoch": 100, "patch_size": 24, "batch_size": 4, "time_budget_s": 0.0, "precision": "float32"}


def row(table, **keys) -> pd.Series:
    match = table.loc[np.logical_and.reduce([table[k] == v for k, v in keys.items()])]
    assert len(match) == 1, keys
    return match.iloc[0]


def test_aggregates_seeds_per_configuration_with_mean_std_and_count(study):
    runs = run_store.training_runs(run_store.comparison_scope("study", None))
    table, _ = findings.findings_table(runs)
    subpixel = row(table, scale=2, upsampler="subpixel", blocks=1, filters=8)
    assert subpixel["n"] == 3
    assert subpixel["val_psnr_mean"] == pytest.approx(31.0)
    assert subpixel["val_psnr_std"] == pytest.approx(1.0)
    assert subpixel["val_psnr_gain_mean"] == pytest.approx(3.0)
    assert subpixel["val_ssim_mean"] == pytest.approx(0.9)
    assert subpixel["train_time_s_mean"] == pytest.approx(20.0)
    assert subpixel["train_time_s_std"] == pytest.approx(10.0)
    assert subpixel["step_time_ms_mean"] == pytest.approx(5.0 + EPOCHS)  # the latest epoch's value
    assert subpixel["params_count"] == 1008 and subpixel["macs_per_lr_pixel"] == 900
    # A second filter count is a row of its own; one run has no standard deviation.
    wide = row(table, upsampler="subpixel", blocks=1, filters=16)
    assert wide["n"] == 1 and wide["val_psnr_mean"] == 33.0 and math.isnan(wide["val_psnr_std"])
    assert list(table[["upsampler", "blocks", "filters"]].itertuples(index=False, name=None)) == [
        ("subpixel", 1, 8), ("subpixel", 1, 16), ("subpixel", 2, 8), ("transpose", 1, 8), ("transpose", 2, 8),
    ]
    # Params other than the seed that differ inside a row are named, not hidden.
    assert row(table, upsampler="transpose", blocks=2)["differing_params"] == "learning_rate"
    assert row(table, upsampler="transpose", blocks=1)["differing_params"] == ""


def test_benchmark_columns_appear_where_runs_were_evaluated(study):
    runs = run_store.training_runs(run_store.comparison_scope("study", None))
    table, _ = findings.findings_table(runs)
    for column in ("eval_set5_psnr_mean", "eval_set5_gain_mean", "eval_set5_ms_per_mp_mean", "eval_set5_n"):
        assert column in table, column
    assert not any("bicubic" in c for c in table.columns if c.startswith("eval_"))
    evaluated = row(table, upsampler="subpixel", blocks=1, filters=8)
    assert evaluated["eval_set5_n"] == 2  # two of its three seeds were evaluated
    assert evaluated["eval_set5_psnr_mean"] == pytest.approx(31.5)
    assert evaluated["eval_set5_gain_mean"] == pytest.approx(3.5)
    assert evaluated["eval_set5_ms_per_mp_mean"] == pytest.approx(150.0)
    assert math.isnan(row(table, upsampler="transpose", blocks=1)["eval_set5_psnr_mean"])

    sweep_runs = run_store.training_runs(run_store.comparison_scope("sweep", None))
    assert not any(c.startswith("eval_") for c in findings.findings_table(sweep_runs)[0].columns)


def test_unfinished_runs_and_runs_missing_metrics_are_excluded_with_a_reason(study):
    runs = run_store.training_runs(run_store.comparison_scope("study", None))
    table, excluded = findings.findings_table(runs)
    reasons = dict(zip(excluded["run_id"], excluded["reason"]))
    assert set(reasons) == {study["failed"], study["running"], study["no_ssim"]}
    assert reasons[study["failed"]] == "status FAILED"
    assert reasons[study["running"]] == "status RUNNING"
    assert reasons[study["no_ssim"]] == "missing metrics: val_ssim, train_time_s"
    assert table["n"].sum() + len(excluded) == len(runs)
    assert row(table, upsampler="transpose", blocks=2)["val_psnr_mean"] == pytest.approx(30.0)  # the 99 dB runs stayed out


def test_parent_run_id_restricts_the_comparison_to_its_children(study):
    scope = run_store.comparison_scope(None, study["parent"])
    assert scope.experiment_ids == (run_store.mlflow.get_experiment_by_name("sweep").experiment_id,)
    table, excluded = findings.findings_table(run_store.training_runs(scope))
    assert list(table["upsampler"]) == ["nearest"] and table["n"].tolist() == [2] and excluded.empty
    everything, _ = findings.findings_table(run_store.training_runs(run_store.comparison_scope("sweep", None)))
    assert sorted(everything["upsampler"]) == ["bilinear", "nearest"]
    with pytest.raises(Exception, match="not in 'study'"):
        run_store.comparison_scope("study", study["parent"])


def test_the_table_costs_one_query_and_no_per_run_request(study, monkeypatch):
    import mlflow

    calls = []
    real_search = mlflow.search_runs
    monkeypatch.setattr(mlflow, "search_runs", lambda *a, **k: calls.append(1) or real_search(*a, **k))
    for name in ("get_run", "get_metric_history", "list_artifacts"):
        monkeypatch.setattr(mlflow.MlflowClient, name, lambda *a, **k: pytest.fail("a per-run request"))
    findings.findings_table(run_store.training_runs(run_store.comparison_scope(None, None)))
    assert len(calls) == 1


def test_compare_command_exports_plots_and_logs_a_comparison_run(study, tmp_path):
    import mlflow

    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, ["compare", "--experiment", "study", "--parent-run-id", "", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "| x2 | subpixel | 1 | 8 | 3 |" in result.stdout
    # seeds 30, 31, 32 dB: mean 31, sd 1, 95 % t-interval half-width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321
    assert "31.00 ± 2.48" in result.stdout
    assert "excluded 3 run(s)" in result.stdout and study["failed"] in result.stdout and "status FAILED" in result.stdout
    assert "left out of the crop grid: edsr_x2_b1_f16_subpixel" in result.stdout

    names = {"findings.md", "findings.csv", "findings.html", "findings.tex", "findings.json", "excluded_runs.csv"}
    plot_names = {"psnr_vs_blocks.png", "val_psnr_per_epoch.png", "psnr_vs_training_time.png", "psnr_vs_macs.png", "sample_crops.png"}
    for name in names:
        assert (out / name).stat().st_size > 0, name
    for name in plot_names:
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not (out / "per_image").exists()  # asked for with --per-image True: a download per run and set
    records = json.loads((out / "findings.json").read_text())
    assert len(records) == 5 and records[0]["val_psnr_mean"] == pytest.approx(31.0)
    assert len(pd.read_csv(out / "findings.csv")) == 5
    assert set(pd.read_csv(out / "excluded_runs.csv")["run_id"]) == {study["failed"], study["running"], study["no_ssim"]}
    assert r"\pm" in (out / "findings.tex").read_text() and "<table" in (out / "findings.html").read_text()

    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name("study").experiment_id
    [comparison] = client.search_runs([experiment_id], f"tags.`{schema.KIND_TAG}` = 'comparison'")
    assert comparison.info.run_name == "comparison" and comparison.info.status == "FINISHED"
    assert comparison.data.params["compared_runs"] == "10" and comparison.data.params["excluded_runs"] == "3"
    logged = {f.path for f in client.list_artifacts(comparison.info.run_id)}
    assert names | {"plots"} <= logged
    assert {f.path for f in client.list_artifacts(comparison.info.run_id, "plots")} == {f"plots/{n}" for n in plot_names}
    # The comparison run is not a training run: comparing again does not count it.
    assert len(run_store.training_runs(run_store.comparison_scope("study", None))) == 13


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--experiment", "empty"], "no training runs in experiment 'empty'"),
        (["--experiment", "nope"], "experiment 'nope' does not exist"),
        (["--parent-run-id", "0123456789abcdef0123456789abcdef"], "run 0123456789abcdef0123456789abcdef is not in"),
        (["--parent-run-id", "x' or '1'='1"], "is not a run id"),
    ],
)
def test_compare_command_fails_in_one_line(study, tmp_path, arguments, message):
    result = CliRunner().invoke(cli.main, ["compare", *arguments, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_compare_command_fails_fast_on_an_unreachable_server(tmp_path, monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(cli.main, ["compare", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == TrackingError.exit_code
    assert result.stderr.count("\n") == 1 and f"cannot reach the MLflow tracking server at {uri}" in result.stderr


def test_pareto_front_keeps_points_no_other_point_beats_on_both_cost_and_quality():
    cost = [1.0, 2.0, 3.0, 4.0, 2.0, 5.0, np.nan, 0.5]
    quality = [10.0, 12.0, 11.0, 15.0, 12.0, 15.0, 99.0, 9.0]
    assert pareto_list(cost, quality) == [True, True, False, True, True, False, False, True]
    assert pareto_list([], []) == []
    assert pareto_list([3.0, 1.0], [5.0, 5.0]) == [False, True]


def pareto_list(cost, quality) -> list[bool]:
    return findings.pareto_front(cost, quality).tolist()


def test_pareto_column_is_computed_within_each_scale():
    table = pd.DataFrame({
        "scale": [2, 2, 4, 4], "macs_per_lr_pixel": [10.0, 20.0, 30.0, 40.0], "val_psnr_mean": [33.0, 32.0, 27.0, 28.0],
    })
    assert findings.pareto_by_scale(table).tolist() == [True, False, True, True]


def test_mean_std_text_shows_what_there_is():
    assert findings.mean_std_text(31.0, 1.0, 2) == "31.00 ± 1.00"
    assert findings.mean_std_text(31.0, float("nan"), 2) == "31.00"
    assert findings.mean_std_text(float("nan"), float("nan"), 2) == ""


# ---------------------------------------------------------------- budgets, bicubic, Pareto, error bars (issue 11)


def test_budget_label_names_what_sets_the_amount_of_training():
    assert findings.budget_label(10, 1000, 48, 16) == "10x1000 steps, 48 px, batch 16"
    assert findings.budget_label(10, 1000, 48, 16, time_budget_s=600.0) == "10x1000 steps, 48 px, batch 16, 600 s limit"
    assert findings.budget_label(10, 1000, 48, 16, time_budget_s=0.0, precision="mixed_bfloat16") == "10x1000 steps, 48 px, batch 16, mixed_bfloat16"
    assert findings.budget_label(3, float("nan"), None, None) == "3 epochs"
    assert findings.budget_label() == "unknown budget"
    runs = pd.DataFrame({
        "param:epochs": ["10", "10.0", "20"], "param:steps_per_epoch": ["100"] * 3, "param:patch_size": ["24"] * 3,
        "param:batch_size": ["4"] * 3, "param:time_budget_s": ["0", "0.0", "0"], "param:precision": ["float32"] * 3,
    })
    # Spellings of one number are one budget; the precision is named only where it differs.
    assert findings.budget_labels(runs).tolist() == ["10x100 steps, 24 px, batch 4"] * 2 + ["20x100 steps, 24 px, batch 4"]
    mixed = runs.assign(**{"param:precision": ["float32", "float32", "mixed_bfloat16"]})
    assert findings.budget_labels(mixed).tolist()[1:] == ["10x100 steps, 24 px, batch 4, float32", "20x100 steps, 24 px, batch 4, mixed_bfloat16"]


def test_runs_of_one_configuration_with_different_budgets_are_never_pooled(study):
    table, _ = findings.findings_table(run_store.training_runs(run_store.comparison_scope("budgets", None)))
    short, long = "3x100 steps, 24 px, batch 4", "30x100 steps, 24 px, batch 4"
    assert list(table[["upsampler", "budget", "n"]].itertuples(index=False, name=None)) == [
        ("subpixel", short, 2), ("subpixel", long, 1), ("transpose", short, 1),
    ]
    assert row(table, upsampler="subpixel", budget=short)["val_psnr_mean"] == pytest.approx(31.5)  # not (31 + 32 + 34) / 3
    assert row(table, upsampler="subpixel", budget=long)["val_psnr_mean"] == pytest.approx(34.0)
    assert table["differing_params"].tolist() == ["", "", ""]
    # The curve and sample of each row come from a run of that row's budget.
    curves = findings.representative_runs(findings.split_runs(findings.tidy_runs(
        run_store.training_runs(run_store.comparison_scope("budgets", None))))[0])
    assert curves["label"].tolist() == [f"edsr_x2_b1_f8_subpixel ({short})", f"edsr_x2_b1_f8_subpixel ({long})",
                                        f"edsr_x2_b1_f8_transpose ({short})"]


def test_one_budget_keeps_the_table_as_it_was(study):
    table, _ = findings.findings_table(run_store.training_runs(run_store.comparison_scope("study", None)))
    assert table["budget"].unique().tolist() == ["3 epochs"]
    shown = findings.display_table(table)
    assert list(shown.columns[:6]) == ["scale", "upsampler", "blocks", "filters", "runs", "params"]
    assert findings.table_notes(table) == []
    assert findings.markdown_table(shown, findings.table_notes(table)) == findings.markdown_table(shown)
    assert "†" not in findings.markdown_table(shown)


def test_compare_command_notes_what_the_table_alone_would_hide(study, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, ["compare", "--experiment", "budgets", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    notes = [
        "- rows were trained with different budgets: compare PSNR only between rows of the same budget",
        "- † below bicubic: under-trained (3x100 steps, 24 px, batch 4); train longer",
        "- Pareto (MACs): only among configurations of one scale and budget; 1 row(s) with no other to compare against left blank",
    ]
    markdown = (out / "findings.md").read_text()
    for text in (result.stdout, markdown):
        assert "| scale | upsampler | blocks | filters | budget | runs |" in text
        assert "| x2 | subpixel | 1 | 8 | 30x100 steps, 24 px, batch 4 | 1 |" in text
        assert "| -1.00 † |" in text  # transpose: 27 dB against bicubic's 28
        for note in notes:
            assert note in text, note
    lines = markdown.splitlines()
    assert lines[lines.index(notes[0]) - 1] == ""  # a list under the table, not a table row
    html = (out / "findings.html").read_text()
    assert "rows were trained with different budgets" in html and 'class="findings-notes"' in html
    latex = (out / "findings.tex").read_text()
    assert r"\multicolumn" in latex and r"-1.00 $^\dagger$" in latex and "under-trained" in latex
    csv = pd.read_csv(out / "findings.csv")
    pareto = dict(zip(csv["budget"] + " " + csv["upsampler"], csv["pareto"]))
    # The lone 30x100 row has nothing of its budget to be compared with: not on any front. The
    # transpose row costs the subpixel row's MACs (900 per LR pixel here) for a lower PSNR: off it.
    assert pareto == {"3x100 steps, 24 px, batch 4 subpixel": True, "30x100 steps, 24 px, batch 4 subpixel": False,
                      "3x100 steps, 24 px, batch 4 transpose": False}


def test_steps_to_gain_is_the_first_epoch_whose_validation_psnr_reaches_bicubic_plus_the_gain():
    usable = pd.DataFrame({
        "run_id": ["early", "late", "never", "no_curve", "no_steps"],
        "bicubic_val_psnr": [30.0, 30.0, 30.0, 30.0, 30.0],
        "param:steps_per_epoch": ["200", "200", "200", "200", None],
    })
    curves = {"early": [30.6, 31.2, 31.0], "late": [29.0, 30.4, 31.0], "never": [30.2, 30.4, 30.49], "no_steps": [31.0]}
    histories = pd.DataFrame(
        [(run, epoch, value) for run, values in curves.items() for epoch, value in enumerate(values, start=1)],
        columns=["run_id", "step", "value"],
    )
    half = findings.steps_to_gain(usable, histories, 0.5)
    # early: 30.6 >= 30.5 at epoch 1; late: 31.0 at epoch 3 (30.4 falls short); never: 30.49 < 30.5
    assert half[:3].tolist() == [200.0, 600.0, math.inf] and np.isnan(half[3:]).all()
    assert findings.steps_to_gain(usable, histories, 1.0)[:3].tolist() == [400.0, 600.0, math.inf]  # the first crossing, not the best epoch
    with_steps = findings.with_steps_to_gain(usable, histories, (1.0, 0.5))
    assert findings.steps_to_gain_columns(with_steps.columns) == ["steps_to_gain_0.5db", "steps_to_gain_1db"]


def test_steps_to_gain_columns_from_the_runs_validation_curves(study):
    usable, _ = findings.split_runs(findings.tidy_runs(run_store.training_runs(run_store.comparison_scope("budgets", None))))
    histories = run_store.metric_histories(list(usable["run_id"]), "val_psnr")
    table = findings.aggregate(findings.with_steps_to_gain(usable, histories, (0.5, 1.0)))
    markdown = findings.markdown_table(findings.display_table(table), findings.table_notes(table))
    # Curves (val PSNR - 2, - 1, val PSNR) against bicubic's 28 dB, 100 steps an epoch: subpixel
    # seeds 29 and 30 dB at epoch 1 (both +1 dB: 100 steps); transpose never above 27.
    assert "| steps to +0.5 dB | steps to +1 dB |" in markdown
    assert "| 100 ± 0 | 100 ± 0 |" in markdown and "| not reached | not reached |" in markdown
    assert ("- steps to +0.5 dB, steps to +1 dB: training steps until the validation PSNR first reached bicubic's + that gain "
            "(to one epoch); not reached: not by every seed within its budget") in markdown
    # Without thresholds (no grid asking for them): no such column, no note.
    plain = findings.aggregate(findings.with_steps_to_gain(usable, histories, ()))
    assert not findings.steps_to_gain_columns(plain.columns) and "steps to" not in "".join(findings.table_notes(plain))


def test_steps_to_gain_cells_give_the_mean_over_seeds_or_say_a_seed_never_got_there():
    assert findings.mean_std_text(1400.0, 254.1, findings._decimals("steps_to_gain_1db")) == "1,400 ± 254"
    assert findings.mean_std_text(math.inf, math.nan, 0) == "not reached"
    assert findings._header("steps_to_gain_0.5db") == "steps to +0.5 dB"


def per_image_scores(psnr: dict[str, float], bicubic: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"image": list(psnr), "psnr": list(psnr.values()), "bicubic_psnr": [bicubic[i] for i in psnr]})


def test_per_image_table_holds_each_configurations_mean_over_seeds_image_by_image():
    usable = tidy_rows([
        {"run_id": "a1", "upsampler": "subpixel", "blocks": 2, "seed": 1, "val_psnr": 30.0},
        {"run_id": "a2", "upsampler": "subpixel", "blocks": 2, "seed": 2, "val_psnr": 30.0},
        {"run_id": "b1", "upsampler": "nearest", "blocks": 2, "seed": 1, "val_psnr": 30.0},
        {"run_id": "c1", "upsampler": "bilinear", "blocks": 2, "seed": 1, "val_psnr": 30.0},  # no table: left out
    ])
    bicubic = {"img10.png": 25.0, "img2.png": 30.0}
    tables = {
        "a1": per_image_scores({"img2.png": 31.0, "img10.png": 26.0}, bicubic),
        "a2": per_image_scores({"img2.png": 32.0, "img10.png": 24.0}, bicubic),
        "b1": per_image_scores({"img2.png": 29.0, "img10.png": 26.5}, bicubic),
    }
    table = findings.per_image_table(usable, tables)
    assert table.columns.tolist() == ["image", "bicubic", "edsr_x2_b2_f8_nearest", "edsr_x2_b2_f8_subpixel", "best"]
    assert table["image"].tolist() == ["img2.png", "img10.png", "mean"]  # natural order, then the mean row
    assert table["edsr_x2_b2_f8_subpixel"].tolist() == [31.5, 25.0, 28.25]
    assert table["edsr_x2_b2_f8_nearest"].tolist() == [29.0, 26.5, 27.75]
    assert table["best"].tolist() == ["edsr_x2_b2_f8_subpixel", "edsr_x2_b2_f8_nearest", "edsr_x2_b2_f8_subpixel"]
    markdown = findings.per_image_markdown(table, "set5 x2")
    assert "| img10.png | 25.00 | **26.50** | 25.00 |" in markdown and markdown.startswith("## set5 x2\n")
    # A model below bicubic everywhere: bicubic is the best of the row.
    worse = findings.per_image_table(usable, {"b1": per_image_scores({"img2.png": 29.0}, {"img2.png": 30.0})})
    assert worse["best"].tolist() == ["bicubic", "bicubic"]


def test_compare_writes_per_image_tables_from_the_runs_eval_tables(study, tmp_path):
    import mlflow

    client = mlflow.MlflowClient()
    for seed, shift in ((1, 0.0), (2, 1.0)):  # the two set5-evaluated runs of edsr_x2_b1_f8_subpixel
        path = tmp_path / f"seed{seed}" / "set5_x2.csv"
        path.parent.mkdir()
        per_image_scores({"baby.png": 33.0 + shift, "bird.png": 34.0 + shift}, {"baby.png": 32.0, "bird.png": 33.0}).to_csv(path, index=False)
        client.log_artifact(study[f"subpixel_b1_s{seed}"], str(path), artifact_path="eval")
    usable, _ = findings.split_runs(findings.tidy_runs(run_store.training_runs(run_store.comparison_scope("study", None))))
    from edsr_mlflow.comparison import write_per_image_tables

    [csv, markdown] = write_per_image_tables(usable, tmp_path / "per_image")
    assert csv.name == "set5_x2.csv" and markdown.name == "set5_x2.md"
    table = pd.read_csv(csv)
    assert table.columns.tolist() == ["image", "bicubic", "edsr_x2_b1_f8_subpixel", "best"]
    assert table["edsr_x2_b1_f8_subpixel"].tolist() == [33.5, 34.5, 34.0]


def pareto_table(scale, cost, quality, budget=None) -> pd.DataFrame:
    table = pd.DataFrame({"scale": scale, "macs_per_lr_pixel": cost, "val_psnr_mean": quality})
    return table if budget is None else table.assign(budget=budget)


def test_pareto_needs_another_configuration_of_the_same_scale_and_budget():
    # One row per scale: nothing to be on a front against.
    assert findings.pareto_by_scale(pareto_table([2, 4], [10.0, 10.0], [30.0, 30.0])).tolist() == [False, False]
    # Two rows of one scale but different budgets: not compared either.
    assert findings.pareto_by_scale(pareto_table([2, 2], [10.0, 20.0], [30.0, 31.0], ["a", "b"])).tolist() == [False, False]
    assert findings.pareto_by_scale(pareto_table([2, 2], [10.0, 20.0], [30.0, 31.0], ["a", "a"])).tolist() == [True, True]
    # A row without MACs is never on the front, nor makes another row comparable.
    assert findings.pareto_by_scale(pareto_table([2, 2], [10.0, np.nan], [30.0, 35.0])).tolist() == [False, False]
    assert findings.pareto_by_scale(pareto_table([2, 2, 2], [10.0, 20.0, np.nan], [30.0, 31.0, 35.0])).tolist() == [True, True, False]
    assert findings.pareto_by_scale(pareto_table([], [], [])).tolist() == []


def tidy_rows(rows: list[dict]) -> pd.DataFrame:
    """Runs as findings.split_runs returns them: config keys, seed, required metrics, budget params."""
    return pd.DataFrame([{
        "run_id": f"r{i}", "scale": 2, "filters": 8, "seed": 1, "params_count": 1000, "macs_per_lr_pixel": 900,
        "val_ssim": 0.9, "step_time_ms": 5.0, "val_psnr_gain": r["val_psnr"] - 28.0, "param:epochs": "3", **r,
    } for i, r in enumerate(rows)])


def test_no_pareto_front_leaves_the_column_blank_and_says_why():
    usable = tidy_rows([{"scale": 2, "upsampler": "subpixel", "blocks": 1, "val_psnr": 30.0, "train_time_s": 10.0},
                        {"scale": 4, "upsampler": "subpixel", "blocks": 1, "val_psnr": 26.0, "val_psnr_gain": 0.5, "train_time_s": 10.0}])
    table = findings.aggregate(usable)
    assert not table["pareto"].any()
    assert findings.display_table(table)["Pareto (MACs)"].tolist() == ["", ""]
    assert findings.table_notes(table) == ["no Pareto front: one configuration per scale and budget"]
    uncosted = table.assign(macs_per_lr_pixel=[np.nan, 900.0])
    assert findings.table_notes(uncosted) == ["no Pareto front: fewer than two configurations with MACs per LR pixel per scale and budget"]


def test_a_model_below_bicubic_is_marked_with_its_budget():
    usable = tidy_rows([{"upsampler": "subpixel", "blocks": 1, "val_psnr": 24.63, "train_time_s": 10.0, "param:steps_per_epoch": "5"},
                        {"upsampler": "subpixel", "blocks": 2, "val_psnr": 30.0, "train_time_s": 20.0, "param:steps_per_epoch": "5"}])
    table = findings.aggregate(usable)
    assert findings.below_bicubic(table).tolist() == [True, False]
    assert findings.display_table(table)["gain (dB)"].tolist() == ["-3.37 †", "2.00"]
    assert findings.table_notes(table) == ["† below bicubic: under-trained (3x5 steps); train longer"]
    # A benchmark's gain below 0 dB marks the row too.
    evaluated = table.assign(val_psnr_gain_mean=[1.0, 2.0], eval_set5_gain_mean=[0.5, -0.2], eval_set5_gain_ci95=np.nan)
    assert findings.below_bicubic(evaluated).tolist() == [False, True]
    assert findings.display_table(evaluated)["set5 gain (dB)"].tolist() == ["0.50", "-0.20 †"]


def test_train_says_a_model_below_bicubic_is_under_trained():
    below = cli.trained_line("abc", "edsr_x2_b1_f8_subpixel", 24.63, -3.37, 12.0)
    assert below == "run abc (edsr_x2_b1_f8_subpixel): val PSNR 24.63 dB, -3.37 dB over bicubic (below bicubic: under-trained, train longer), 12 s of training"
    assert "under-trained" not in cli.trained_line("abc", "edsr_x2_b1_f8_subpixel", 30.0, 2.0, 12.0)


def plot_table(n: list[int], pareto: list[bool] | None = None) -> pd.DataFrame:
    return pd.DataFrame({
        "scale": 2, "upsampler": ["subpixel", "subpixel"], "blocks": [1, 2], "filters": 8, "n": n,
        "val_psnr_mean": [30.0, 31.0], "val_psnr_std": [np.nan if k < 2 else 0.5 for k in n],
        "train_time_s_mean": [10.0, 20.0], "train_time_s_std": [np.nan if k < 2 else 1.0 for k in n],
        "macs_per_lr_pixel": [900.0, 1800.0], "train_step_ms_measured": [50.0, 80.0],
        "pareto": pareto or [False, False], "pareto_measured": pareto or [False, False],
    })


def error_bars(figure) -> int:
    from matplotlib.container import ErrorbarContainer

    return sum(isinstance(c, ErrorbarContainer) for ax in figure.axes for c in ax.containers)


@pytest.mark.parametrize("draw", [plots.psnr_vs_blocks, plots.psnr_vs_training_time, plots.psnr_vs_macs, plots.psnr_vs_throughput])
def test_error_bars_are_drawn_and_claimed_only_with_two_seeds(draw):
    single = draw(plot_table([1, 1]))
    assert "one seed per point, no error bars" in single.get_suptitle() and "std over seeds" not in single.get_suptitle()
    assert error_bars(single) == 0 and any(ax.lines for ax in single.axes)
    seeded = draw(plot_table([3, 3]))
    assert "error bars: std over seeds" in seeded.get_suptitle() and "no error bars" not in seeded.get_suptitle()
    assert error_bars(seeded) > 0
    assert "none where one seed" in draw(plot_table([3, 1])).get_suptitle()


@pytest.mark.parametrize("draw", [plots.psnr_vs_macs, plots.psnr_vs_throughput])
def test_psnr_vs_cost_claims_a_front_only_where_there_is_one(draw):
    none = draw(plot_table([1, 1]))
    assert "no Pareto front" in none.get_suptitle() and "ringed" not in none.get_suptitle()
    assert not any("Pareto" in str(line.get_label()) for ax in none.axes for line in ax.lines)
    front = draw(plot_table([1, 1], pareto=[True, True]))
    assert "ringed: Pareto front" in front.get_suptitle()
    assert any(line.get_label() == "Pareto front" for ax in front.axes for line in ax.lines)


def test_psnr_vs_training_time_draws_no_front_against_wall_time():
    figure = plots.psnr_vs_training_time(plot_table([1, 1], pareto=[True, True]))
    assert "Pareto" not in figure.get_suptitle()
    assert not any("Pareto" in str(line.get_label()) for ax in figure.axes for line in ax.lines)
    assert [ax.get_xlabel() for ax in figure.axes] == ["training time (s)"]
    assert [ax.get_xlabel() for ax in plots.psnr_vs_macs(plot_table([1, 1])).axes] == ["multiply-accumulates per LR pixel"]


# ---------------------------------------------------------------- cost: MACs and measured throughput (issue 9)


def test_the_pareto_column_is_against_macs_not_training_time():
    # b1: fewer MACs, slower to train (a loaded machine); b2: more MACs, faster, better.
    usable = tidy_rows([{"upsampler": "subpixel", "blocks": 1, "val_psnr": 30.0, "train_time_s": 100.0, "macs_per_lr_pixel": 900},
                        {"upsampler": "subpixel", "blocks": 2, "val_psnr": 31.0, "train_time_s": 10.0, "macs_per_lr_pixel": 1800},
                        {"upsampler": "transpose", "blocks": 1, "val_psnr": 29.0, "train_time_s": 5.0, "macs_per_lr_pixel": 900}])
    table = findings.aggregate(usable)
    assert table["pareto"].tolist() == [True, True, False]  # transpose: the MACs of subpixel b1, a lower PSNR
    assert findings.pareto_by_scale(table, cost="train_time_s_mean").tolist() == [False, True, True]
    assert findings.display_table(table)["Pareto (MACs)"].tolist() == ["yes", "yes", ""]
    assert findings.table_notes(table) == []


def write_throughput(path, rows: dict[str, tuple[float, float]]):
    """A throughput file as benchmarks/grid_throughput.py writes it: label -> (step ms, inference ms/MP)."""
    frame = pd.DataFrame([{"label": label, "scale": 2, "upsampler": "", "blocks": 1, "filters": 8, "params": 1, "macs_per_lr_pixel": 1,
                           "train_step_ms": step, "train_patches_per_s": 16000 / step, "infer_ms_per_mp": infer, "rounds": 5}
                          for label, (step, infer) in rows.items()], columns=list(findings.THROUGHPUT_COLUMNS))
    frame.to_csv(path, index=False)
    return path


def test_measured_throughput_joins_the_table_by_configuration_and_leaves_the_rest_blank(tmp_path):
    usable = tidy_rows([{"upsampler": "subpixel", "blocks": 1, "val_psnr": 30.0, "train_time_s": 10.0, "macs_per_lr_pixel": 900},
                        {"upsampler": "subpixel", "blocks": 2, "val_psnr": 31.0, "train_time_s": 20.0, "macs_per_lr_pixel": 1800},
                        {"upsampler": "transpose", "blocks": 1, "val_psnr": 29.0, "train_time_s": 5.0, "macs_per_lr_pixel": 300}])
    path = write_throughput(tmp_path / "throughput.csv", {"edsr_x2_b1_f8_subpixel": (120.0, 900.0), "edsr_x2_b2_f8_subpixel": (100.0, 1500.0),
                                                          "edsr_x4_b8_f32_nearest": (1.0, 1.0)})  # a configuration not in the table: ignored
    table = findings.with_throughput(findings.aggregate(usable), findings.read_throughput(path))
    assert table["train_step_ms_measured"].tolist()[:2] == [120.0, 100.0] and np.isnan(table["train_step_ms_measured"][2])
    assert table["infer_ms_per_mp_measured"].tolist()[:2] == [900.0, 1500.0] and np.isnan(table["infer_ms_per_mp_measured"][2])
    # Measured, b2 is faster per step and better: b1 is off that front; the unmeasured row is never on it.
    assert table["pareto_measured"].tolist() == [False, True, False]
    assert table["pareto"].tolist() == [True, True, True]
    shown = findings.display_table(table)
    assert shown["step, measured (ms)"].tolist() == ["120.0", "100.0", ""]
    assert shown["inference, measured (ms/MP)"].tolist() == ["900.0", "1,500.0", ""]
    assert list(shown.columns[-2:]) == ["Pareto (MACs)", "Pareto (measured)"]
    assert shown["Pareto (measured)"].tolist() == ["", "yes", ""]
    [note] = findings.table_notes(table)
    assert note.startswith("Pareto (measured): against the training step time measured") and note.endswith("1 row(s) not in the throughput file left blank")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "is not a readable CSV"),
        ("label,train_step_ms\nedsr_x2_b1_f8_subpixel,10\n", "lacks column(s) infer_ms_per_mp"),
        ("label,train_step_ms,infer_ms_per_mp\nedsr_x2_b1_f8_subpixel,fast,10\n", "row(s) edsr_x2_b1_f8_subpixel need a label and positive numbers"),
        ("label,train_step_ms,infer_ms_per_mp\na,1,1\na,2,2\n", "names a more than once"),
        (b"\xff\xfe\x00garbage", "is not a readable CSV"),
    ],
)
def test_a_missing_or_malformed_throughput_file_is_one_line_error(tmp_path, content, message):
    from edsr_mlflow.errors import ConfigError

    path = tmp_path / "throughput.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        findings.read_throughput(path)
    assert "\n" not in str(error.value) and str(error.value).startswith(f"throughput file {path}")


def test_compare_command_with_a_throughput_file(study, tmp_path):
    import mlflow

    out = tmp_path / "out"
    path = write_throughput(tmp_path / "measured.csv", {"edsr_x2_b1_f8_nearest": (80.0, 700.0), "edsr_x2_b1_f8_bilinear": (60.0, 650.0)})
    path.with_suffix(".json").write_text('{"cpu_model": "test"}\n')
    result = CliRunner().invoke(cli.main, ["compare", "--experiment", "sweep", "--output-dir", str(out), "--throughput", str(path)])
    assert result.exit_code == 0, result.output
    assert "| Pareto (MACs) | Pareto (measured) |" in result.stdout and "| 80.0 | 700.0 |" in result.stdout
    csv = pd.read_csv(out / "findings.csv")
    assert dict(zip(csv["upsampler"], csv["train_step_ms_measured"])) == {"bilinear": 60.0, "nearest": 80.0}
    # bilinear (20 dB) is faster, nearest (29.5 dB mean) better: both on the measured front.
    assert csv["pareto_measured"].tolist() == [True, True]
    assert (out / "plots" / "psnr_vs_throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "throughput.csv").read_text() == path.read_text() and (out / "throughput.json").is_file()
    [comparison] = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("sweep").experiment_id],
                                                     f"tags.`{schema.KIND_TAG}` = 'comparison'")
    assert comparison.data.params["throughput"] == str(path)
    logged = {f.path for f in mlflow.MlflowClient().list_artifacts(comparison.info.run_id)}
    assert {"throughput.csv", "throughput.json"} <= logged


def test_compare_command_refuses_a_malformed_throughput_file_in_one_line(study, tmp_path):
    path = tmp_path / "throughput.csv"
    path.write_text("label,steps\nx,1\n")
    result = CliRunner().invoke(cli.main, ["compare", "--experiment", "sweep", "--output-dir", str(tmp_path / "out"), "--throughput", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: throughput file {path} lacks column(s) train_step_ms, infer_ms_per_mp")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # refused before any query or file
