"""How the cost of ``compare``'s findings table grows with the number of runs.

Fills a temporary SQLite tracking store with synthetic FINISHED training runs shaped like
``edsr-mlflow train``'s (tags, the 17 params, per-epoch and final metrics, benchmark scores),
then times building the table: the one ``search_runs`` query plus the aggregation (not the
figures, the files or the comparison run). The issue's target: under 5 s for 1,000 runs.

It then times ``edsr-mlflow compare`` end to end, from process start to exit (imports, query,
table, figures, files, the comparison run), for each code tree given with ``--code`` (default:
this checkout), rounds alternating so that drift hits every tree alike. To compare against an
older commit: ``git worktree add /tmp/before <commit>`` and pass ``--code /tmp/before --code .``.

    python benchmarks/compare_scaling.py [--runs 1000] [--epochs 10] [--repeats 3] [--code DIR ...]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edsr_mlflow.schema import EPOCH_METRICS  # noqa: E402  the names train logs, in order

from _common import temporary_tracking_store  # noqa: E402

SCALES = (2, 3, 4)
UPSAMPLERS = ("subpixel", "transpose", "nearest", "bilinear")
BLOCKS = (1, 2, 4, 8, 16)
EVAL_SETS = ("set5", "set14")


def synthetic_run(index: int, epochs: int) -> tuple[dict[str, str], dict[str, str], list[tuple[str, float, int]]]:
    """(tags, params, [(metric, value, step)]) of the ``index``-th run: configurations cycle,
    the seed counts up each cycle."""
    configurations = list(itertools.product(SCALES, UPSAMPLERS, BLOCKS))
    scale, upsampler, blocks = configurations[index % len(configurations)]
    seed, filters = index // len(configurations), 64
    run_name = f"edsr_x{scale}_b{blocks}_f{filters}_{upsampler}"
    tags = {"edsr_mlflow.kind": "train", "upsampler": upsampler, "blocks": str(blocks), "scale": str(scale), "mlflow.runName": run_name}
    params = {
        "upsampler": upsampler, "blocks": blocks, "filters": filters, "scale": scale, "res_scale": 1.0,
        "dataset": "div2k", "val_dataset": "", "patch_size": 48, "batch_size": 16, "epochs": epochs,
        "steps_per_epoch": 1000, "learning_rate": 1e-4, "seed": seed, "precision": "float32",
        "time_budget_s": 0.0, "params_count": 37_000 * blocks + 300_000, "macs_per_lr_pixel": 74_000 * blocks + 600_000,
    }
    final_psnr = 36.0 - 2.0 * scale + 0.2 * blocks ** 0.5 + 0.01 * (seed % 7)
    metrics = []
    for epoch in range(1, epochs + 1):
        values = (0.05 / epoch, final_psnr - 0.1 * (epochs - epoch), 0.9, final_psnr - 1.5, 20.0 * blocks, 800.0 / blocks, 1e-4)
        metrics += [(metric, value, epoch) for metric, value in zip(EPOCH_METRICS, values)]
    final = {
        "train_time_s": 20.0 * blocks * epochs, "best_val_psnr": final_psnr, "bicubic_val_psnr": 30.0 - 2.0 * scale,
        "bicubic_val_ssim": 0.85, "val_psnr_gain": 6.0, "epochs_completed": epochs,
    }
    for dataset in EVAL_SETS:
        final.update({f"eval_{dataset}_psnr": final_psnr + 1, f"eval_{dataset}_ssim": 0.92, f"eval_{dataset}_gain": 2.0,
                      f"eval_{dataset}_bicubic_psnr": final_psnr - 1, f"eval_{dataset}_ms_per_mp": 30.0 * blocks})
    metrics += [(metric, float(value), 0) for metric, value in final.items()]
    return tags, {k: str(v) for k, v in params.items()}, metrics


def fill_store(count: int, epochs: int) -> str:
    """Creates experiment ``scaling`` with ``count`` FINISHED runs (3 requests each); its id."""
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("scaling")
    timestamp = int(time.time() * 1000)
    for index in range(count):
        tags, params, metrics = synthetic_run(index, epochs)
        run_id = client.create_run(experiment_id, tags=tags, run_name=tags["mlflow.runName"]).info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(name, value, timestamp, step) for name, value, step in metrics],
            params=[Param(name, value) for name, value in params.items()],
        )
        client.set_terminated(run_id, "FINISHED")
    return experiment_id


def time_table(experiment: str) -> tuple[float, float, int]:
    """Seconds for the query, seconds for the aggregation, rows of the table."""
    from edsr_mlflow import findings, run_store

    start = time.perf_counter()
    runs = run_store.training_runs(run_store.comparison_scope(experiment, None))
    queried = time.perf_counter()
    table, excluded = findings.findings_table(runs)
    done = time.perf_counter()
    assert len(runs) == table["n"].sum() + len(excluded)
    return queried - start, done - queried, len(table)


def time_compare_command(code: Path, experiment: str) -> tuple[float, bool]:
    """Seconds from starting ``python -m edsr_mlflow compare`` (from ``code``) to its exit, and
    whether it imported TensorFlow."""
    probe = ("import runpy, sys, atexit, edsr_mlflow; print('EDSR_FROM', edsr_mlflow.__file__.rsplit('/edsr_mlflow/', 1)[0], file=sys.stderr); "
             "atexit.register(lambda: print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_FREE', file=sys.stderr)); "
             "sys.argv = ['edsr-mlflow', 'compare', '--experiment', sys.argv[1], '--output-dir', sys.argv[2]]; "
             "runpy.run_module('edsr_mlflow', run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    with tempfile.TemporaryDirectory() as output_dir:
        start = time.perf_counter()
        # cwd: the output folder, so that `python -c` (which puts its cwd first on sys.path)
        # imports edsr_mlflow from ``code`` and nowhere else.
        done = subprocess.run([sys.executable, "-c", probe, experiment, output_dir], env=env, cwd=output_dir,
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    if done.returncode != 0 or f"EDSR_FROM {code.resolve()}" not in done.stderr:
        raise SystemExit(f"compare from {code} failed or ran other code:\n{done.stderr[-2000:]}")
    return elapsed, "TF_LOADED" in done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10, help="per-epoch metric history of each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--code", type=Path, action="append", default=[],
                        help="a code tree (holding edsr_mlflow/) whose compare command to time; repeat to compare trees")
    args = parser.parse_args()
    codes = args.code or [Path(__file__).resolve().parents[1]]

    with temporary_tracking_store() as folder:
        start = time.perf_counter()
        fill_store(args.runs, args.epochs)
        print(f"created {args.runs} synthetic runs ({args.epochs} epochs each) in {folder} in {time.perf_counter() - start:.1f} s")
        timings = []
        for attempt in range(1, args.repeats + 1):
            query_s, aggregate_s, rows = time_table("scaling")
            timings.append(query_s + aggregate_s)
            print(f"  attempt {attempt}: query {query_s:.2f} s + aggregation {aggregate_s:.2f} s = {query_s + aggregate_s:.2f} s ({rows} rows)")
        print(f"findings table for {args.runs} runs: {min(timings):.2f} s (best of {args.repeats}; first, cold: {timings[0]:.2f} s; target < 5 s)")

        end_to_end = {code: [] for code in codes}
        for attempt in range(1, args.repeats + 1):
            for code in codes:
                elapsed, tensorflow = time_compare_command(code, "scaling")
                end_to_end[code].append(elapsed)
                print(f"  round {attempt}: edsr-mlflow compare from {code}: {elapsed:.1f} s "
                      f"({'imports' if tensorflow else 'without'} TensorFlow)")
        for code, seconds in end_to_end.items():
            print(f"edsr-mlflow compare end to end on {args.runs} runs, {code}: best {min(seconds):.1f} s, "
                  f"median {sorted(seconds)[len(seconds) // 2]:.1f} s of {len(seconds)}")


if __name__ == "__main__":
    main()
