"""deploy/ and the Dockerfile: valid against Kubernetes' schemas and hadolint, and in step with gunicorn."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from appfactory import config

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy").glob("*.yaml"))


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed (requirements-dev.txt)"
    return found


def test_every_manifest_is_valid_kubernetes_strictly():
    kinds = {yaml.safe_load(path.read_text())["kind"] for path in MANIFESTS}
    assert kinds == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    done = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_passes_hadolint():
    done = subprocess.run(
        [_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_deployment_probes_the_health_endpoints_and_outlasts_gunicorns_shutdown():
    deployment = yaml.safe_load((ROOT / "deploy" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # gunicorn waits AI_TIMEOUT_S + a margin for the generations in flight
    margin = re.search(
        r'^graceful_timeout = int\(_settings\["AI_TIMEOUT_S"\]\) \+ (\d+)$',
        (ROOT / "gunicorn.conf.py").read_text(),
        flags=re.M,
    )
    configmap = yaml.safe_load((ROOT / "deploy" / "configmap.yaml").read_text())["data"]
    graceful = int(config.load(configmap)["AI_TIMEOUT_S"]) + int(margin.group(1))
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > graceful + pause
    sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert sources == {"aigen"}  # the ConfigMap and the Secret


def test_the_configmap_is_valid_and_trusts_no_proxy():
    data = yaml.safe_load((ROOT / "deploy" / "configmap.yaml").read_text())["data"]
    settings = config.load(data)  # every value one the service starts with
    # A hop count believes X-Forwarded-For from any peer: budgets and log addresses would be the caller's
    # choice. Behind an ingress, operators list its network (the comment above the value says how).
    assert settings["TRUSTED_PROXIES"] == 0
    assert settings["OPS_ALLOW_NETWORKS"] == config.load({})["OPS_ALLOW_NETWORKS"]


def _gunicorn_setting(name: str) -> int:
    """A whole-number setting written as a literal in gunicorn.conf.py."""
    found = re.search(rf"^{name} = (\d+)$", (ROOT / "gunicorn.conf.py").read_text(), flags=re.M)
    assert found, name
    return int(found.group(1))
