"""Runs `mlflow run` left RUNNING before the project started (no conda, say): `compare` names
them, `runs clean --stale` closes exactly those, saying which, and touches nothing else."""

from __future__ import annotations

import time

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.entities import Metric

from edsr_mlflow import cli, schema, stale_runs

HOUR_MS = 3600 * 1000
PROJECT_TAGS = {"mlflow.source.type": "PROJECT", "mlflow.project.entryPoint": "main", "mlflow.project.env": "conda"}


def make_run(client, experiment_id, name, *, tags, age_hours=2.0, metric=False, status="RUNNING"):
    """A run as `mlflow run` leaves it when conda is missing: the entry point's params, no metric."""
    start_ms = int(time.time() * 1000 - age_hours * HOUR_MS)
    run_id = client.create_run(experiment_id, start_time=start_ms, tags=tags, run_name=name).info.run_id
    client.log_param(run_id, "blocks", "8")
    if metric:
        client.log_batch(run_id, metrics=[Metric("train_loss", 1.0, start_ms, 1)])
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


@pytest.fixture
def store_with_stale_run(tracking_store):
    client = mlflow.MlflowClient()
    default = "0"
    edsr = client.create_experiment("edsr")
    ids = {
        "stale": make_run(client, default, "polite-sheep-460", tags=PROJECT_TAGS),
        "young": make_run(client, default, "young", tags=PROJECT_TAGS, age_hours=0.1),
        "started": make_run(client, edsr, "edsr_x2_b8_f64_transpose", tags={**PROJECT_TAGS, schema.KIND_TAG: schema.TRAIN}),
        "with_metric": make_run(client, default, "measured", tags=PROJECT_TAGS, metric=True),
        "notebook": make_run(client, default, "notebook", tags={}),
        "finished": make_run(client, default, "done", tags=PROJECT_TAGS, status="FINISHED"),
    }
    return client, ids


@pytest.mark.parametrize(
    ("change", "stale"),
    [
        ({}, True),
        ({"status": "FAILED"}, False),
        ({"tags": {"mlflow.source.type": "NOTEBOOK", "mlflow.project.entryPoint": "main"}}, False),
        ({"tags": {"mlflow.source.type": "PROJECT", "mlflow.project.entryPoint": "someone_elses"}}, False),
        ({"tags": {**PROJECT_TAGS, schema.KIND_TAG: schema.SWEEP}}, False),
        ({"metrics": {"val_psnr": 30.0}}, False),
        ({"age_s": 59 * 60}, False),
    ],
)
def test_is_stale_only_for_a_project_run_that_never_started(change, stale):
    run = {"status": "RUNNING", "tags": PROJECT_TAGS, "metrics": {}, "age_s": 61 * 60, **change}
    assert stale_runs.is_stale(**run, min_age_s=60 * 60) is stale


def test_runs_clean_stale_closes_exactly_the_stale_run_and_names_it(store_with_stale_run):
    client, ids = store_with_stale_run
    dry = CliRunner().invoke(cli.main, ["runs", "clean", "--stale", "--dry-run"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert f"would close polite-sheep-460 (run {ids['stale']}, experiment 'Default', entry point main, 2.0 h old)" in dry.output
    assert client.get_run(ids["stale"]).info.status == "RUNNING"

    result = CliRunner().invoke(cli.main, ["runs", "clean", "--stale"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"closed polite-sheep-460 (run {ids['stale']}" in result.output and "closed 1 stale run(s)" in result.output
    closed = client.get_run(ids["stale"])
    assert closed.info.status == "FAILED" and closed.info.end_time is not None
    assert "runs clean --stale" in closed.data.tags[schema.CLOSED_STALE_TAG]
    assert closed.data.params == {"blocks": "8"}  # nothing else of it changed
    for name in ("young", "started", "with_metric", "notebook"):
        assert client.get_run(ids[name]).info.status == "RUNNING", name
    assert client.get_run(ids["finished"]).info.status == "FINISHED"

    again = CliRunner().invoke(cli.main, ["runs", "clean", "--stale"], catch_exceptions=False)
    assert again.exit_code == 0 and again.output.startswith("no stale runs in "), again.output


def test_runs_clean_without_what_to_clean_is_one_line(store_with_stale_run):
    client, ids = store_with_stale_run
    result = CliRunner().invoke(cli.main, ["runs", "clean"])
    assert result.exit_code == 2 and result.output.strip().startswith("error: say what to clean: --stale"), result.output
    assert client.get_run(ids["stale"]).info.status == "RUNNING"


def test_compare_names_stale_runs_and_the_command_that_closes_them(store_with_stale_run, tmp_path):
    client, ids = store_with_stale_run
    experiment_id = client.get_experiment_by_name("edsr").experiment_id
    run_id = client.create_run(experiment_id, tags={schema.KIND_TAG: schema.TRAIN}, run_name="edsr_x2_b1_f8_subpixel").info.run_id
    client.log_batch(run_id, metrics=[Metric(name, 1.0, 0, 1) for name in ("val_psnr", "val_psnr_gain", "val_ssim", "train_time_s", "step_time_ms")])
    for name, value in {"scale": "2", "upsampler": "subpixel", "blocks": "1", "filters": "8"}.items():
        client.log_param(run_id, name, value)
    client.set_terminated(run_id, "FINISHED")
    result = CliRunner().invoke(cli.main, ["compare", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "polite-sheep-460 (Default, 2.0 h old)" in result.output, result.output
    assert "close them with: edsr-mlflow runs clean --stale" in result.output
    assert client.get_run(ids["stale"]).info.status == "RUNNING"  # compare only reports


def test_compare_with_nothing_to_compare_points_at_the_stale_runs(store_with_stale_run, tmp_path):
    """A newcomer whose `mlflow run .` failed for want of conda has only the stale run."""
    result = CliRunner().invoke(cli.main, ["compare", "--output-dir", str(tmp_path / "out")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 3 and len(lines) == 1 and lines[0].startswith("error: ") and "training runs" in lines[0], result.output
    assert "1 run(s) that `mlflow run` made are still RUNNING" in lines[0] and "edsr-mlflow runs clean --stale" in lines[0]
