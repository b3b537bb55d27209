"""benchmarks/grid_throughput.py on a tiny grid: one configuration per run name, the CSV's columns
and positive numbers, a file ``compare --throughput`` reads. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from edsr_mlflow import findings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("grid_throughput", ROOT / "benchmarks" / "grid_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_GRID = """\
name: tiny
grid:
  seed: [1, 2]
variants:
  - {upsampler: subpixel}
  - {upsampler: transpose, transpose_kernel: 4}
fixed: {scale: 2, blocks: 1, filters: 8, dataset: sample, patch_size: 8, batch_size: 2}
"""


def test_seeds_collapse_to_one_configuration_per_run_name_measured_as_float32(benchmark, tmp_path):
    from edsr_mlflow.grid import load_sweep

    (tmp_path / "tiny.yaml").write_text(TINY_GRID)
    configs = benchmark.distinct_configs(load_sweep(tmp_path / "tiny.yaml").configs)
    assert [c.run_name for c in configs] == ["edsr_x2_b1_f8_subpixel", "edsr_x2_b1_f8_transpose_k4"]
    assert {c.precision for c in configs} == {"float32"}


def test_one_round_writes_every_column_with_positive_numbers(benchmark, tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_GRID)
    output = tmp_path / "out" / "throughput.csv"
    benchmark.main(["--grid", str(tmp_path / "tiny.yaml"), "--output", str(output), "--rounds", "1", "--steps", "1",
                    "--warmup", "1", "--lr-size", "16", "--infer-calls", "1"])
    table = pd.read_csv(output)
    assert list(table.columns[:len(findings.THROUGHPUT_COLUMNS)]) == list(findings.THROUGHPUT_COLUMNS)
    assert table["label"].tolist() == ["edsr_x2_b1_f8_subpixel", "edsr_x2_b1_f8_transpose_k4"]
    assert table["upsampler"].tolist() == ["subpixel", "transpose_k4"]
    for column in ("params", "macs_per_lr_pixel", *findings.THROUGHPUT_TIMINGS):
        assert (table[column] > 0).all(), column
    assert table["rounds"].tolist() == [1, 1]
    metadata = json.loads(findings.throughput_metadata_path(output).read_text())
    assert {"date", "cpu_model", "cpu_flags", "tensorflow"} <= set(metadata) and "avx2" in metadata["cpu_flags"]
    assert metadata["settings"]["rounds"] == 1
    # What the benchmark writes, compare reads.
    assert findings.read_throughput(output)["label"].tolist() == table["label"].tolist()
