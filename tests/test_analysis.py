"""A grid file's statistics: the primary family, divergence and declarations, read from YAML
and reported by `compare --grid` (a real temporary store of synthetic runs)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from test_compare import log_training_run

from edsr_mlflow import analysis, cli
from edsr_mlflow import grid as grids
from edsr_mlflow.errors import ConfigError
from edsr_mlflow.hypotheses import DivergenceRule, ModelContrast

# PSNR by (blocks, upsampler) and seed 1, 2, 3: depth helps by about 0.2 dB, the upsamplers tie.
CELLS = {(1, "subpixel"): [30.00, 30.06, 29.98], (1, "nearest"): [30.01, 30.04, 29.99],
         (2, "subpixel"): [30.21, 30.27, 30.19], (2, "nearest"): [30.20, 30.25, 30.20]}
FIXED = {"scale": 2, "filters": 8, "dataset": "sample", "epochs": 3, "learning_rate": 0.001}


def grid_file(path, **extra):
    body = {"name": "g", "experiment": "analysis", "grid": {"seed": [1, 2, 3], "blocks": [1, 2], "upsampler": ["subpixel", "nearest"]},
            "fixed": FIXED, **extra}
    path.write_text(yaml.safe_dump(body))
    return path


PRIMARY = {"declared": "2026-01-01T00:00:00Z", "metrics": ["val_psnr"],
           "hypotheses": [{"factor": "blocks", "a": 2, "b": 1}, {"factor": "upsampler", "a": "subpixel", "b": "nearest"}]}


def test_a_grid_file_names_its_primary_family_margin_and_divergence_rule(tmp_path):
    definition = grids.load_sweep(grid_file(tmp_path / "g.yaml", primary=PRIMARY, margin_db=0.1,
                                            divergence={"loss_rise_factor": 2, "drop": True},
                                            comparisons_declared="2026-01-02",
                                            comparisons=[["edsr_x2_b1_f8_subpixel", "edsr_x2_b1_f8_nearest"],
                                                         {"pair": ["edsr_x2_b2_f8_subpixel", "edsr_x2_b2_f8_nearest"],
                                                          "declared": "2026-01-03T10:00:00Z"}]))
    assert definition.factors == {"upsampler": ("subpixel", "nearest"), "blocks": ("1", "2")}
    assert definition.primary.hypotheses[0] == ModelContrast("blocks", "2", "1") and definition.primary.size == 2
    assert definition.margin_db == 0.1 and definition.divergence == DivergenceRule(2.0, True)
    assert [d.isoformat() for d in definition.comparisons_declared] == ["2026-01-02T00:00:00+00:00", "2026-01-03T10:00:00+00:00"]


@pytest.mark.parametrize("extra, message", [
    ({"primary": {"hypotheses": [{"factor": "filters", "a": 8, "b": 16}]}}, "the grid's factors are upsampler, blocks"),
    ({"primary": {"hypotheses": [{"factor": "blocks", "a": 4, "b": 1}]}}, "blocks has no level '4'; use one of 1, 2"),
    ({"primary": {"hypotheses": [{"factor": "blocks", "a": 2, "b": 1, "at": {"blocks": 1}}]}}, "use other factors"),
    ({"primary": {"hypotheses": [{"pair": ["edsr_x2_b1_f8_subpixel", "edsr_x2_b9_f8_nearest"]}]}}, "which the grid does not make"),
    ({"margin_db": -1}, "margin_db must be a number of dB above 0"),
    ({"divergence": {"loss_rise_factor": 0.5}}, "loss_rise_factor must be a number above 1"),
    ({"primary": {**PRIMARY, "declared": "last tuesday"}}, "declared must be a date or time"),
])
def test_a_bad_statistics_setting_fails_in_one_line_naming_the_fix(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        grids.load_sweep(grid_file(tmp_path / "g.yaml", **extra))


def test_a_run_whose_loss_rises_past_the_rule_is_diverged():
    losses = pd.DataFrame({"run_id": ["a"] * 4 + ["b"] * 4, "step": [1, 2, 3, 4] * 2,
                           "value": [10, 8, 15.9, 7, 10, 8, 16.1, 7]})  # b: 16.1 > 2 x 8
    assert analysis.diverged_runs(losses, DivergenceRule(2.0)) == {"b"}


def test_a_declaration_counts_the_runs_that_had_started():
    import datetime as dt

    grid = pd.DataFrame({"run_id": ["r1", "r2", "r3"], "seed": [1, 1, 2], "blocks": ["1", "1", "1"],
                         "start_time": pd.to_datetime(["2026-01-01T10:00Z", "2026-01-01T11:00Z", "2026-01-03T00:00Z"])})
    at = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    assert analysis.declared_note(at, grid, ["blocks"], 4).endswith("after 1 of 4 runs had started (post hoc)")  # r2 retries r1
    assert analysis.declared_note(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), grid, ["blocks"], 4).endswith("before any run")
    assert analysis.declared_note(None, grid, ["blocks"], 4) == "declaration time not recorded"


@pytest.fixture
def grid_store(tracking_store):
    import mlflow

    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("analysis")
    for (blocks, upsampler), values in CELLS.items():
        for seed, value in enumerate(values, start=1):
            log_training_run(client, experiment_id, upsampler=upsampler, blocks=blocks, seed=seed, val_psnr=value, train_time_s=10.0,
                             extra_params={"filters": 8})
    return tracking_store


def test_compare_with_a_grid_reports_the_model_the_family_and_the_plan(grid_store, tmp_path):
    import mlflow

    path = grid_file(tmp_path / "g.yaml", primary=PRIMARY, comparisons=[["edsr_x2_b2_f8_subpixel", "edsr_x2_b1_f8_subpixel"]])
    before = len(mlflow.search_runs(search_all_experiments=True))
    planned = CliRunner().invoke(cli.main, ["compare", "--grid", str(path), "--plan"])
    assert planned.exit_code == 0, planned.output
    assert "| val_psnr | blocks: 2 - 1 | primary | 3 |" in planned.output
    assert len(mlflow.search_runs(search_all_experiments=True)) == before  # --plan writes and logs nothing

    result = CliRunner().invoke(cli.main, ["compare", "--experiment", "analysis", "--grid", str(path), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    primary = pd.read_csv(tmp_path / "out" / "statistics_primary_family.csv").set_index("hypothesis")
    depth = primary.loc["blocks: 2 - 1"]
    assert depth["value"] == pytest.approx(sum(sum(CELLS[2, u]) - sum(CELLS[1, u]) for u in ("subpixel", "nearest")) / 6)
    assert depth["verdict"] == "larger than the margin" and depth["declared"].endswith("before any run")
    assert primary.loc["upsampler: subpixel - nearest", "verdict"] in ("equivalent within ±0.05 dB", "not resolved")
    terms = pd.read_csv(tmp_path / "out" / "statistics_model_terms.csv")
    assert set(terms["term"]) == {"upsampler (nearest - subpixel)", "blocks (2 - 1)", "upsampler x blocks"}
    findings_md = (tmp_path / "out" / "findings.md").read_text()
    assert "## The grid's model" in findings_md and "## Primary family" in findings_md and "## Planning" in findings_md
    exploratory = pd.read_csv(tmp_path / "out" / "statistics_exploratory_comparisons.csv")
    assert exploratory["declared"].tolist() == ["declaration time not recorded"] and "verdict" not in exploratory


def test_plan_without_a_grid_fails_in_one_line():
    result = CliRunner().invoke(cli.main, ["compare", "--plan"])
    assert result.exit_code != 0 and "pass --grid" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("losses, rise", [
    ([8.0, 47.3, 120.0], 120.0 / 8.0),  # the CPU study's diverged run, epochs 3-5
    ([10.0, 6.0, 5.0, 5.5], 1.1),       # a small bump: 5.5 over the lowest before it, 5.0
    ([10.0, 8.0, 6.0], 1.0),            # falling
    ([7.0], 1.0),                       # one epoch: nothing before it
])
def test_the_largest_loss_rise_by_hand(losses, rise):
    from edsr_mlflow import hypotheses

    assert hypotheses.largest_loss_rise(losses) == pytest.approx(rise)
    assert hypotheses.DivergenceRule(2.0).broken_by(losses) == (rise > 2.0)
