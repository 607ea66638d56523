"""The deploy files, checked by their ecosystems' own validators (no Docker engine or cluster
runs here): the compose file against the compose-spec schema that check-jsonschema ships, the
Kubernetes manifests against the API schemas that kubernetes-validate ships, the Dockerfile
through BuildKit's parser (the `dockerfile` package); and every command they run exists in
the CLI with the options they pass."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import dockerfile
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from common.cli import cli
from workers.celery_app import QUEUES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30.0"
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")
# KEDA's CRDs ship no schema here; this holds the fields the scaler reads.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"]},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "redis"},
                            "metadata": {
                                "type": "object",
                                "required": ["address", "listName", "listLength"],
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def assert_cli_accepts(args: list[str]) -> None:
    """The command exists and takes these options (click parses them before --help exits)."""
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, f"scheduled-images {' '.join(args)}: {result.output}"


def k8s_documents() -> list[tuple[str, dict]]:
    return [
        (path.name, doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return spec["containers"]


# -- compose -------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["api"]["restart"] = ["always"]
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0


def test_compose_runs_every_component_with_commands_the_cli_has() -> None:
    services = compose()["services"]
    ours = {name: s for name, s in services.items() if s.get("image", "").startswith("scheduled")}
    assert {"migrate", "api", "beat", "flower"} <= set(ours)
    assert {f"worker-{q}" for q in QUEUES} <= set(ours)
    assert {"postgres", "redis", "prometheus"} <= set(services)
    for name, service in ours.items():
        assert_cli_accepts(service["command"])
        if name.startswith("worker-"):
            queues = service["command"][service["command"].index("--queues") + 1]
            assert queues == name.removeprefix("worker-")
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for source in ("./prometheus/prometheus.yml", "./grafana/scheduled-images.json"):
        assert (DEPLOY / source).exists()


def test_prometheus_scrapes_the_api_and_every_pool() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target.split(":")[0]
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert {"api", "beat", *(f"worker-{q}" for q in QUEUES)} <= targets
    assert targets <= set(compose()["services"])


# -- Kubernetes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, doc",
    [(n, d) for n, d in k8s_documents() if not d["apiVersion"].startswith(("keda.", "kustom"))],
    ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"] + ":" + v["kind"],
)
def test_kubernetes_manifest_matches_the_api_schema(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_kubernetes_validator_rejects_a_broken_manifest() -> None:
    [deployment, *_] = by_kind("Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_keda_scaled_objects_scale_each_pool_on_its_queue() -> None:
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    scaled = by_kind("ScaledObject")
    validator = Draft202012Validator(SCALED_OBJECT)
    queues = set()
    for doc in scaled:
        errors = [e.message for e in validator.iter_errors(doc)]
        assert errors == [], errors
        target = deployments[doc["spec"]["scaleTargetRef"]["name"]]
        [trigger] = doc["spec"]["triggers"]
        queue = trigger["metadata"]["listName"]
        args = containers(target)[0]["args"]
        assert args[args.index("--queues") + 1] == queue
        assert doc["spec"]["minReplicaCount"] <= doc["spec"]["maxReplicaCount"]
        queues.add(queue)
    assert queues == set(QUEUES)
    auth = {d["metadata"]["name"] for d in by_kind("TriggerAuthentication")}
    refs = {t["authenticationRef"]["name"] for d in scaled for t in d["spec"]["triggers"]}
    assert refs <= auth


def test_kubernetes_runs_every_component_with_commands_the_cli_has() -> None:
    workloads = by_kind("Deployment") + by_kind("Job")
    for doc in workloads:
        for container in containers(doc):
            assert container["image"].startswith("scheduled-images")
            assert_cli_accepts(container["args"])
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    pools = [d for d in by_kind("Deployment") if "worker" in d["metadata"]["name"]]
    assert len(pools) == len(QUEUES)

    [beat] = [d for d in by_kind("Deployment") if d["metadata"]["name"].endswith("-beat")]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"

    [api] = [d for d in by_kind("Deployment") if d["metadata"]["name"].endswith("-api")]
    [container] = containers(api)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    [job] = by_kind("Job")
    assert containers(job)[0]["args"] == ["db", "upgrade"]


def test_settings_in_kubernetes_are_settings_the_service_reads() -> None:
    from common.settings import SETTINGS

    known = {s.name for s in SETTINGS}
    for doc in by_kind("ConfigMap"):
        assert set(doc["data"]) <= known
    secret_keys = {k for d in by_kind("Secret") for k in d.get("stringData", {})}
    assert secret_keys - {"password"} <= known
    env = set(compose()["x-service"]["environment"])
    assert env - {"PROMETHEUS_MULTIPROC_DIR"} <= known


def test_kustomization_lists_files_that_exist() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / "k8s" / resource).exists(), resource


# -- Dockerfile and dashboard --------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_runs_the_cli() -> None:
    commands = dockerfile.parse_file(str(DEPLOY / "Dockerfile"))
    stages = [c for c in commands if c.cmd == "FROM"]
    assert len(stages) >= 2
    final = commands[commands.index(stages[-1]) :]
    [user] = [c for c in final if c.cmd == "USER"]
    assert user.value[0].split(":")[0] not in ("0", "root")
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final)
    [entrypoint] = [c for c in final if c.cmd == "ENTRYPOINT"]
    assert entrypoint.value == ("scheduled-images",)
    [command] = [c for c in final if c.cmd == "CMD"]
    assert_cli_accepts(list(command.value))
    root = DEPLOY.parent
    for copy in (c for c in commands if c.cmd == "COPY" and not c.flags):
        for source in copy.value[:-1]:
            assert (root / source).exists(), source


def test_grafana_dashboard_plots_metrics_the_service_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "scheduled-images.json").read_text())
    modules = ("common/metrics.py", "scheduler/metrics.py", "workers/metrics.py", "api/__init__.py")
    source = "".join((DEPLOY.parent / module).read_text() for module in modules)
    exported = set(re.findall(r'"(si_[a-z_]+)"', source))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"\bsi_[a-z_]+", target["expr"]):
                base = re.sub(r"_(bucket|count|sum|total)$", "", name)
                assert name in exported or base in exported or f"{base}_total" in exported, name
