"""Where runs land, whichever the launcher: the named default experiment marked as model training
(so MLflow 3's UI is not in GenAI mode for it), MLflow's own experiment choices, and one sweep
that `edsr-mlflow sweep` and `mlflow run -e sweep` both resume and compare whole (issue 11), and
the compare entry point of `mlflow run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from click.testing import CliRunner

from edsr_mlflow import cli, run_store, schema, tracking
from edsr_mlflow.config import TrainConfig
from edsr_mlflow.errors import TrackingError

from helpers import ROOT, all_runs, cli_args


def experiment_of(run) -> mlflow.entities.Experiment:
    return mlflow.MlflowClient().get_experiment(run.info.experiment_id)


def kind_of(experiment) -> str | None:
    return experiment.tags.get(schema.EXPERIMENT_KIND_TAG)


def open_and_close_training_run(**kwargs):
    """A training run as `train` opens it, without the training (the experiment is chosen here)."""
    with tracking.training_run(TrainConfig(dataset="sample", blocks=1, filters=8), **kwargs) as run:
        return run.info.run_id


# ---------------------------------------------------------------- the default experiment (item 3)


@pytest.mark.slow
def test_train_logs_to_the_named_default_experiment_or_the_one_asked_for_both_marked_model_training(tracking_store, tiny_params):
    params = {**tiny_params, "epochs": 1, "steps_per_epoch": 1}
    first = CliRunner().invoke(cli.main, ["train", *cli_args(params)], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    (run,) = all_runs()
    default = experiment_of(run)
    assert default.name == schema.DEFAULT_EXPERIMENT == "edsr"
    assert kind_of(default) == schema.MODEL_TRAINING_KIND
    # The UI address it prints opens that experiment's runs in the UI's model-training view.
    assert f"http://127.0.0.1:5000/#/experiments/{default.experiment_id}/runs?workflowType=machine_learning" in first.output

    second = CliRunner().invoke(cli.main, ["train", "--experiment=mine", *cli_args(params)], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    (mine,) = [r for r in all_runs() if r.info.run_id != run.info.run_id]
    assert experiment_of(mine).name == "mine" and kind_of(experiment_of(mine)) == schema.MODEL_TRAINING_KIND


@pytest.mark.parametrize("variable", ["MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"])
def test_mlflows_own_experiment_variables_still_choose_the_experiment(tracking_store, monkeypatch, variable):
    theirs = mlflow.MlflowClient().create_experiment("theirs")
    monkeypatch.setenv(variable, "theirs" if variable == "MLFLOW_EXPERIMENT_NAME" else theirs)
    run_id = open_and_close_training_run()
    experiment = experiment_of(mlflow.get_run(run_id))
    assert experiment.experiment_id == theirs and kind_of(experiment) == schema.MODEL_TRAINING_KIND
    assert mlflow.get_experiment_by_name(schema.DEFAULT_EXPERIMENT) is None  # no default made beside it


def test_the_run_mlflow_run_made_keeps_its_experiment_which_is_marked(tracking_store, monkeypatch):
    """`mlflow run` creates its run (here in "Default") and passes MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID."""
    made = mlflow.MlflowClient().create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", made)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    assert open_and_close_training_run() == made
    assert kind_of(mlflow.MlflowClient().get_experiment("0")) == schema.MODEL_TRAINING_KIND


def test_an_explicit_experiment_wins_over_mlflows_variables_and_a_kind_someone_chose_stays(tracking_store, monkeypatch):
    client = mlflow.MlflowClient()
    client.create_experiment("agents", tags={schema.EXPERIMENT_KIND_TAG: "genai_development"})
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "elsewhere")
    run = mlflow.get_run(open_and_close_training_run(experiment="agents"))
    assert experiment_of(run).name == "agents"
    assert kind_of(experiment_of(run)) == "genai_development"  # theirs, not changed


def test_a_sweeps_child_stays_in_its_parents_experiment(tracking_store, monkeypatch):
    client = mlflow.MlflowClient()
    grid_experiment = tracking.experiment_id_named("grid-experiment")
    parent = client.create_run(grid_experiment).info.run_id
    client.set_terminated(parent, "FINISHED")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "elsewhere")
    child = mlflow.get_run(open_and_close_training_run(parent_run_id=parent))
    assert child.info.experiment_id == grid_experiment
    assert child.data.tags[schema.PARENT_RUN_TAG] == parent


def test_the_bicubic_baseline_run_goes_to_the_default_experiment_too(tracking_store):
    with tracking.evaluation_run("bicubic_x2", {"upscaler": "bicubic"}, {"scale": 2}) as run:
        run_id = run.info.run_id
    experiment = experiment_of(mlflow.get_run(run_id))
    assert experiment.name == schema.DEFAULT_EXPERIMENT and kind_of(experiment) == schema.MODEL_TRAINING_KIND


def test_a_deleted_default_experiment_is_one_line_and_no_run(tracking_store):
    client = mlflow.MlflowClient()
    client.delete_experiment(client.create_experiment(schema.DEFAULT_EXPERIMENT))
    with pytest.raises(TrackingError, match=r"experiment 'edsr' is deleted .*\(mlflow experiments restore --experiment-id"):
        open_and_close_training_run()
    assert all_runs() == []


# ---------------------------------------------------------------- one sweep, whichever launcher (item 5)


def test_a_sweeps_comparison_covers_the_children_of_each_of_its_parents(tracking_store):
    """Launches through `mlflow run` before this fix each made a parent of their own."""
    client = mlflow.MlflowClient()
    experiment_id = tracking.experiment_id_named("swept")
    children = []
    for _ in range(2):
        parent = client.create_run(experiment_id, tags={schema.KIND_TAG: schema.SWEEP, schema.SWEEP_TAG: "s"}).info.run_id
        children.append(client.create_run(experiment_id, tags={schema.KIND_TAG: schema.TRAIN, schema.PARENT_RUN_TAG: parent}).info.run_id)
    client.create_run(experiment_id, tags={schema.KIND_TAG: schema.TRAIN})  # in the experiment, not in the sweep
    scope = run_store.comparison_scope("swept", None, sweep="s")
    assert len(scope.parent_run_ids) == 2
    assert sorted(run_store.training_runs(scope)["run_id"]) == sorted(children)
    with pytest.raises(TrackingError, match="no sweep 'other' in experiment 'swept'"):
        run_store.comparison_scope("swept", None, sweep="other")


def launch_with_mlflow_run(grid: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`mlflow run <repo> --env-manager local -e sweep -P grid=G`, as the README shows, with no
    --experiment-name: MLflow makes its run in "Default"."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local", "-e", "sweep",
               "-P", f"grid={grid}", "-P", "max_parallel=2", "-P", f"output_dir={cwd / 'out'}"]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    print(f"$ mlflow run ... -e sweep -P grid={grid.name}  (exit {done.returncode})\n{done.stdout}")
    return done


def runs_of_kind(kind: str, experiment: str = "launch-grid"):
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return [r for r in runs if r.data.tags.get(schema.KIND_TAG) == kind]


@pytest.mark.slow
def test_a_sweep_resumes_and_compares_whole_whichever_the_launcher(tracking_store, project_checkpoints_removed, tmp_path):
    grid = tmp_path / "two.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "two", "experiment": "launch-grid", "grid": {"upsampler": ["subpixel", "nearest"]},
        "fixed": {"dataset": "sample", "blocks": 1, "filters": 8, "patch_size": 16, "batch_size": 4,
                  "epochs": 1, "steps_per_epoch": 2, "precision": "float32"},
    }))
    # Made here only to keep its artifacts in tmp_path: created by the sweep, in the project
    # folder where `mlflow run` starts it, it would keep them in the project's mlruns/.
    mlflow.create_experiment("launch-grid", artifact_location=str(tmp_path / "mlruns" / "launch-grid"))
    first = launch_with_mlflow_run(grid, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 trained, 0 already finished, 0 failed" in first.stdout
    trained = runs_of_kind(schema.TRAIN)
    assert sorted(r.data.params["upsampler"] for r in trained if r.info.status == "FINISHED") == ["nearest", "subpixel"]
    (parent,) = runs_of_kind(schema.SWEEP)  # in the grid's experiment, not MLflow's "Default"
    assert {r.data.tags[schema.PARENT_RUN_TAG] for r in trained} == {parent.info.run_id}

    second = launch_with_mlflow_run(grid, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 trained, 2 already finished, 0 failed" in second.stdout
    table = (tmp_path / "out" / "comparison" / "two" / "findings.csv").read_text().splitlines()
    assert len(table) == 3  # header + both finished configurations
    assert [r.info.run_id for r in runs_of_kind(schema.TRAIN)] == [r.info.run_id for r in trained]  # nothing trained twice
    assert [r.info.run_id for r in runs_of_kind(schema.SWEEP)] == [parent.info.run_id]  # one parent

    # MLflow's own run of each launch (in "Default") is a record of it, pointing at the parent.
    launches = runs_of_kind(schema.SWEEP_LAUNCH, experiment="Default")
    assert len(launches) == 2
    assert {r.data.tags[schema.SWEEP_PARENT_TAG] for r in launches} == {parent.info.run_id}
    for name in ("Default", "launch-grid"):
        assert kind_of(mlflow.get_experiment_by_name(name)) == schema.MODEL_TRAINING_KIND

    third = CliRunner().invoke(cli.main, ["sweep", f"--grid={grid}", f"--output-dir={tmp_path / 'out'}"])
    print(f"$ edsr-mlflow sweep --grid {grid.name}  (exit {third.exit_code})\n{third.output}")
    assert third.exit_code == 0, third.output
    assert "0 trained, 2 already finished, 0 failed" in third.output
    assert len(runs_of_kind(schema.TRAIN)) == 2
    assert all(r.info.status != "RUNNING" for r in all_runs())

    # The compare entry point, as the README shows it.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    compared = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local", "-e", "compare",
                               "-P", "experiment=launch-grid", "-P", f"output_dir={tmp_path / 'table'}", "--experiment-name", "launch-grid"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert len((tmp_path / "table" / "findings.csv").read_text().splitlines()) == 3  # header + one row per upsampler
    assert all(r.info.status == "FINISHED" for r in all_runs())
