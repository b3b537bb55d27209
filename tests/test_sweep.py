"""Sweeps: grid files, resumption, failure isolation, parallel children in a real store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import yaml
from click.testing import CliRunner

from edsr_mlflow import cli, schema
from edsr_mlflow import grid as grids
from edsr_mlflow.errors import ConfigError

from helpers import write_images


def write_grid(path: Path, **content) -> Path:
    path.write_text(yaml.safe_dump(content))
    return path


def test_grid_expands_to_every_combination(tmp_path):
    grid = write_grid(tmp_path / "g.yaml", name="g", grid={"blocks": [1, 2, 3], "upsampler": ["subpixel", "nearest"]}, fixed={"scale": 4})
    definition = grids.load_sweep(grid)
    assert len(definition.configs) == 6
    assert {(c.blocks, c.upsampler) for c in definition.configs} == {(b, u) for b in (1, 2, 3) for u in ("subpixel", "nearest")}
    assert all(c.scale == 4 for c in definition.configs)
    assert definition.name == "g" and definition.evaluate == ()


@pytest.mark.parametrize(
    "content, message",
    [
        ({"grid": {"blockz": [1]}}, "unknown training parameter"),
        ({"grid": {"blocks": [1]}, "fixed": {"blocks": 2}}, "both in fixed and in grid"),
        ({"grid": {"upsampler": ["pixelshuffle"]}}, "unknown upsampler"),
        ({"grid": {"blocks": []}}, "non-empty list"),
        ({"grid": {"blocks": [1]}, "evaluat": ["set5"]}, "unknown key"),
        ({"fixed": {"blocks": 1}}, "needs a 'grid:'"),
    ],
)
def test_bad_grid_files_are_rejected_before_any_run(tmp_path, content, message):
    with pytest.raises(ConfigError, match=message):
        grids.load_sweep(write_grid(tmp_path / "bad.yaml", **content))


def test_the_shipped_grids_are_valid():
    root = Path(__file__).resolve().parents[1] / "experiments"
    variants = ("subpixel", "subpixel_icnr", "transpose", "transpose_k6", "nearest", "bilinear")
    study = grids.load_sweep(root / "seed_study_x4.yaml")
    assert {(c.blocks, c.run_name.split("_f64_")[1], c.seed) for c in study.configs} == {
        (b, u, s) for b in (4, 8, 16) for u in variants for s in (1, 2, 3)
    }
    assert all(c.scale == 4 for c in study.configs) and len(study.comparisons) == 8
    assert len(grids.load_sweep(root / "cpu_study.yaml").configs) == 12
    cpu = grids.load_sweep(root / "cpu_study_v2.yaml")
    assert [c.seed for c in cpu.configs] == [1] * 12 + [2] * 12 + [3] * 12  # seed by seed
    assert {c.run_name.split("_f32_")[1] for c in cpu.configs} == set(variants)
    assert all(c.val_dataset == "" for c in cpu.configs)  # the hold-out, never a test set
    budget = grids.load_sweep(root / "cpu_study_v2_budget.yaml")  # the same 2-block runs at 6,000 steps
    assert [c.seed for c in budget.configs] == [1] * 6 + [2] * 6
    assert {c.total_steps for c in budget.configs} == {6000}
    assert {(c.run_name, c.val_dataset) for c in budget.configs} == {(c.run_name, "") for c in cpu.configs if c.blocks == 2}
    rates = grids.load_sweep(root / "cpu_study_v2_budget_lr.yaml")  # chosen on the hold-out, no test set
    assert [c.learning_rate for c in rates.configs] == [0.002, 0.001] and rates.evaluate == ()
    assert {(c.total_steps, c.val_dataset) for c in rates.configs} == {(6000, "")}


def test_every_shipped_comparison_names_its_steps_and_precision():
    """A bare run name pools the pairs of every budget and precision in the experiment into one
    test: in a study whose experiment gathers several arms, no pre-declared comparison may. And
    each side is a configuration that a shipped grid of the same experiment makes."""
    studies = [grids.load_sweep(path) for path in sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))]
    made = {(s.experiment, c.run_name, c.total_steps, c.precision) for s in studies for c in s.configs}
    with_comparisons = [s for s in studies if s.comparisons]
    assert len(with_comparisons) >= 4
    for study in with_comparisons:
        for side in (schema.comparison_side(side) for pair in study.comparisons for side in pair):
            assert side.steps is not None and side.precision is not None, (study.name, side)
            assert (study.experiment, side.name, side.steps, side.precision) in made, (study.name, side)


def children(experiment: str):
    experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id
    runs = mlflow.search_runs(experiment_ids=[experiment_id], output_format="list")
    return [r for r in runs if r.data.tags.get("edsr_mlflow.kind") == "train"]


@pytest.mark.slow
def test_sweep_isolates_failures_resumes_and_compares(tracking_store, tmp_path):
    photos = write_images(tmp_path / "photos", count=2, size=40)
    grid = write_grid(
        tmp_path / "tiny.yaml", name="tiny", experiment="sweep-test",
        grid={"patch_size": [16, 4000], "upsampler": ["subpixel", "nearest"]},  # patch 4000 cannot work
        fixed={"dataset": "sample", "blocks": 1, "filters": 8, "batch_size": 4, "epochs": 1, "steps_per_epoch": 2},
        evaluate=[str(photos)],
    )
    result = CliRunner().invoke(cli.main, ["sweep", f"--grid={grid}", "--max-parallel=2", "--output-dir=out"])
    assert result.exit_code == 2, result.output
    assert "2 trained, 0 already finished, 2 failed" in result.output
    assert "too small" in result.output  # the failing configurations' reason, from their logs

    finished = [r for r in children("sweep-test") if r.info.status == "FINISHED"]
    assert sorted(r.data.params["upsampler"] for r in finished) == ["nearest", "subpixel"]
    assert all("eval_photos_psnr" in r.data.metrics for r in finished)
    for log in Path("out/sweeps/tiny").glob("*.log"):  # one process per configuration: training, then its evaluation
        assert log.read_text().count("\n$ ") + log.read_text().startswith("$ ") == 1, log.read_text()[-2000:]
    (parent,) = [r for r in mlflow.search_runs(experiment_names=["sweep-test"], output_format="list") if r.data.tags.get("edsr_mlflow.kind") == "sweep"]
    assert {r.data.tags["mlflow.parentRunId"] for r in finished} == {parent.info.run_id}
    assert parent.data.tags["configurations_failed"] == "2"
    assert Path("out/comparison/tiny/findings.md").read_text() in result.output  # the table with its notes, as compare prints it

    again = CliRunner().invoke(cli.main, ["sweep", f"--grid={grid}", "--output-dir=out"])
    assert "0 trained, 2 already finished, 2 failed" in again.output, again.output
    assert len([r for r in children("sweep-test") if r.info.status == "FINISHED"]) == 2  # nothing trained twice
    assert all(r.info.status != "RUNNING" for r in mlflow.search_runs(experiment_names=["sweep-test"], output_format="list"))


# ---------------------------------------------------------------- bookkeeping (issue 10)


def test_config_keys_compare_values_not_spellings():
    from edsr_mlflow.config import TrainConfig

    config = TrainConfig(blocks=8, learning_rate=0.001)
    logged = {k: str(v) for k, v in config.as_params().items()}
    assert grids.config_key({**logged, "blocks": "8.0", "learning_rate": "1e-3"}) == grids.config_key(config.as_params())
    before_controls = {k: v for k, v in logged.items() if k not in ("transpose_kernel", "icnr")}
    assert grids.config_key(before_controls) == grids.config_key(config.as_params())  # defaults then
    assert grids.config_key({**logged, "blocks": "9"}) != grids.config_key(config.as_params())
    assert grids.config_key({**logged, "blocks": "zero"}) is None


def test_grid_values_in_any_numeric_spelling(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\ngrid:\n  learning_rate: [1e-3, 2.0e-3]\n  blocks: [1.0]\nfixed:\n  dataset: sample\n")
    configs = grids.load_sweep(grid).configs
    assert [(c.learning_rate, c.blocks) for c in configs] == [(0.001, 1), (0.002, 1)]
    assert all(isinstance(c.blocks, int) for c in configs)


def test_variants_add_upsampler_controls(tmp_path):
    grid = write_grid(tmp_path / "v.yaml", name="v", grid={"seed": [1, 2], "blocks": [2]},
                      variants=[{"upsampler": "subpixel"}, {"upsampler": "subpixel", "icnr": True},
                                {"upsampler": "transpose", "transpose_kernel": 6}],
                      fixed={"dataset": "sample", "scale": 4})
    configs = grids.load_sweep(grid).configs
    assert [(c.seed, c.run_name) for c in configs] == [
        (seed, name) for seed in (1, 2)
        for name in ("edsr_x4_b2_f64_subpixel", "edsr_x4_b2_f64_subpixel_icnr", "edsr_x4_b2_f64_transpose_k6")
    ]
    repeated = write_grid(tmp_path / "r.yaml", name="r", grid={"upsampler": ["transpose"]}, variants=[{}, {"upsampler": "transpose"}])
    with pytest.raises(ConfigError, match="twice"):
        grids.load_sweep(repeated)


@pytest.mark.slow
def test_a_failed_evaluation_is_retried_on_the_same_run(tracking_store, tmp_path):
    """Issue 10: a configuration whose evaluation failed was reported "already finished" for ever;
    and the run id came from the first `run <id>` line of an appended log."""
    photos = tmp_path / "photos"  # absent at first: the evaluation fails
    grid = write_grid(
        tmp_path / "e.yaml", name="evalretry", experiment="eval-retry", grid={"upsampler": ["nearest"]},
        fixed={"dataset": "sample", "blocks": 1, "filters": 8, "patch_size": 16, "batch_size": 4, "epochs": 1, "steps_per_epoch": 2},
        evaluate=[str(photos)],
    )
    first = CliRunner().invoke(cli.main, ["sweep", f"--grid={grid}", "--output-dir=out"])
    assert "0 trained, 0 already finished, 1 failed" in first.output, first.output
    (trained,) = children("eval-retry")
    assert trained.info.status == "FINISHED" and "eval_photos_psnr" not in trained.data.metrics

    write_images(photos, count=2, size=40)
    again = CliRunner().invoke(cli.main, ["sweep", f"--grid={grid}", "--output-dir=out"])
    assert again.exit_code == 0, again.output
    assert "1 trained, 0 already finished, 0 failed" in again.output  # its evaluation ran
    (evaluated,) = children("eval-retry")  # no second training run
    assert evaluated.info.run_id == trained.info.run_id
    assert "eval_photos_psnr" in evaluated.data.metrics


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "kill"])
def test_ctrl_c_or_kill_stops_the_sweep_and_starts_nothing_more(tracking_store, tmp_path, stop):
    import os
    import signal
    import subprocess
    import sys
    import time

    grid = write_grid(
        tmp_path / "slow.yaml", name="stopme", experiment="stop-me", grid={"seed": [1, 2, 3]},
        fixed={"dataset": "sample", "blocks": 1, "filters": 8, "patch_size": 16, "batch_size": 4, "epochs": 2, "steps_per_epoch": 400},
    )
    # Ctrl-C as at a terminal: a suite started in the background (`make test &`) inherits SIGINT
    # ignored, and Python then keeps ignoring it; the sweep gets the terminal's default. `kill`
    # (SIGTERM) as to a sweep started in the background, whose SIGINT is ignored.
    interrupt = signal.SIG_DFL if stop == "ctrl-c" else signal.SIG_IGN
    sweep_process = subprocess.Popen([sys.executable, "-m", "edsr_mlflow", "sweep", f"--grid={grid}", "--output-dir=out"],
                                     cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, interrupt))
    deadline = time.monotonic() + 300  # a guard against a hung test, not a speed check
    while time.monotonic() < deadline and not any(r.info.status == "RUNNING" for r in children_or_none("stop-me")):
        assert sweep_process.poll() is None, sweep_process.communicate()
        time.sleep(0.3)
    time.sleep(3)  # into the first configuration's training
    sweep_process.send_signal(signal.SIGINT if stop == "ctrl-c" else signal.SIGTERM)
    out, err = sweep_process.communicate(timeout=300)
    assert sweep_process.returncode == 130, err[-2000:]
    runs = mlflow.search_runs(experiment_names=["stop-me"], output_format="list")
    trained = [r for r in runs if r.data.tags.get("edsr_mlflow.kind") == "train"]
    assert [r.info.status for r in trained] == ["KILLED"]  # seeds 2 and 3 never started
    (parent,) = [r for r in runs if r.data.tags.get("edsr_mlflow.kind") == "sweep"]
    assert parent.info.status == "KILLED"


def test_steps_to_gain_thresholds_come_from_the_grid_file(tmp_path):
    base = dict(name="g", grid={"upsampler": ["subpixel"]}, fixed={"dataset": "sample"})
    assert grids.load_sweep(write_grid(tmp_path / "a.yaml", **base)).steps_to_gain_db == ()  # none unless asked
    assert grids.load_sweep(write_grid(tmp_path / "b.yaml", **base, steps_to_gain_db=[2, 0.25])).steps_to_gain_db == (0.25, 2.0)
    for bad in ([], [0], [-1.0], ["1 dB"], [True], [25]):
        with pytest.raises(ConfigError, match="steps_to_gain_db must be a list of gains over bicubic in dB"):
            grids.load_sweep(write_grid(tmp_path / "c.yaml", **base, steps_to_gain_db=bad))


def children_or_none(experiment: str):
    return children(experiment) if mlflow.get_experiment_by_name(experiment) else []


def test_comparisons_name_configurations_the_grid_makes(tmp_path):
    base = dict(name="c", grid={"upsampler": ["subpixel", "nearest"]}, fixed={"dataset": "sample", "blocks": 2})
    good = grids.load_sweep(write_grid(tmp_path / "c.yaml", **base, comparisons=[["edsr_x2_b2_f64_subpixel", "edsr_x2_b2_f64_nearest"]],
                                       comparison_metrics=["eval_set5_psnr"]))
    assert good.comparisons == (("edsr_x2_b2_f64_subpixel", "edsr_x2_b2_f64_nearest"),)
    assert good.comparison_metrics == ("eval_set5_psnr",)
    across = [["edsr_x2_b2_f64_subpixel@2000", "edsr_x2_b2_f64_nearest@3270"]]
    assert grids.load_sweep(write_grid(tmp_path / "e.yaml", **base, comparisons=across)).comparisons == (tuple(across[0]),)
    precisions = [["edsr_x2_b2_f64_subpixel@2000@mixed_bfloat16", "edsr_x2_b2_f64_subpixel@2000@float32"]]
    assert grids.load_sweep(write_grid(tmp_path / "p.yaml", **base, comparisons=precisions)).comparisons == (tuple(precisions[0]),)
    for pair, message in (
        (["edsr_x2_b2_f64_subpixel@2000", "edsr_x2_b2_f64_nearest"], "gives the steps \\(@<steps>\\) of one side only"),
        (["edsr_x2_b2_f64_subpixel@0", "edsr_x2_b2_f64_nearest@10"], "the steps after '@' must be a positive whole number"),
        (["edsr_x2_b2_f64_bilinear@10", "edsr_x2_b2_f64_nearest@10"], "edsr_x2_b2_f64_bilinear, which the grid does not make"),
        (["edsr_x2_b2_f64_subpixel@10@mixed_bfloat16", "edsr_x2_b2_f64_subpixel@10"], "gives the precision .* of one side only"),
        (["edsr_x2_b2_f64_subpixel@10@bf16", "edsr_x2_b2_f64_subpixel@10@float32"], "unknown precision 'bf16', use one of float32, mixed_bfloat16"),
        (["edsr_x2_b2_f64_subpixel@10@float32@x", "edsr_x2_b2_f64_nearest@10"], "write <run name>@<steps> or <run name>@<steps>@<precision>"),
    ):
        with pytest.raises(ConfigError, match=message):
            grids.load_sweep(write_grid(tmp_path / "f.yaml", **base, comparisons=[pair]))
    with pytest.raises(ConfigError, match="edsr_x2_b2_f64_bilinear, which the grid does not make"):
        grids.load_sweep(write_grid(tmp_path / "d.yaml", **base, comparisons=[["edsr_x2_b2_f64_subpixel", "edsr_x2_b2_f64_bilinear"]]))
