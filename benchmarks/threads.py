"""TensorFlow's thread pools on this machine: the benchmark model's float32 training step with
TensorFlow's defaults (inter-op and intra-op pools both sized by the core count) against other
settings, e.g. one inter-op thread, so that two ready ops (a convolution's input gradient and its
kernel gradient) do not each ask for every core at once.

Thread pools are fixed when TensorFlow starts, so each measurement is a fresh process; settings
alternate round by round (this machine's speed drifts), and each setting's speed is the median of
its per-round ratios to the default of the same round. Per process: ``--warmup`` untimed steps
(tracing), then ``--steps`` timed ones (from the end of one untimed step to the end of the last)
of the benchmark model (x2, 8 blocks, 32 filters, batch 16, LR patch 32, SunHays80, the project's
tf.data pipeline); wall and CPU ms per step.

    python benchmarks/threads.py --rounds 5 [--precision float32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _common import cpu_flags_line, cpu_model, require_shared_data

# (inter-op threads, intra-op threads); 0 = TensorFlow's default
SETTINGS = {"default": (0, 0), "inter 1": (1, 0), "inter 1, intra 1": (1, 1)}

CHILD = r"""
import json, sys
inter, intra, warmup, steps, precision, shared = sys.argv[1:]
import tensorflow as tf
if int(inter):
    tf.config.threading.set_inter_op_parallelism_threads(int(inter))
if int(intra):
    tf.config.threading.set_intra_op_parallelism_threads(int(intra))
from pathlib import Path
from _common import step_benchmark_batches, step_benchmark_data, step_benchmark_model, timed_fit
sr_data = step_benchmark_data(Path(shared))
model = step_benchmark_model(precision, xla=False)
batches = step_benchmark_batches(sr_data, seed=0)
model.fit(batches, steps_per_epoch=int(warmup), epochs=1, verbose=0)
wall, cpu = timed_fit(model, batches, int(steps))
print(json.dumps({"wall_ms": 1000 * wall, "cpu_ms": 1000 * cpu}))
"""


def measure(setting: tuple[int, int], args, shared: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(str(p) for p in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parent))}
    done = subprocess.run([sys.executable, "-c", CHILD, *map(str, setting), str(args.warmup), str(args.steps), args.precision, str(shared)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a measurement failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps per process first (tracing)")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    args = parser.parse_args()
    shared = require_shared_data()
    print(f"{cpu_model()}, {os.cpu_count()} cores\n{cpu_flags_line()}")

    times = {name: [] for name in SETTINGS}
    for round_number in range(1, args.rounds + 1):
        for name, setting in SETTINGS.items():
            times[name].append(measure(setting, args, shared))
        print(f"round {round_number}: " + ", ".join(f"{name} {times[name][-1]['wall_ms']:.0f} ms/step "
                                                    f"(CPU {times[name][-1]['cpu_ms']:.0f})" for name in SETTINGS), flush=True)
    for name in SETTINGS:
        wall = statistics.median(t["wall_ms"] for t in times[name])
        cpu = statistics.median(t["cpu_ms"] for t in times[name])
        speedups = [d["wall_ms"] / t["wall_ms"] for d, t in zip(times["default"], times[name])]
        faster = sum(s > 1 for s in speedups)
        print(f"{name:<17} {wall:5.0f} ms/step, CPU {cpu:5.0f} ms/step (medians of {args.rounds}); speed vs default "
              f"x{statistics.median(speedups):.2f} (rounds {min(speedups):.2f}-{max(speedups):.2f}, faster in {faster} of {args.rounds})")


if __name__ == "__main__":
    main()
