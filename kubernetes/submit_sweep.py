"""Fans a sweep out over a Kubernetes cluster: one MLflow Projects run (a Kubernetes Job) per
configuration, all children of one parent run on the team's tracking server.

    python kubernetes/submit_sweep.py experiments/seed_study_x4.yaml --image REGISTRY/edsr-mlflow-base
    python kubernetes/submit_sweep.py experiments/cpu_study.yaml --image edsr-mlflow-base --dry-run

MLflow's Kubernetes backend needs a project with a Docker environment, so this writes a copy of
the project (``build/kubernetes-project``) whose MLproject names ``--image`` as ``docker_env``
instead of conda.yaml; MLflow builds the Job's image on top of it, pushes it to the
``repository-uri`` of ``kubernetes_config.json`` and creates the Job from ``job_template.yaml``.
Configurations that already FINISHED under the sweep are skipped, as with ``edsr-mlflow sweep``.
Evaluation on benchmarks is not part of the Job: run ``edsr-mlflow evaluate`` (or the
``evaluate`` entry point) on the finished runs, then ``compare --parent-run-id``.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Copied as they are; MLproject is rewritten with docker_env.
COPIED_FILES = ("pyproject.toml", "README.md", "edsr_mlflow", "experiments")


def docker_project(image: str, out_dir: Path, root: Path = ROOT) -> Path:
    """A copy of the project whose MLproject runs in ``image`` (``docker_env``), entry points unchanged."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for name in COPIED_FILES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, out_dir / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
        else:
            shutil.copy2(source, out_dir / name)
    spec = yaml.safe_load((root / "MLproject").read_text())
    spec.pop("conda_env", None)
    spec["docker_env"] = {"image": image}
    (out_dir / "MLproject").write_text(yaml.safe_dump(spec, sort_keys=False, width=120))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", help="grid file, e.g. experiments/seed_study_x4.yaml")
    parser.add_argument("--image", required=True, help="base image with the dependencies (kubernetes/Dockerfile)")
    parser.add_argument("--backend-config", default=str(ROOT / "kubernetes" / "kubernetes_config.json"))
    parser.add_argument("--project-dir", default=str(ROOT / "build" / "kubernetes-project"))
    parser.add_argument("--dry-run", action="store_true", help="write the project copy, print the runs, submit nothing")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))  # run from a checkout, without installing the package
    from edsr_mlflow import grid

    definition = grid.load_sweep(args.grid)
    project = docker_project(args.image, Path(args.project_dir))
    print(f"project copy with docker_env {args.image}: {project}")
    if args.dry_run:
        for config in definition.configs:
            params = " ".join(f"-P {k}={shlex.quote(str(v))}" for k, v in config.as_params().items())
            print(f"mlflow run {project} -e train --backend kubernetes --backend-config {args.backend_config} "
                  f"--experiment-name {definition.experiment} {params}")
        return 0
    return _submit(definition, project, args.backend_config)


def _submit(definition, project: Path, backend_config: str) -> int:
    import mlflow

    from edsr_mlflow import grid, schema, sweep, tracking

    params = {"grid_name": definition.name, "configurations": len(definition.configs), "backend": "kubernetes"}
    with tracking.sweep_parent_run(definition.name, definition.experiment, params) as parent:
        experiment_id = parent.info.experiment_id
        finished = sweep.finished_configurations(definition.name, experiment_id)
        submitted = []
        for config in definition.configs:
            if grid.config_key(config.as_params()) in finished:
                print(f"  skipped   {config.run_name} seed {config.seed} (finished earlier)")
                continue
            run = mlflow.projects.run(
                str(project), entry_point="train", parameters=config.as_params(), backend="kubernetes",
                backend_config=backend_config, experiment_id=experiment_id, synchronous=False,
            )
            mlflow.MlflowClient().set_tag(run.run_id, schema.PARENT_RUN_TAG, parent.info.run_id)
            print(f"  submitted {config.run_name} seed {config.seed}: run {run.run_id}")
            submitted.append(run)
        failed = sum(not run.wait() for run in submitted)  # the parent stays open until every Job ends
    print(f"{len(submitted)} submitted, {failed} failed; compare: edsr-mlflow compare --parent-run-id {parent.info.run_id}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
