"""What a command pays before its first step: TensorFlow's import, as the CLI does it, against a
plain ``import tensorflow`` (which also loads scikit-learn and SciPy's statistics for Keras'
unused scikit-learn wrappers, MLflow having installed them); and what ``train`` and ``evaluate``
import after it (``edsr_mlflow.workflows``), against the same with ``edsr_mlflow.crops`` as
``workflows`` imported it before (it reads ``findings``, and so SciPy's statistics).

Each measurement is a fresh Python process, variants alternating round by round (this machine's
speed drifts), CPU seconds (user + system, the process and its children) and wall seconds, medians
over the rounds. Both variants first import ``edsr_mlflow.cli``, so they differ only in how
TensorFlow is imported.

    python benchmarks/startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

from _common import cpu_flags_line, cpu_model

VARIANTS = {
    "plain import tensorflow": "from edsr_mlflow import cli; import tensorflow; tensorflow.config.list_physical_devices('GPU')",
    "cli (scikit-learn hidden)": "from edsr_mlflow import cli; cli._import_tensorflow_quietly()",
    "train's imports, crops eager": "from edsr_mlflow import cli; cli._import_tensorflow_quietly(); import edsr_mlflow.workflows, edsr_mlflow.crops",
    "train's imports": "from edsr_mlflow import cli; cli._import_tensorflow_quietly(); import edsr_mlflow.workflows",
}
PAIRS = [("plain import tensorflow", "cli (scikit-learn hidden)", "per TensorFlow start-up, scikit-learn hidden"),
         ("train's imports, crops eager", "train's imports", "per train or evaluate, crops (SciPy statistics) not imported")]
# Printed by each process: whether scikit-learn was loaded; and it must still be importable after
# (found, not imported: importing it would cost what hiding it saved).
PROBE = ("; import importlib.util, sys; assert importlib.util.find_spec('sklearn') is not None; "
         "print('sklearn' in sys.modules)")


def measure(code: str) -> tuple[float, float, str]:
    """CPU seconds, wall seconds and stdout of ``python -c code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code + PROBE], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}\n{cpu_flags_line()}")
    measure(VARIANTS["plain import tensorflow"])  # warm the page cache for both
    times = {name: [] for name in VARIANTS}
    for round_index in range(args.rounds):
        for name, code in VARIANTS.items():
            cpu, wall, loaded = measure(code)
            times[name].append((cpu, wall))
            print(f"round {round_index + 1} {name:30s} CPU {cpu:5.2f} s  wall {wall:5.2f} s  scikit-learn loaded: {loaded}")
    print("\nmedians:")
    medians = {name: (statistics.median(c for c, _ in t), statistics.median(w for _, w in t)) for name, t in times.items()}
    for name, (cpu, wall) in medians.items():
        print(f"  {name:30s} CPU {cpu:5.2f} s  wall {wall:5.2f} s")
    for before, after, what in PAIRS:
        (cpu_before, wall_before), (cpu_after, wall_after) = medians[before], medians[after]
        print(f"saved {what}: CPU {cpu_before - cpu_after:.2f} s ({1 - cpu_after / cpu_before:.0%}), "
              f"wall {wall_before - wall_after:.2f} s ({1 - wall_after / wall_before:.0%})")


if __name__ == "__main__":
    main()
