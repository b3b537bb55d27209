"""Measured cost of every configuration of a grid: training step time and inference time, all
configurations in one process, rounds alternating, so a machine whose speed drifts from minute
to minute (README, "Speed") weighs on every configuration alike.

1. The grid file (``edsr_mlflow.grid``), its configurations with the seeds collapsed: one per
   run name (``edsr_x4_b8_f32_transpose_k6``), each built with the project's builder and
   compiled as training compiles it, with the grid's scale, filters, patch and batch size and
   precision (``auto`` is measured as float32, so that grids older than an explicit precision time
   what they trained).
2. Warm-up, untimed: ``--warmup`` training steps and one inference call per configuration
   (tracing, first-call allocations).
3. ``--rounds`` rounds; in each, configuration 1, 2, ..., n in turn: ``--steps`` training steps
   on a fixed batch of random LR/HR patches of the grid's patch and batch size (the input
   pipeline is not timed), then ``--infer-calls`` upscalings of a random ``--lr-size`` square LR
   image through the same path as ``evaluate`` (``inference.model_upscaler``, uint8 out).
4. Per configuration, the median over rounds: ms per training step, patches/s, inference ms per
   output megapixel; with its parameters and MACs per LR pixel (the structural cost).

Writes ``--output`` (CSV, the columns of ``findings.THROUGHPUT_COLUMNS`` and a few more) and,
beside it, a ``.json`` of the machine (CPU model, the flags that decide speed), the date, the
library versions and these settings. ``edsr-mlflow compare --throughput <csv>`` puts the timings
into the findings table and draws the Pareto front against them. Needs a quiet machine.

    python benchmarks/grid_throughput.py --grid experiments/cpu_study_v2.yaml \
        --output experiments/results/cpu_study_v2/throughput.csv [--rounds 5] [--steps 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHOWN_FLAGS, cpu_flags_line, cpu_model  # noqa: E402

EXTRA_COLUMNS = ("patch_size", "batch_size", "precision", "train_step_ms_min", "train_step_ms_max", "steps", "lr_size")


def distinct_configs(configs) -> list:
    """One ``TrainConfig`` per run name (the first seed's), in the grid's order; ``auto``
    precision as float32."""
    chosen = {}
    for config in configs:
        if config.run_name not in chosen:
            precision = "float32" if config.precision == "auto" else config.precision
            chosen[config.run_name] = dataclasses.replace(config, precision=precision)
    return list(chosen.values())


def measure(configs, *, rounds: int = 5, steps: int = 20, warmup: int = 5, lr_size: int = 128, infer_calls: int = 3,
            report=print) -> list[dict]:
    """Times each of ``configs`` (``TrainConfig``), rounds alternating (see the module
    docstring); one dict per configuration with the CSV's columns. ``report`` gets one line per
    round."""
    import numpy as np
    import tensorflow as tf

    from edsr_mlflow import training
    from edsr_mlflow.inference import model_upscaler
    from edsr_mlflow.model import macs_per_lr_pixel
    from edsr_mlflow.schema import upsampler_variant

    rng = np.random.default_rng(0)
    prepared = []
    for config in configs:
        model = training.build_model(config)
        patch, scale = config.patch_size, config.scale
        lr_batch = tf.constant(rng.uniform(0, 255, (config.batch_size, patch, patch, 3)).astype(np.float32))
        hr_batch = tf.constant(rng.uniform(0, 255, (config.batch_size, patch * scale, patch * scale, 3)).astype(np.float32))
        lr_image = rng.integers(0, 256, (lr_size, lr_size, 3), dtype=np.uint8)
        upscale = model_upscaler(model)
        for _ in range(warmup):
            model.train_on_batch(lr_batch, hr_batch)
        upscale(lr_image)
        prepared.append((config, model, lr_batch, hr_batch, lr_image, upscale))

    step_ms = {c.run_name: [] for c in configs}
    infer_ms_per_mp = {c.run_name: [] for c in configs}
    for round_number in range(1, rounds + 1):
        for config, model, lr_batch, hr_batch, lr_image, upscale in prepared:
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(lr_batch, hr_batch)  # returns the loss as a number: the step has finished
            step_ms[config.run_name].append(1000 * (time.perf_counter() - start) / steps)
            start = time.perf_counter()
            for _ in range(infer_calls):
                sr_image = upscale(lr_image)
            seconds = (time.perf_counter() - start) / infer_calls
            infer_ms_per_mp[config.run_name].append(1000 * seconds / (sr_image.shape[0] * sr_image.shape[1] / 1e6))
        report(f"round {round_number}: " + ", ".join(
            f"{c.run_name} {step_ms[c.run_name][-1]:.0f} ms/step {infer_ms_per_mp[c.run_name][-1]:.0f} ms/MP" for c in configs))

    rows = []
    for config, model, *_ in prepared:
        median_step = statistics.median(step_ms[config.run_name])
        rows.append({
            "label": config.run_name, "scale": config.scale,
            "upsampler": upsampler_variant(config.upsampler, config.transpose_kernel, config.icnr),  # transpose_k6...
            "blocks": config.blocks, "filters": config.filters,
            "params": model.count_params(), "macs_per_lr_pixel": macs_per_lr_pixel(model),
            "train_step_ms": median_step, "train_patches_per_s": 1000 * config.batch_size / median_step,
            "infer_ms_per_mp": statistics.median(infer_ms_per_mp[config.run_name]), "rounds": rounds,
            "patch_size": config.patch_size, "batch_size": config.batch_size, "precision": config.precision,
            "train_step_ms_min": min(step_ms[config.run_name]), "train_step_ms_max": max(step_ms[config.run_name]),
            "steps": steps, "lr_size": lr_size,
        })
    return rows


def machine_metadata(arguments: dict) -> dict:
    """What the timings depend on besides the models: the machine, the date, the libraries."""
    import keras
    import tensorflow as tf

    from edsr_mlflow import precision

    flags = precision.cpu_flags()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(), "cpu_flags": {flag: flag in flags for flag in SHOWN_FLAGS},
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
        "settings": arguments,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", required=True, help="grid file (experiments/*.yaml)")
    parser.add_argument("--output", required=True, type=Path, help="CSV to write; the metadata goes beside it as .json")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all configurations; medians of these")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per configuration and round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps per configuration first (tracing)")
    parser.add_argument("--lr-size", type=int, default=128, help="side of the square LR image upscaled for inference")
    parser.add_argument("--infer-calls", type=int, default=3, help="timed upscalings per configuration and round")
    args = parser.parse_args(argv)
    for name in ("rounds", "steps", "lr_size", "infer_calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    import pandas as pd

    from edsr_mlflow.findings import THROUGHPUT_COLUMNS, throughput_metadata_path
    from edsr_mlflow.grid import load_sweep

    print(f"CPU: {cpu_model()}\n{cpu_flags_line()}")
    configs = distinct_configs(load_sweep(args.grid).configs)
    print(f"{len(configs)} configurations of {args.grid}, {args.rounds} rounds of {args.steps} steps and {args.infer_calls} "
          f"upscalings of {args.lr_size}x{args.lr_size} each")
    rows = measure(configs, rounds=args.rounds, steps=args.steps, warmup=args.warmup, lr_size=args.lr_size,
                   infer_calls=args.infer_calls)
    table = pd.DataFrame(rows, columns=[*THROUGHPUT_COLUMNS, *EXTRA_COLUMNS])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output, index=False)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    throughput_metadata_path(args.output).write_text(json.dumps(machine_metadata(settings), indent=2) + "\n")
    for row in rows:
        print(f"{row['label']:<32} {row['params']:>9,} params {row['macs_per_lr_pixel']:>9,} MACs/LR px "
              f"{row['train_step_ms']:7.1f} ms/step ({row['train_step_ms_min']:.1f}-{row['train_step_ms_max']:.1f}) "
              f"{row['train_patches_per_s']:7.1f} patches/s {row['infer_ms_per_mp']:8.1f} ms/MP")
    print(f"wrote {args.output} and {throughput_metadata_path(args.output)}")


if __name__ == "__main__":
    main()
