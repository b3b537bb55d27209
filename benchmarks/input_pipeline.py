"""Is the input pipeline ever the bottleneck? Training steps/s fed by the real tf.data pipeline
(SunHays80, x2, random crops + flips/rotations) versus the same model fed one in-memory batch
over and over. Rounds alternate so drift on a shared machine hits both sides alike.

    python benchmarks/input_pipeline.py [--steps 60] [--rounds 3] [--blocks 8] [--filters 32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_shared_data  # noqa: E402


def steps_per_second(model, dataset, steps: int) -> float:
    """Steps/s of the second of two epochs: the first pays for tracing and filling buffers."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = EpochTimer()
    model.fit(dataset, steps_per_epoch=steps, epochs=2, verbose=0, callbacks=[timer])
    return steps / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=32)
    args = parser.parse_args()

    import tensorflow as tf

    from edsr_mlflow import data, training
    from edsr_mlflow.config import TrainConfig

    shared = require_shared_data()
    config = TrainConfig(dataset=str(shared / "SunHays80"), scale=2, blocks=args.blocks, filters=args.filters,
                         batch_size=args.batch_size, patch_size=args.patch_size)
    sr_data = data.load_sr_data(config.dataset, config.scale, config.patch_size, val_dataset=str(shared / "Set5"))
    pipeline = data.training_batches(sr_data.train_images, scale=2, patch_size=config.patch_size,
                                     batch_size=config.batch_size, seed=config.seed)
    lr_batch, hr_batch = next(iter(pipeline))
    synthetic = tf.data.Dataset.from_tensors((lr_batch, hr_batch)).repeat()
    model = training.build_model(config)

    real, fake = [], []
    for _ in range(args.rounds):
        real.append(steps_per_second(model, pipeline, args.steps))
        fake.append(steps_per_second(model, synthetic, args.steps))
    real_rate, fake_rate = sorted(real)[len(real) // 2], sorted(fake)[len(fake) // 2]
    print(f"input pipeline: {real_rate:.2f} steps/s with the real pipeline, {fake_rate:.2f} steps/s with an in-memory batch "
          f"(median of {args.rounds} rounds of {args.steps} steps): ratio {real_rate / fake_rate:.3f}")
    print("rounds real:", " ".join(f"{r:.2f}" for r in real), "| synthetic:", " ".join(f"{r:.2f}" for r in fake))


if __name__ == "__main__":
    main()
