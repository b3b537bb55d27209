"""Training throughput against the machine's measured peak, and mixed_bfloat16 against float32.

1. Peak: a plain 3x3 convolution (64 -> 64 channels, 4 x 128 x 128) timed alone, GFLOP/s.
2. Achieved: training GFLOP/s of EDSR (8 blocks, 32 filters, x2, batch 16, LR patch 32) on
   SunHays80, counting 2 FLOPs per multiply-accumulate and a backward pass of twice the forward.
3. Precision: the same number of steps in float32 and in mixed_bfloat16 (same seed, same
   patches), step time and Set5 Y-PSNR afterwards.

    python benchmarks/precision_and_flops.py [--steps 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_shared_data  # noqa: E402


def peak_conv_gflops(repeats: int = 20) -> float:
    import tensorflow as tf

    x = tf.random.uniform([4, 128, 128, 64])
    kernel = tf.random.uniform([3, 3, 64, 64])
    conv = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"))
    conv(x).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        conv(x).numpy()
    seconds = (time.perf_counter() - start) / repeats
    return 2 * 4 * 128 * 128 * 9 * 64 * 64 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    from edsr_mlflow import data, training
    from edsr_mlflow.config import TrainConfig
    from edsr_mlflow.model import macs_per_lr_pixel

    shared = require_shared_data()
    sr_data = data.load_sr_data(str(shared / "SunHays80"), 2, 32, val_dataset=str(shared / "Set5"))
    peak = peak_conv_gflops()
    print(f"peak: plain 3x3 conv 64->64 at {peak:.1f} GFLOP/s")
    results = {}
    for precision in ("float32", "mixed_bfloat16"):
        config = TrainConfig(dataset="unused", scale=2, blocks=8, filters=32, batch_size=16, patch_size=32, epochs=1,
                             steps_per_epoch=args.steps, learning_rate=1e-3, precision=precision)
        model = training.build_model(config)
        result = training.train(config, model, sr_data, Path(tempfile.mkdtemp()), verbose=0)
        epoch = result.state.history[-1]
        step_s = epoch["step_time_ms"] / 1000
        flops_per_step = 2 * 3 * macs_per_lr_pixel(model) * config.batch_size * config.patch_size**2
        results[precision] = (step_s, epoch["val_psnr"])
        print(f"{precision}: {1000 * step_s:.0f} ms/step (first step's tracing included), {flops_per_step / step_s / 1e9:.1f} GFLOP/s "
              f"({100 * flops_per_step / step_s / 1e9 / peak:.0f} % of peak), Set5 x2 Y-PSNR after {args.steps} steps "
              f"{epoch['val_psnr']:.3f} dB (bicubic {result.bicubic_val_psnr:.3f})")
    (t32, p32), (t16, p16) = results["float32"], results["mixed_bfloat16"]
    print(f"mixed_bfloat16 vs float32: speed-up x{t32 / t16:.2f}, PSNR difference {p16 - p32:+.3f} dB after the same {args.steps} steps")


if __name__ == "__main__":
    main()
