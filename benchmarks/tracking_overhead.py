"""What does MLflow tracking cost? The same short training run, with everything logged
(params, datasets, per-epoch metrics, system metrics, sample images, the model) and with
tracking disabled (the same data, model, training loop and checkpoints, no MLflow at all).
Rounds alternate so drift on a shared machine hits both sides alike.

    python benchmarks/tracking_overhead.py [--epochs 3] [--steps 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_shared_data, temporary_tracking_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from edsr_mlflow import data, training
    from edsr_mlflow.config import TrainConfig
    from edsr_mlflow.workflows import train_run

    shared = require_shared_data()
    with temporary_tracking_store() as folder:
        config = TrainConfig(dataset=str(shared / "SunHays80"), val_dataset=str(shared / "Set5"), scale=2, blocks=8,
                             filters=32, batch_size=16, patch_size=32, epochs=args.epochs, steps_per_epoch=args.steps,
                             learning_rate=1e-3)

        def untracked(config=config) -> float:
            start = time.perf_counter()
            sr_data = data.load_sr_data(config.dataset, config.scale, config.patch_size, val_dataset=config.val_dataset)
            training.train(config, training.build_model(config), sr_data, Path(tempfile.mkdtemp()), verbose=0)
            return time.perf_counter() - start

        def tracked() -> float:
            start = time.perf_counter()
            train_run(config, checkpoint_root=folder / "checkpoints", verbose=0)
            return time.perf_counter() - start

        untracked(TrainConfig(**{**config.as_params(), "epochs": 1, "steps_per_epoch": 3}))  # warm file and kernel caches
        with_tracking, without = [], []
        for _ in range(args.rounds):
            without.append(untracked())
            with_tracking.append(tracked())
        best_with, best_without = min(with_tracking), min(without)
        print(f"tracking overhead: {best_with:.1f} s with MLflow, {best_without:.1f} s without "
              f"({args.epochs} epochs x {args.steps} steps, best of {args.rounds}): "
              f"{100 * (best_with / best_without - 1):+.1f} %")
        print("rounds with:", " ".join(f"{t:.1f}" for t in with_tracking), "| without:", " ".join(f"{t:.1f}" for t in without))


if __name__ == "__main__":
    main()
