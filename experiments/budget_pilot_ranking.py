"""Does the ranking of the upsamplers at 2,000 steps hold at 6,000? (cpu_study_v2's budget pilot)

Reads the study's FINISHED 2-block float32 runs of 2,000 and 6,000 steps from the tracking store
and writes, per metric, the configurations ranked at each budget (best first), for every seed
that has all of them at both budgets and for the mean over those seeds, with Kendall's tau
between the two rankings (+1: the same order; -1: reversed) and how often random orders of as
many configurations reach that |tau| (exact, over every permutation). Whether an order is
resolved at all: for each budget, each adjacent pair of the mean ranking, paired by seed, with
its 95 % t-interval; an order is resolved only where every adjacent interval excludes 0.

    cd experiments/results/cpu_study_v2 && MLFLOW_TRACKING_URI=sqlite:///mlflow.db \\
        python ../../budget_pilot_ranking.py > comparison_budget/ranking.md
"""

from __future__ import annotations

import itertools

import mlflow
import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from edsr_mlflow.findings import split_runs, tidy_runs
from edsr_mlflow.statistics import labelled, t_interval

EXPERIMENT = "edsr-cpu-study-v2"
BUDGETS = (2000, 6000)
METRICS = {"val_psnr": "hold-out", "eval_set5_psnr": "Set5", "eval_set14_psnr": "Set14", "eval_bsd68_psnr": "BSD68"}


def pilot_runs() -> pd.DataFrame:
    """One row per run compare would use (its exclusions: status, missing metrics or params):
    configuration (run name), steps, seed and the metrics, 2-block float32 runs of either budget."""
    runs = labelled(split_runs(tidy_runs(mlflow.search_runs(experiment_names=[EXPERIMENT])))[0])
    runs = runs[(runs["blocks"] == 2) & (runs["precision"] == "float32") & runs["total_steps"].isin(BUDGETS)]
    return pd.DataFrame({"configuration": runs["label"], "steps": runs["total_steps"].astype(int), "seed": runs["seed"].astype(int),
                         **{metric: runs[metric] for metric in METRICS}})


def complete_seeds(table: pd.DataFrame) -> list[int]:
    """Seeds with every configuration at every budget."""
    configurations = table["configuration"].nunique()
    counts = table.groupby("seed")[["configuration", "steps"]].apply(lambda t: len(t.drop_duplicates()))
    return sorted(int(seed) for seed, n in counts.items() if n == configurations * len(BUDGETS))


def ranking_lines(scores: pd.DataFrame, label: str) -> list[str]:
    """Markdown rows for one seed (or the mean): each budget's order, and Kendall's tau."""
    tau = kendalltau(scores[BUDGETS[0]], scores[BUDGETS[1]]).statistic

    def order(steps: int) -> str:
        ranked = scores[steps].sort_values(ascending=False)
        return " > ".join(f"{name.removeprefix('edsr_x4_b2_f32_')} {value:.3f}" for name, value in ranked.items())

    return [f"| {label} | {BUDGETS[0]:,} | {order(BUDGETS[0])} | |", f"| {label} | {BUDGETS[1]:,} | {order(BUDGETS[1])} | {tau:+.2f} |"]


def random_order_probability(tau: float, n: int) -> float:
    """P(|Kendall tau| >= |tau|) between a fixed order of n items and a uniformly random one."""
    taus = [kendalltau(range(n), order).statistic for order in itertools.permutations(range(n))]
    return float(np.mean(np.abs(taus) >= abs(tau) - 1e-12))


def adjacent_pairs(by_seed: pd.DataFrame, steps: int) -> list[str]:
    """Markdown rows: each adjacent pair of the mean ranking at ``steps``, paired by seed."""
    scores = by_seed[steps].unstack("configuration")  # seeds x configurations
    ranked = list(scores.mean().sort_values(ascending=False).index)
    rows = []
    for upper, lower in zip(ranked, ranked[1:]):
        mean, half = t_interval((scores[upper] - scores[lower]).dropna())
        resolved = "yes" if half == half and mean - half > 0 else "no"
        rows.append(f"| {steps:,} | {upper.removeprefix('edsr_x4_b2_f32_')} - {lower.removeprefix('edsr_x4_b2_f32_')} | "
                    f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}] | {resolved} |")
    return rows


def main() -> None:
    table = pilot_runs()
    seeds = complete_seeds(table)
    table = table[table["seed"].isin(seeds)]
    print(f"# Budget pilot: 2-block rankings at {BUDGETS[0]:,} and {BUDGETS[1]:,} steps\n")
    print(f"Seeds with all {table['configuration'].nunique()} configurations at both budgets: {', '.join(map(str, seeds))}.\n")
    for metric, label in METRICS.items():
        print(f"## {label} (`{metric}`, dB)\n\n| seed | steps | ranking, best first | Kendall tau |\n|---|---|---|---|")
        by_seed = table.pivot_table(index=["seed", "configuration"], columns="steps", values=metric)
        for seed in seeds:
            print("\n".join(ranking_lines(by_seed.loc[seed], str(seed))))
        mean = by_seed.groupby("configuration").mean()
        print("\n".join(ranking_lines(mean, "mean")) + "\n")
        tau = kendalltau(mean[BUDGETS[0]], mean[BUDGETS[1]]).statistic
        print(f"Random orders of {len(mean)} reach |tau| >= {abs(tau):.2f} with probability "
              f"{random_order_probability(tau, len(mean)):.2f}. Adjacent pairs of the mean ranking, paired by seed "
              "(95 % t-interval; resolved: it excludes 0):\n")
        print("| steps | pair | difference (dB) | resolved |\n|---|---|---|---|")
        print("\n".join(row for steps in BUDGETS for row in adjacent_pairs(by_seed, steps)) + "\n")


if __name__ == "__main__":
    main()
