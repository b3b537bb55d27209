"""Step time and FLOP/s of float32, mixed_bfloat16 on oneDNN and mixed_bfloat16 under XLA, in one
process, rounds alternating, against the machine's plain-convolution ceiling.

1. The CPU flags that decide bfloat16 speed, and what ``precision=auto`` picks here.
2. Ceiling: a chain of 16 plain 3x3 convolutions (32 -> 32 channels, 16 x 32 x 32: the benchmark
   model's own layer shape and body depth; no bias, activation or residual), forward and
   backward, in float32 and in bfloat16, GFLOP/s.
3. The benchmark model (EDSR x2, 8 blocks, 32 filters, batch 16, LR patch 32, SunHays80) built
   three times from the same seed: float32; mixed_bfloat16 without XLA (oneDNN's kernels);
   mixed_bfloat16 with XLA. Each is warmed up (tracing), then trained ``--steps`` timed steps
   per round (from the end of one untimed step to the end of the last), the three in turn, for
   ``--rounds`` rounds, through the project's tf.data pipeline (round r reads the stream seeded
   r: other patches each round, the same for every mode).
   Reported per mode: median ms/step, training GFLOP/s (2 FLOPs per multiply-accumulate, the
   backward pass twice the forward) and its fraction of the float32 ceiling.
4. Quality: after the same steps on the same patches, Set5 x2 Y-PSNR of each (a check of
   bfloat16's cost; nothing is tuned on it).

    python benchmarks/precision_and_flops.py [--steps 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags_line, require_shared_data, step_benchmark_batches, step_benchmark_data, step_benchmark_model, timed_fit  # noqa: E402

MODES = (("float32", "float32", False), ("bf16", "mixed_bfloat16", False), ("bf16+xla", "mixed_bfloat16", True))


CEILING_DEPTH = 16  # the benchmark model's body: 8 residual blocks of two convolutions


def conv_ceiling_gflops(dtype: str, repeats: int = 5, forward_only: bool = False) -> float:
    """Forward + backward of a chain of ``CEILING_DEPTH`` plain 3x3 convolutions, 32 -> 32
    channels, 16 x 32 x 32 (the model's layer shape), no bias or activation, in ``dtype``: GFLOP/s.
    ``forward_only``: the forward alone, the check that the backward runs two convolutions per
    layer.

    A chain, not one layer: one convolution per call measured the call's overhead as much as the
    convolution (per convolution, a forward alone took 6.4 ms in a call of its own, 3.8 to 4.2 ms
    in a chain of 4 or 16), and the model beat that "ceiling" (x1.31). The loss and both
    gradients are fetched: asked for the kernel's gradient alone, TensorFlow prunes the forward
    (the mean's gradient needs no values) and the input's gradient, and times one convolution of
    the three the FLOP count assumes (an earlier version did, and overstated the ceiling ~3x)."""
    import tensorflow as tf

    x = tf.random.uniform([16, 32, 32, 32], dtype=tf.float32)
    kernels = [tf.Variable(tf.random.normal([3, 3, 32, 32], stddev=0.05)) for _ in range(CEILING_DEPTH)]

    def chain(x):
        y = tf.cast(x, dtype)
        for kernel in kernels:
            y = tf.nn.conv2d(y, tf.cast(kernel, dtype), 1, "SAME")
        return tf.reduce_mean(tf.cast(y, tf.float32))

    @tf.function
    def forward(x):
        return [chain(x)]

    @tf.function
    def forward_and_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = chain(x)
        return [loss, *tape.gradient(loss, [x, *kernels])]

    step = forward if forward_only else forward_and_backward

    def run_once() -> None:
        for tensor in step(x):
            tensor.numpy()

    for _ in range(2):
        run_once()
    start = time.perf_counter()
    for _ in range(repeats):
        run_once()
    seconds = (time.perf_counter() - start) / repeats
    return (1 if forward_only else 3) * CEILING_DEPTH * 2 * 16 * 32 * 32 * 9 * 32 * 32 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per mode and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per mode first (tracing)")
    args = parser.parse_args()

    from edsr_mlflow.evaluation import score_upscaler
    from edsr_mlflow.inference import model_upscaler
    from edsr_mlflow.metrics import mean_scores
    from edsr_mlflow.model import macs_per_lr_pixel

    print(cpu_flags_line())

    sr_data = step_benchmark_data(require_shared_data())

    def batches(seed: int):
        return step_benchmark_batches(sr_data, seed)

    models = {}
    for name, policy, xla in MODES:
        model = step_benchmark_model(policy, xla)
        model.fit(batches(0), steps_per_epoch=args.warmup, epochs=1, verbose=0)
        models[name] = model
    flops_per_step = 2 * 3 * macs_per_lr_pixel(models["float32"]) * 16 * 32**2

    # The ceiling is measured in every round too: a machine whose speed drifts within minutes
    # gives fractions only against a ceiling of the same moment.
    times, fractions = {name: [] for name, _, _ in MODES}, {name: [] for name, _, _ in MODES}
    ceilings = {"float32": [], "bfloat16": []}
    for round_number in range(1, args.rounds + 1):
        for dtype in ceilings:
            ceilings[dtype].append(conv_ceiling_gflops(dtype))
        for name, _, _ in MODES:
            stream = batches(round_number)
            times[name].append(timed_fit(models[name], stream, args.steps)[0])
            fractions[name].append(flops_per_step / times[name][-1] / 1e9 / ceilings["float32"][-1])
        print(f"round {round_number}: ceiling float32 {ceilings['float32'][-1]:.0f} GFLOP/s, bfloat16 {ceilings['bfloat16'][-1]:.0f}; "
              + ", ".join(f"{name} {1000 * times[name][-1]:.0f} ms/step ({fractions[name][-1]:.2f})" for name, _, _ in MODES))
    print(f"ceiling: {CEILING_DEPTH} plain 3x3 convs 32->32, forward+backward, median of rounds: float32 {statistics.median(ceilings['float32']):.1f} "
          f"GFLOP/s, bfloat16 {statistics.median(ceilings['bfloat16']):.1f} GFLOP/s")
    forward_ratios = [conv_ceiling_gflops("float32", forward_only=True) / conv_ceiling_gflops("float32") for _ in range(3)]
    print(f"check: forward+backward takes x{3 * statistics.median(forward_ratios):.2f} the time of the forward alone "
          "(three convolutions: about x3)")

    steps = args.warmup + args.rounds * (args.steps + 1)
    psnr = {name: mean_scores(score_upscaler(model_upscaler(models[name]), sr_data.val_pairs, 2))["psnr"] for name, _, _ in MODES}
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, policy, xla in MODES:
        gflops = flops_per_step / medians[name] / 1e9
        speedups = [f / t for f, t in zip(times["float32"], times[name])]
        print(f"{name:<9} {1000 * medians[name]:6.0f} ms/step (median of {args.rounds}), {gflops:6.1f} GFLOP/s = "
              f"{statistics.median(fractions[name]):.2f} of the float32 conv ceiling (median of rounds), speed-up vs float32 "
              f"x{statistics.median(speedups):.2f} (rounds {min(speedups):.2f}-{max(speedups):.2f}); "
              f"Set5 x2 {psnr[name]:.3f} dB after {steps} steps ({psnr[name] - psnr['float32']:+.3f} dB vs float32)")
    fastest = min(medians, key=medians.get)
    print(f"fastest here: {fastest}; float32 rounds {1000 * min(times['float32']):.0f}-{1000 * max(times['float32']):.0f} ms/step (drift)")


if __name__ == "__main__":
    main()
