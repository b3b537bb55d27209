"""Time to quality: x2 Y-PSNR after a fixed training-time budget.

The issue's setting: SunHays80 training images, x2, 8 blocks, 32 filters, batch 16, LR patch
32, ``time_budget_s`` seconds of training (validation excluded), through the full pipeline
(tf.data input, MLflow tracking to a temporary SQLite store). Validated on the hold-out of the
training photos (every 10th SunHays80 photo: what a learning rate or schedule may be chosen
on); tested once, at the end, on Set5, Set14 and BSD68 (never used to choose anything).

    python benchmarks/time_to_quality.py [--budget 300] [--learning-rate ...] [--precision ...]
        [--batch-size 16] [--patch-size 32] [--validate-every STEPS]
"""

from __future__ import annotations

import argparse
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import cpu_flags_line, require_shared_data, temporary_tracking_store  # noqa: E402

TEST_SETS = ("set5", "set14", "bsd68")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the package default")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=32, help="LR patch side")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--validate-every", type=int, default=0,
                        help="steps between hold-out scores, printed as a curve (0: only at the end)")
    args = parser.parse_args()

    shared = require_shared_data()
    with temporary_tracking_store() as folder:
        from edsr_mlflow.config import TrainConfig
        from edsr_mlflow.workflows import evaluate_model, train_run

        print(cpu_flags_line(), flush=True)
        overrides = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
        config = TrainConfig(
            dataset=str(shared / "SunHays80"), val_dataset="", scale=2, blocks=8, filters=32,
            # More steps than the budget allows: the budget ends training, the learning rate halves
            # at fixed fractions of the budget, and the hold-out is scored at the end of each epoch
            # (one epoch unless --validate-every; validation is outside the budget).
            batch_size=args.batch_size, patch_size=args.patch_size,
            epochs=1_000_000 // (args.validate_every or 1_000_000), steps_per_epoch=args.validate_every or 1_000_000,
            precision=args.precision, time_budget_s=args.budget, seed=args.seed, **overrides,
        )
        outcome = train_run(config, checkpoint_root=folder / "checkpoints", verbose=2)
        history = outcome.result.state.history
        steps = sum(h["steps"] for h in history)
        if args.validate_every:
            done = 0
            for h in history:
                done += h["steps"]
                print(f"after {done:6.0f} steps: training loss {h['train_loss']:9.3f}, hold-out {h['val_psnr']:.3f} dB, "
                      f"learning rate {h['learning_rate']:.2e}")
        _, evaluations = evaluate_model(f"runs:/{outcome.run_id}/model", list(TEST_SETS), benchmark_root=str(shared))
        tests = ", ".join(f"{e.dataset} {e.scores.psnr:.3f} dB ({e.scores.gain:+.3f})" for e in evaluations)
        precision = f"{outcome.precision.policy}{' + XLA' if outcome.precision.xla else ''}"
        print(f"time to quality ({args.budget:.0f} s, lr {config.learning_rate}, "
              f"batch {config.batch_size} x {config.patch_size}^2, {precision}): "
              f"hold-out {outcome.result.final_val_psnr:.3f} dB ({outcome.final_metrics['val_psnr_gain']:+.3f} over bicubic) "
              f"after {steps:.0f} steps ({1000 * outcome.result.state.train_time_s / steps:.0f} ms/step); tests: {tests}")


if __name__ == "__main__":
    main()
