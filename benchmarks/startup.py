"""What a command pays before its first step: TensorFlow's import, as the CLI does it (with
scikit-learn and matplotlib hidden from Keras, which imports them at its own import for its unused
scikit-learn wrappers and keras.visualization, MLflow having installed both), against a plain
``import tensorflow`` and against hiding scikit-learn only (as the CLI did before); and what
``train`` and ``evaluate`` import after it (``edsr_mlflow.workflows``), against the same with
``edsr_mlflow.crops`` as ``workflows`` imported it before (it reads ``findings``, and so SciPy's
statistics).

Each measurement is a fresh Python process, variants alternating round by round (this machine's
speed drifts), CPU seconds (user + system, the process and its children) and wall seconds:
medians over the rounds, and what each change saves as the median of its per-round differences.
Every variant first imports ``edsr_mlflow.cli``, so they differ only in what is named.

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
    "scikit-learn hidden": ("from edsr_mlflow import cli\nwith cli._hidden(('sklearn',)): import tensorflow\n"
                            "tensorflow.config.list_physical_devices('GPU')"),
    "cli (both hidden)": "from edsr_mlflow import cli; cli._import_tensorflow_quietly()",
    "train's imports, crops eager": "from edsr_mlflow import cli; cli._import_tensorflow_quietly(); import edsr_mlflow.workflows, edsr_mlflow.crops",
    "train's imports": "from edsr_mlflow import cli; cli._import_tensorflow_quietly(); import edsr_mlflow.workflows",
}
PAIRS = [("plain import tensorflow", "cli (both hidden)", "per TensorFlow start-up, both hidden"),
         ("scikit-learn hidden", "cli (both hidden)", "per TensorFlow start-up, matplotlib hidden too"),
         ("train's imports, crops eager", "train's imports", "per train or evaluate, crops (SciPy statistics) not imported")]
# Printed by each process: what it loaded of the hidden packages; both must still be importable
# after (found, not imported: importing them would cost what hiding them saved).
PROBE = ("\nimport importlib.util, sys\nassert all(importlib.util.find_spec(p) is not None for p in ('sklearn', 'matplotlib'))\n"
         "print(','.join(p for p in ('sklearn', 'matplotlib') if p in sys.modules) or 'neither')")

# And directly, in one process (short intervals, so little drift): the CPU seconds of importing,
# once TensorFlow is loaded the CLI's way, what it hid, in Keras' order.
HIDDEN_COSTS = ("matplotlib.pyplot", "sklearn.base")  # sklearn.base brings SciPy's statistics
DIRECT = ("import time\nfrom edsr_mlflow import cli\ncli._import_tensorflow_quietly()\ncosts = []\n"
          f"for name in {HIDDEN_COSTS!r}:\n"
          "    start = time.process_time(); __import__(name); costs.append(time.process_time() - start)\n"
          "print(' '.join(f'{c:.3f}' for c in costs))")


def measure(code: str) -> tuple[float, float, str]:
    """CPU seconds, wall seconds and stdout of ``python -c code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}\n{cpu_flags_line()}")
    measure(VARIANTS["plain import tensorflow"])  # warm the page cache for all
    times, direct = {name: [] for name in VARIANTS}, []
    for round_index in range(args.rounds):
        for name, code in VARIANTS.items():
            cpu, wall, loaded = measure(code + PROBE)
            times[name].append((cpu, wall))
            print(f"round {round_index + 1} {name:30s} CPU {cpu:5.2f} s  wall {wall:5.2f} s  loaded: {loaded}")
        direct.append([float(c) for c in measure(DIRECT)[2].split()])
        print(f"round {round_index + 1} hidden, imported after: " + ", ".join(f"{n} {c:.2f} s" for n, c in zip(HIDDEN_COSTS, direct[-1])))
    print("\nmedians:")
    medians = {name: (statistics.median(c for c, _ in t), statistics.median(w for _, w in t)) for name, t in times.items()}
    for name, (cpu, wall) in medians.items():
        print(f"  {name:30s} CPU {cpu:5.2f} s  wall {wall:5.2f} s")
    print("\nsaved, medians over the rounds of each round's difference (the two measured a few seconds apart):")
    for before, after, what in PAIRS:
        rounds = list(zip(times[before], times[after]))  # ((cpu, wall) before, (cpu, wall) after) per round
        cpu_saved = statistics.median(b[0] - a[0] for b, a in rounds)
        share = statistics.median(1 - a[0] / b[0] for b, a in rounds)
        wall_saved = statistics.median(b[1] - a[1] for b, a in rounds)
        rounds_faster = sum(a[0] < b[0] for b, a in rounds)
        print(f"  {what}: CPU {cpu_saved:.2f} s ({share:.0%}), wall {wall_saved:.2f} s; less CPU in {rounds_faster} of {len(rounds)} rounds")
    costs = [statistics.median(c) for c in zip(*direct)]
    print("  hidden, measured directly (CPU of importing each once TensorFlow is loaded, in this order, medians): "
          + ", ".join(f"{n} {c:.2f} s" for n, c in zip(HIDDEN_COSTS, costs)) + f"; {sum(costs):.2f} s in all")


if __name__ == "__main__":
    main()
