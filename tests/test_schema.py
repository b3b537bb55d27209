"""One schema of names: what training and evaluation write is what compare parses back, and the
compare side never imports TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import edsr_mlflow
from edsr_mlflow import findings, schema

# The compare side, and what crops plans with: bad input is told before TensorFlow loads for the models.
COMPARE_SIDE = ("comparison", "run_store", "findings", "plots", "grid", "sweep", "statistics", "analysis", "factorial", "planning",
                "hypotheses", "statistics_report", "schema", "tracking", "config", "stale_runs",
                "crops", "images", "samples", "sources")


def test_the_compare_side_never_imports_tensorflow():
    modules = ", ".join(f"edsr_mlflow.{name}" for name in COMPARE_SIDE)
    probe = f"import sys, {modules}; heavy = sorted({{'tensorflow', 'keras'}} & set(sys.modules)); print(heavy)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def module_level_imports(module: str) -> set[str]:
    """What importing ``edsr_mlflow.<module>`` imports at once: its module-level imports (inside
    ``try``/``if`` too, but not under ``if TYPE_CHECKING``), ours as ``edsr_mlflow.<name>``."""
    source = (Path(edsr_mlflow.__file__).parent / f"{module}.py").read_text()
    found, pending = set(), list(ast.parse(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
        elif isinstance(node, (ast.If, ast.Try)):
            pending.extend([*node.body, *node.orelse, *getattr(node, "finalbody", []), *getattr(node, "handlers", [])])
        elif isinstance(node, ast.ExceptHandler):
            pending.extend(node.body)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            found.update([f"edsr_mlflow.{node.module}"] if node.module else [f"edsr_mlflow.{a.name}" for a in node.names])
    return found


def imported_with(module: str) -> set[str]:
    """Every module imported with ``edsr_mlflow.<module>``: ours followed, others as named."""
    seen, pending = set(), [f"edsr_mlflow.{module}"]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            if name.startswith("edsr_mlflow."):
                pending.extend(module_level_imports(name.removeprefix("edsr_mlflow.")))
    return seen


def test_train_and_evaluate_do_not_import_the_compare_statistics():
    # SciPy's statistics (with crops -> findings) cost every train and evaluate process about 2 s.
    loaded = imported_with("workflows") | imported_with("cli")
    assert "edsr_mlflow.training" in loaded and "edsr_mlflow.evaluation" in loaded  # the walk follows ours
    assert not {"edsr_mlflow.findings", "edsr_mlflow.statistics", "edsr_mlflow.crops", "edsr_mlflow.plots"} & loaded
    assert not [name for name in loaded if name.split(".")[0] == "scipy"]


@pytest.mark.parametrize("self_ensemble", [False, True])
@pytest.mark.parametrize("protocol", ["y", "rgb_paper"])
@pytest.mark.parametrize("dataset", ["set5", "bsd68", "my_psnr_photos", "div2k"])
def test_every_eval_key_parses_back_to_its_set_and_measure(dataset, protocol, self_ensemble):
    for measure in schema.EVAL_MEASURES:
        key = schema.eval_key(dataset, measure, self_ensemble, protocol)
        parsed = schema.parse_eval_key(key)
        assert parsed.measure == measure and parsed.key == key
        assert parsed.dataset == schema.metric_prefix(dataset, self_ensemble, protocol).removeprefix("eval_")


@pytest.mark.parametrize(("self_ensemble", "protocol", "path"), [
    (False, "y", "eval/set5_x4.csv"), (True, "y", "eval/set5_x4_se.csv"), (False, "rgb_paper", "eval/set5_x4_rgb_paper.csv"),
])
def test_per_image_tables_are_found_only_for_sets_scored_the_default_way(self_ensemble, protocol, path):
    assert schema.eval_table_path("set5", 4, self_ensemble, protocol) == path
    stem = schema.parse_eval_key(schema.eval_key("set5", "psnr", self_ensemble, protocol)).dataset
    assert schema.is_default_evaluation(stem) == (path == "eval/set5_x4.csv")


def test_keys_of_the_default_protocol_carry_no_protocol_name():
    assert schema.eval_key("set5", "psnr") == "eval_set5_psnr"
    assert schema.eval_key("set5", "psnr", True) == "eval_set5_se_psnr"
    assert schema.eval_key("div2k", "psnr", protocol="rgb_paper") == "eval_div2k_rgb_paper_psnr"
    assert schema.parse_eval_key("val_psnr") is None and schema.parse_eval_key("eval_set5_unknown") is None


def test_evaluation_logs_every_measure_of_the_schema():
    from edsr_mlflow.workflows import DatasetEvaluation

    scores = SimpleNamespace(psnr=30.0, ssim=0.9, gain=1.0, bicubic_psnr=29.0, seconds_per_megapixel=0.01,
                             spectrum_means=lambda bicubic=False: {"periodic_index": 2.0, "psnr_low": 40.0, "psnr_high": 31.0})
    assert tuple(DatasetEvaluation("set5", scores).measures()) == schema.EVAL_MEASURES


def test_training_logs_every_final_metric_of_the_schema():
    from edsr_mlflow.workflows import final_metrics

    state = SimpleNamespace(train_time_s=10.0, best_val_psnr=30.0, epoch=2, history=[{"train_loss": 9.0}, {"train_loss": 8.0}])
    result = SimpleNamespace(state=state, bicubic_val_psnr=28.0, bicubic_val_ssim=0.8, final_val_psnr=29.5)
    assert set(final_metrics(result)) == set(schema.FINAL_METRICS)


def test_findings_reads_the_benchmark_columns_evaluate_writes():
    columns = [schema.eval_key("set5", m) for m in schema.EVAL_MEASURES] + [schema.eval_key("div2k", "psnr", protocol="rgb_paper")]
    assert findings.eval_datasets(columns) == ["div2k_rgb_paper", "set5"]
    assert schema.eval_key("set5", "ms_per_mp") in findings.value_columns(columns)


@pytest.mark.parametrize("command", [["evaluate", "--model=runs:/0123456789abcdef0123456789abcdef/model"],
                                     ["upscale", "runs:/0123456789abcdef0123456789abcdef/model", "in.png", "out.png"]])
def test_a_model_that_does_not_exist_is_reported_before_tensorflow_loads(command, tracking_store, tmp_path):
    probe = ("import atexit, runpy, sys; "
             "atexit.register(lambda: print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_FREE', file=sys.stderr)); "
             "sys.argv = ['edsr-mlflow', *sys.argv[1:]]; runpy.run_module('edsr_mlflow', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", probe, *command], cwd=tmp_path, capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3
    assert lines[-2].startswith("error: model runs:/0123456789abcdef0123456789abcdef/model not found")
    assert lines[-1] == "TF_FREE"


def test_budget_params_are_training_config_fields():
    from dataclasses import fields

    from edsr_mlflow.config import TrainConfig

    assert set(schema.BUDGET_PARAMS) <= {f.name for f in fields(TrainConfig)}
