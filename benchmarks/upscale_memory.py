"""Peak memory of `edsr-mlflow upscale` on a large image, against the estimate it plans with.

The image of issue 38: a 9000x9000 PNG of one colour (258 KB on disk, 81 megapixels), upscaled
x2 (324 megapixels out) by a tiny model (1 block, 8 filters, logged to a temporary store). Each
case runs `edsr-mlflow upscale` in a child process; its peak resident memory is the child's
``ru_maxrss`` (os.wait4). Also a whole-image case small enough to run, to check that the
estimate of the model's working set is not below what it takes.

    python benchmarks/upscale_memory.py [--side 9000] [--whole-side 1500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags_line, temporary_tracking_store  # noqa: E402


def peak_rss_of(command: list[str]) -> tuple[float, float, str]:
    """(peak resident GB, seconds, the last line of its output) of ``command`` run to its end."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    lines = output.strip().splitlines() or [""]
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{output[-2000:]}")
    return usage.ru_maxrss * 1024 / 1e9, time.perf_counter() - start, lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=9000, help="LR side of the large one-colour PNG")
    parser.add_argument("--whole-side", type=int, default=1500, help="LR side of the whole-image check (random pixels)")
    args = parser.parse_args()

    import mlflow
    import numpy as np
    import psutil
    from PIL import Image

    from edsr_mlflow import memory, model, model_logging

    print(cpu_flags_line(), flush=True)
    with temporary_tracking_store() as folder:
        keras_model = model.build_edsr(scale=2, blocks=1, filters=8)
        with mlflow.start_run() as run:
            model_logging.log_keras_model(keras_model)
        uri = f"runs:/{run.info.run_id}/model"
        features = model.feature_bytes_per_lr_pixel(keras_model)
        large = folder / "flat.png"
        Image.new("RGB", (args.side, args.side), (40, 90, 200)).save(large)
        whole = folder / "noise.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (args.whole_side, args.whole_side, 3)).astype(np.uint8)).save(whole)
        print(f"{large.name}: {args.side}x{args.side}, {large.stat().st_size / 1e3:.0f} KB on disk; model x2, 1 block, 8 filters "
              f"({features:.0f} feature bytes per LR pixel); {psutil.virtual_memory().available / 1e9:.1f} GB available", flush=True)
        upscale = [sys.executable, "-m", "edsr_mlflow", "upscale", uri]
        small = folder / "small.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(small)
        cases = [
            ("64^2 (the process alone, nearly)", [str(small), str(folder / "out_small.png")], 64, None),
            (f"--tile 256, {args.side}^2", [str(large), str(folder / "out_tiled.png"), "--tile", "256"], args.side, 256),
            (f"default (auto), {args.side}^2", [str(large), str(folder / "out_auto.png")], args.side, None),
            (f"--tile 0, {args.whole_side}^2", [str(whole), str(folder / "out_whole.png"), "--tile", "0"], args.whole_side, 0),
        ]
        for name, case_args, side, tile in cases:
            plan = memory.plan_upscale(side, side, 2, tile, features, psutil.virtual_memory().available)
            peak, seconds, last = peak_rss_of([*upscale, *case_args])
            print(f"{name}: peak {peak:.2f} GB resident (estimate {plan.estimated_bytes / 1e9:.2f} GB for the image, "
                  f"tile {plan.tile or 'whole'}, plus the process), {seconds:.0f} s; {last}", flush=True)


if __name__ == "__main__":
    main()
