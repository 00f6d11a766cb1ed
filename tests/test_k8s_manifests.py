"""deploy/k8s: the manifests parse and agree with each other, with the policies and with the
Prometheus rules. No cluster and no kubectl needed: plain ``yaml.safe_load_all``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
POLICIES = ROOT / "deploy" / "policies"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
ENV_NAMES = {
    "SLA_BROKER",
    "SLA_POLICIES",
    "SLA_STORE",
    "SLA_DATA_DIR",
    "SLA_METRICS_PORT",
    "SLA_PARTITIONS",
}

Doc = dict[str, Any]


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture(scope="module")
def kustomization() -> Doc:
    (doc,) = load(K8S / "kustomization.yaml")
    return doc


@pytest.fixture(scope="module")
def objects() -> dict[str, Doc]:
    """Every object of deploy/k8s (listed in kustomization or optional), by kind."""
    out: dict[str, Doc] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load(path):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path.name
            assert doc["metadata"].get("name"), path.name
            assert doc["kind"] not in out, f"two {doc['kind']} objects"
            out[doc["kind"]] = doc
    return out


@pytest.fixture(scope="module")
def worker(objects: dict[str, Doc]) -> Doc:
    (container,) = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_kustomization_lists_existing_files(kustomization: Doc) -> None:
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    for generator in kustomization["configMapGenerator"]:
        for file in generator["files"]:
            assert (K8S / file).is_file(), f"configMapGenerator file {file} does not exist"


def test_every_policy_is_deployed(kustomization: Doc) -> None:
    listed = {(K8S / f).resolve() for g in kustomization["configMapGenerator"] for f in g["files"]}
    for path in sorted(POLICIES.glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text())
        if path.stem.endswith(".example") or not isinstance(doc, dict) or "policy" not in doc:
            continue
        assert path.resolve() in listed, (
            f"{path.name} is a policy but not in the configMapGenerator of "
            "deploy/k8s/kustomization.yaml: add it there"
        )


def test_worker_runs_sla_monitor_worker(worker: Doc, objects: dict[str, Doc]) -> None:
    command = [*worker.get("command", []), *worker.get("args", [])]
    assert command[:2] == ["sla-monitor", "worker"]
    assert objects["StatefulSet"]["spec"]["replicas"] <= int(env_of(worker)["SLA_PARTITIONS"])


def test_worker_settings_come_from_the_environment(worker: Doc) -> None:
    env = env_of(worker)
    assert env.keys() >= ENV_NAMES
    assert urlparse(env["SLA_BROKER"]).scheme == "kafka"
    # Every variable is one the worker's settings actually read.
    from monitor.live.config import ENV_PREFIX, Settings

    known = {ENV_PREFIX + f.upper() for f in Settings.__dataclass_fields__}
    assert {k for k in env if k.startswith(ENV_PREFIX)} <= known


def test_metrics_port_is_exposed_and_scraped(worker: Doc, objects: dict[str, Doc]) -> None:
    port = int(env_of(worker)["SLA_METRICS_PORT"])
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports["metrics"] == port

    annotations = objects["StatefulSet"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"

    (service_port,) = objects["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in ("metrics", port)
    (endpoint,) = objects["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"]["port"] in ("metrics", port)


def test_rocksdb_store_is_on_the_persistent_volume(worker: Doc, objects: dict[str, Doc]) -> None:
    spec = objects["StatefulSet"]["spec"]
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    env = env_of(worker)
    assert urlparse(env["SLA_STORE"]).scheme == "rocksdb"
    data_dir = env["SLA_DATA_DIR"]
    mounts = [m for m in worker["volumeMounts"] if m["name"] in claims]
    assert any(Path(data_dir).is_relative_to(m["mountPath"]) for m in mounts), (
        f"SLA_DATA_DIR {data_dir} is not on a volume claim ({claims})"
    )


def test_policies_are_mounted_from_the_generated_configmap(
    worker: Doc, objects: dict[str, Doc], kustomization: Doc
) -> None:
    (generator,) = kustomization["configMapGenerator"]
    volumes = objects["StatefulSet"]["spec"]["template"]["spec"]["volumes"]
    from_map = {
        v["name"] for v in volumes if v.get("configMap", {}).get("name") == generator["name"]
    }
    mounts = {m["mountPath"] for m in worker["volumeMounts"] if m["name"] in from_map}
    assert env_of(worker)["SLA_POLICIES"] in mounts


def test_selectors_match_the_pods(objects: dict[str, Doc]) -> None:
    spec = objects["StatefulSet"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    selectors = [
        spec["selector"]["matchLabels"],
        objects["Service"]["spec"]["selector"],
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        objects["PodMonitor"]["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    assert spec["serviceName"] == objects["Service"]["metadata"]["name"]


def test_podmonitor_job_label_is_the_job_the_alerts_select(objects: dict[str, Doc]) -> None:
    pod_labels = objects["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    job = pod_labels[objects["PodMonitor"]["spec"]["jobLabel"]]
    assert f'job="{job}"' in RULES.read_text()
