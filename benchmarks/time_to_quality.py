"""Time to quality: Set5 x2 Y-PSNR gain over bicubic after a fixed training-time budget.

The issue's setting: SunHays80 training images, x2, 8 blocks, 32 filters, batch 16, LR patch
32, validation on Set5, ``time_budget_s`` seconds of training (validation excluded), through
the full pipeline (tf.data input, MLflow tracking to a temporary SQLite store).

    python benchmarks/time_to_quality.py [--budget 300] [--learning-rate ...] [--precision ...]
"""

from __future__ import annotations

import argparse
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import require_shared_data, temporary_tracking_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the package default")
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args()

    shared = require_shared_data()
    folder = temporary_tracking_store()
    from edsr_mlflow.config import TrainConfig
    from edsr_mlflow.workflows import train_run

    overrides = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
    config = TrainConfig(
        dataset=str(shared / "SunHays80"), val_dataset=str(shared / "Set5"), scale=2, blocks=8, filters=32,
        # One epoch longer than the budget allows: the budget ends training, the learning
        # rate halves at fixed fractions of the budget, and Set5 is scored once at the end.
        batch_size=16, patch_size=32, epochs=1, steps_per_epoch=1_000_000,
        precision=args.precision, time_budget_s=args.budget, **overrides,
    )
    outcome = train_run(config, checkpoint_root=folder / "checkpoints", verbose=2)
    history = outcome.result.state.history
    steps = sum(h["steps"] for h in history)
    print(f"time to quality ({args.budget:.0f} s, lr {config.learning_rate}, {config.precision}): "
          f"Set5 x2 Y-PSNR {outcome.result.final_val_psnr:.3f} dB, bicubic {outcome.result.bicubic_val_psnr:.3f} dB, "
          f"gain {outcome.final_metrics['val_psnr_gain']:+.3f} dB after {steps:.0f} steps "
          f"({1000 * outcome.result.state.train_time_s / steps:.0f} ms/step)")


if __name__ == "__main__":
    main()
