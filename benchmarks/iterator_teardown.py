"""How long does dropping an iterator of the training stream take, with tf.data's autotuning on
(TensorFlow's default) and off? Keras drops its iterator at the end of every ``fit`` call, so a
slow teardown is wall time that no training step accounts for.

The project's training stream (SunHays80, x2, batch 16, LR patch 32) is read for a given time
(one batch per ``--step-ms``, a sleep standing in for a training step), then its iterator is
dropped and the teardown timed. Lifetimes from ``--shortest`` to ``--longest`` seconds, the two
settings alternating at each lifetime.

    python benchmarks/iterator_teardown.py [--shortest 2] [--longest 12] [--step-ms 300]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags_line, require_shared_data, step_benchmark_batches, step_benchmark_data  # noqa: E402


def teardown_seconds(batches, lifetime_s: float, step_s: float) -> float:
    """Reads ``batches`` for ``lifetime_s`` (a batch per ``step_s``), then drops the iterator:
    seconds the drop took."""
    start = time.perf_counter()
    iterator = iter(batches)
    while time.perf_counter() - start < lifetime_s:
        next(iterator)
        time.sleep(step_s)
    dropped = time.perf_counter()
    del iterator
    gc.collect()
    return time.perf_counter() - dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shortest", type=int, default=2, help="shortest lifetime, s")
    parser.add_argument("--longest", type=int, default=12, help="longest lifetime, s (every whole second between)")
    parser.add_argument("--step-ms", type=float, default=300.0, help="time per batch read")
    args = parser.parse_args()

    import tensorflow as tf

    print(cpu_flags_line())
    sr_data = step_benchmark_data(require_shared_data())
    streams = {}
    for autotune in (True, False):
        options = tf.data.Options()
        options.autotune.enabled = autotune
        streams[f"autotune {'on' if autotune else 'off'}"] = step_benchmark_batches(sr_data, seed=0).with_options(options)

    teardowns = {name: [] for name in streams}
    for lifetime in range(args.shortest, args.longest + 1):
        for name, batches in streams.items():
            teardowns[name].append(teardown_seconds(batches, lifetime, args.step_ms / 1000))
        print(f"lifetime {lifetime:3d} s: " + ", ".join(f"{name} {1000 * t[-1]:6.0f} ms" for name, t in teardowns.items()), flush=True)
    for name, seconds in teardowns.items():
        slow = sum(s > 1.0 for s in seconds)
        print(f"{name:<13} teardown median {1000 * statistics.median(seconds):5.0f} ms, longest {1000 * max(seconds):5.0f} ms, "
              f"over 1 s in {slow} of {len(seconds)}, total {sum(seconds):.1f} s")


if __name__ == "__main__":
    main()
