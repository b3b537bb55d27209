"""Where runs land, whichever the launcher: the named default experiment marked as model training
(so MLflow 3's UI is not in GenAI mode for it) and MLflow's own experiment choices (issue 11)."""

from __future__ import annotations

import mlflow
import pytest
from click.testing import CliRunner

from edsr_mlflow import cli, schema, tracking
from edsr_mlflow.config import TrainConfig
from edsr_mlflow.errors import TrackingError

from helpers import all_runs, cli_args


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
