"""The Kubernetes fan-out's files are what MLflow's Kubernetes backend reads (no cluster is
reachable here: this checks the files and the project copy, not a Job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow.projects import _project_spec

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "kubernetes"


def test_backend_config_names_what_mlflow_requires():
    config = json.loads((KUBE / "kubernetes_config.json").read_text())
    assert {"kube-context", "repository-uri", "kube-job-template-path"} <= set(config)
    assert (ROOT / config["kube-job-template-path"]).is_file()


def test_job_template_is_a_job_with_one_container():
    job = yaml.safe_load((KUBE / "job_template.yaml").read_text())
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "resources" in container


def test_dry_run_writes_a_docker_project_and_one_run_per_configuration(tmp_path):
    project_dir = tmp_path / "project"
    done = subprocess.run(
        [sys.executable, str(KUBE / "submit_sweep.py"), str(ROOT / "experiments" / "cpu_study.yaml"),
         "--image", "edsr-mlflow-base:test", "--project-dir", str(project_dir), "--dry-run"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    runs = [line for line in done.stdout.splitlines() if line.startswith("mlflow run ")]
    assert len(runs) == 12 and all("--backend kubernetes" in r and "-e train" in r for r in runs)

    copy, original = _project_spec.load_project(str(project_dir)), _project_spec.load_project(str(ROOT))
    assert copy.docker_env == {"image": "edsr-mlflow-base:test"} and copy.env_type == "docker_env"
    assert set(copy._entry_points) == set(original._entry_points)
    for name, entry in original._entry_points.items():
        assert copy._entry_points[name].command == entry.command
        assert copy._entry_points[name].parameters.keys() == entry.parameters.keys()
    assert (project_dir / "edsr_mlflow" / "cli.py").is_file()
