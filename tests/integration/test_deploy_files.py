"""The deploy files, checked by their ecosystems' own validators (no Docker engine or cluster
runs here): the compose file against the compose-spec schema that check-jsonschema ships, the
Kubernetes manifests against the API schemas that kubernetes-validate ships, the Dockerfile
through BuildKit's parser (the `dockerfile` package); and every command they run exists in
the CLI with the options they pass."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dockerfile
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from scheduled_images.cli import cli
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


#: The processes that call the cloud (server lookups, Keystone, images): only they get OS_*.
CLOUD_CALLERS = {"api", "worker-create", "worker-poll", "worker-retention"}
#: Reachable by operators only: published on the loopback interface, never on every one.
OPERATOR_TOOLS = ("flower", "prometheus", "grafana")
#: A compose variable that must be set: `${VAR:?message}` (or `${VAR?message}`).
REQUIRED = re.compile(r"\$\{[A-Z_][A-Z0-9_]*:?\?[^}]*\}")
#: Redis's ACL user for the service.
REDIS_USER = "scheduled-images"
#: A key naming a secret; its value must be a reference, never the secret itself.
SECRET_KEY = re.compile(r"pass(word)?|secret|token|basic_auth|credential", re.IGNORECASE)
#: A reference to a secret set elsewhere: `${VAR}`, `${VAR:?message}`, `${VAR:-}` (compose,
#: no default value) or `$(VAR)` (Kubernetes, from an env entry fed by a Secret).
REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*|:-)?\}|\$\([A-Za-z_][A-Za-z0-9_]*\)")
#: The password in a URL's user info.
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^@\s]+)@")
#: Well-known values no deploy file may carry, even in a comment or an example.
WELL_KNOWN = re.compile(r"change[-_ ]?me|operator-token|demo-token", re.IGNORECASE)


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


def pod_labels(doc: dict) -> dict:
    return doc["spec"]["template"]["metadata"]["labels"]


def service_workloads() -> list[dict]:
    """The Deployments and the Job that run the service's image (Redis's is apart)."""
    return [
        doc
        for doc in by_kind("Deployment") + by_kind("Job")
        if pod_labels(doc).get("app.kubernetes.io/name") == "scheduled-images"
    ]


def component(doc: dict) -> str:
    return pod_labels(doc)["app.kubernetes.io/component"]


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        holds = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[expression["operator"]]
        if not holds:
            return False
    return True


def env_of(container: dict) -> dict[str, dict]:
    """Every variable a container gets, name -> its env entry, its ConfigMaps' keys included."""
    configmaps = {d["metadata"]["name"]: d["data"] for d in by_kind("ConfigMap")}
    env = {}
    for source in container.get("envFrom", []):
        # Secrets only through secretKeyRef, so that each secret a pod gets is named here.
        assert set(source) == {"configMapRef"}, source
        env.update({k: {"value": v} for k, v in configmaps[source["configMapRef"]["name"]].items()})
    env.update({entry["name"]: entry for entry in container.get("env", [])})
    return env


def secret_ref(entry: dict) -> tuple[str, str] | None:
    ref = entry.get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def ingress_rules(labels: dict) -> list[dict]:
    """The ingress rules of every NetworkPolicy selecting pods with these labels."""
    policies = [
        p
        for p in by_kind("NetworkPolicy")
        if selects(p["spec"]["podSelector"], labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    assert policies, f"no NetworkPolicy selects {labels}"
    return [rule for p in policies for rule in p["spec"].get("ingress", [])]


def redis_deployment() -> dict:
    [redis] = [d for d in by_kind("Deployment") if containers(d)[0]["image"].startswith("redis:")]
    return redis


def from_monitoring(peer: dict) -> bool:
    return peer.get("namespaceSelector", {}).get("matchLabels") == {
        "kubernetes.io/metadata.name": "monitoring"
    } and bool(peer.get("podSelector", {}).get("matchLabels"))


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


def published(service: dict) -> list[tuple[str, str]]:
    """(host interface, container port) of each port a service publishes; "" is every one."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), str(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        host_ip = parts[0] if len(parts) == 3 else ""
        out.append((host_ip, parts[-1]))
    return out


def acl_rules(script: str) -> dict[str, str]:
    """The ACL lines the Redis start script writes: user name -> its rules."""
    lines = re.findall(r"user ([\w-]+) ([^\\']*)", script)
    return {user: rules.strip() for user, rules in lines}


def test_compose_publishes_operator_tools_on_the_loopback_interface_only() -> None:
    services = compose()["services"]
    for name in OPERATOR_TOOLS:
        ports = published(services[name])
        assert ports, f"{name} publishes nothing: drop it from OPERATOR_TOOLS or publish it"
        for host_ip, _ in ports:
            assert host_ip == "127.0.0.1", f"{name} is published on {host_ip or 'every interface'}"
    # The API is the one public door; the databases are not published at all.
    assert published(services["api"]) == [("", "8080")]
    for name, service in services.items():
        if name not in (*OPERATOR_TOOLS, "api"):
            assert not published(service), name


def test_compose_grafana_asks_for_a_login_with_no_default_password() -> None:
    env = compose()["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env.get("GF_AUTH_DISABLE_LOGIN_FORM", "false") == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    # Unset, Grafana's admin password would be its well-known default.
    assert REQUIRED.fullmatch(env["GF_SECURITY_ADMIN_PASSWORD"])


def test_compose_redis_and_postgresql_require_passwords_from_the_operator() -> None:
    services = compose()["services"]
    redis = services["redis"]
    script = " ".join(redis["command"])
    assert "--aclfile" in script
    rules = acl_rules(script)
    assert rules["default"] == "off"
    assert re.match(r"on [#>]", rules[REDIS_USER])
    assert REQUIRED.fullmatch(redis["environment"]["REDIS_PASSWORD"])
    health = " ".join(redis["healthcheck"]["test"])
    assert f"--user {REDIS_USER}" in health and "REDISCLI_AUTH=" in health

    assert REQUIRED.fullmatch(services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    broker = re.compile(rf"redis://{REDIS_USER}:\$\{{REDIS_PASSWORD:\?[^}}]*\}}@redis:6379/\d+")
    database = re.compile(r"postgresql\+psycopg2://\w+:\$\{POSTGRES_PASSWORD:\?[^}]*\}@postgres:")
    for name, service in services.items():
        env = service.get("environment", {})
        if "BROKER_URL" in env:
            assert broker.fullmatch(env["BROKER_URL"]), name
        if "DATABASE_URL" in env:
            assert database.match(env["DATABASE_URL"]), name


def test_compose_gives_cloud_credentials_only_to_the_processes_that_call_the_cloud() -> None:
    services = compose()["services"]
    ours = {n: s for n, s in services.items() if s.get("image", "").startswith("scheduled")}
    with_cloud = {n for n, s in ours.items() if "OS_PASSWORD" in s.get("environment", {})}
    assert with_cloud == CLOUD_CALLERS
    for name, service in ours.items():
        cloud = {k for k in service.get("environment", {}) if k.startswith("OS_")}
        assert not cloud or name in CLOUD_CALLERS, (name, cloud)
    # The static tokens go to the API alone.
    assert {n for n, s in ours.items() if s.get("secrets")} == {"api"}


def test_compose_serves_the_api_metrics_on_a_port_prometheus_alone_reaches() -> None:
    api = compose()["services"]["api"]
    port = api["environment"]["API_METRICS_PORT"]
    assert int(port) not in (0, 8080)
    assert port not in {container for _, container in published(api)}
    assert port in {str(p) for p in api.get("expose", [])}
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "scheduled-images-api"]
    assert [t for s in job["static_configs"] for t in s["targets"]] == [f"api:{port}"]


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
    for doc in by_kind("Deployment") + by_kind("Job"):
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    for doc in service_workloads():
        for container in containers(doc):
            assert container["image"].startswith("scheduled-images")
            assert_cli_accepts(container["args"])
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
    # Read by prometheus-client; the Redis password the BROKER_URL is made from; the Redis user
    # KEDA's scaler reads from a pool's env.
    helpers = {"PROMETHEUS_MULTIPROC_DIR", "REDIS_PASSWORD", "REDIS_USERNAME"}
    for doc in by_kind("ConfigMap"):
        assert set(doc["data"]) <= known
    for doc in service_workloads():
        for container in containers(doc):
            assert set(env_of(container)) - helpers <= known, component(doc)
    services = compose()["services"]
    for name, service in services.items():
        if service.get("image", "").startswith("scheduled"):
            assert set(service.get("environment", {})) <= known, name


def test_kubernetes_ships_no_secret_and_names_each_one_the_operator_creates() -> None:
    for doc in by_kind("Secret"):
        values = {**doc.get("data", {}), **doc.get("stringData", {})}
        assert not any(values.values()), f"{doc['metadata']['name']} ships a value"
    refs = {
        secret_ref(entry)
        for doc in service_workloads() + [redis_deployment()]
        for container in containers(doc)
        for entry in env_of(container).values()
        if secret_ref(entry)
    }
    auth = by_kind("TriggerAuthentication")
    refs |= {(r["name"], r["key"]) for d in auth for r in d["spec"]["secretTargetRef"]}
    assert {name for name, _ in refs} == {
        "scheduled-images",
        "scheduled-images-redis",
        "scheduled-images-cloud",
        "scheduled-images-flower",
    }
    # The README tells the operator to create each of them, with each key.
    readme = (DEPLOY.parent / "README.md").read_text()
    operating = readme[readme.index("## Operating") :]
    for name, key in refs:
        assert re.search(
            rf"create secret generic {name}\b(?:[^\n]|\\\n)*?--from-literal={key}=", operating
        ), (
            name,
            key,
        )


def test_kubernetes_redis_requires_a_password_every_client_has() -> None:
    redis = redis_deployment()
    [container] = containers(redis)
    assert pod_labels(redis).get("app.kubernetes.io/name") != "scheduled-images"
    script = " ".join(container.get("command", []) + container.get("args", []))
    assert "--aclfile" in script
    rules = acl_rules(script)
    assert rules["default"] == "off"
    assert re.match(r"on [#>]", rules[REDIS_USER])
    password = ("scheduled-images-redis", "password")
    assert secret_ref(env_of(container)["REDIS_PASSWORD"]) == password
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert f"--user {REDIS_USER}" in probe and "REDISCLI_AUTH=" in probe

    [service] = [
        s
        for s in by_kind("Service")
        if selects({"matchLabels": s["spec"]["selector"]}, pod_labels(redis))
    ]
    address = f"{service['metadata']['name']}:6379"
    broker = re.compile(rf"redis://{REDIS_USER}:\$\(REDIS_PASSWORD\)@{address}/\d+")
    for doc in service_workloads():
        if component(doc) == "migrations":
            continue
        for c in containers(doc):
            env = env_of(c)
            assert broker.fullmatch(env["BROKER_URL"]["value"]), component(doc)
            assert secret_ref(env["REDIS_PASSWORD"]) == password
            names = [entry["name"] for entry in c["env"]]
            assert names.index("REDIS_PASSWORD") < names.index("BROKER_URL")
    [auth] = by_kind("TriggerAuthentication")
    assert {(r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]} == {
        ("password", *password)
    }
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    for doc in by_kind("ScaledObject"):
        [target] = containers(deployments[doc["spec"]["scaleTargetRef"]["name"]])
        for trigger in doc["spec"]["triggers"]:
            assert trigger["metadata"]["address"] == address
            # KEDA reads the user name from the pool's env (usernameFromEnv).
            username = env_of(target)[trigger["metadata"]["usernameFromEnv"]]
            assert username["value"] == REDIS_USER


def test_kubernetes_network_policies_let_only_the_service_reach_redis_and_postgresql() -> None:
    policies = by_kind("NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
        for p in policies
    ), "no default deny of ingress for the namespace"
    postgresql = [
        p["spec"]["podSelector"]["matchLabels"]
        for p in policies
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        == "postgresql"
    ]
    stores = {"redis": pod_labels(redis_deployment()), "postgresql": postgresql[0]}
    ours = [pod_labels(doc) for doc in service_workloads()]
    for store, labels in stores.items():
        rules = ingress_rules(labels)
        assert rules, store
        for rule in rules:
            assert rule.get("from"), f"{store}: a rule without `from` lets anybody in"
            for peer in rule["from"]:
                assert "ipBlock" not in peer, store
                if "namespaceSelector" in peer:
                    # KEDA's operator reads the queue lengths; nothing else from elsewhere.
                    assert store == "redis"
                    assert peer["namespaceSelector"]["matchLabels"] == {
                        "kubernetes.io/metadata.name": "keda"
                    }
                    assert peer["podSelector"]["matchLabels"]
                else:
                    selector = peer["podSelector"]["matchLabels"]
                    assert selector.get("app.kubernetes.io/name") == "scheduled-images", store
        peers = [p for r in rules for p in r["from"] if "namespaceSelector" not in p]
        for pod in ours:
            assert any(selects(p["podSelector"], pod) for p in peers), (store, pod)


def test_kubernetes_network_policies_open_the_api_port_alone_to_everyone() -> None:
    for doc in service_workloads():
        if doc["kind"] == "Job":
            continue
        rules = ingress_rules(pod_labels(doc))
        listening = {p["containerPort"] for c in containers(doc) for p in c.get("ports", [])}
        opened = set()
        for rule in rules:
            ports = {p["port"] for p in rule.get("ports", [])}
            assert ports, f"{component(doc)}: a rule without ports opens them all"
            opened |= ports
            if not rule.get("from"):
                assert component(doc) == "api" and ports == {8080}, component(doc)
            elif ports & {9100, 9102}:
                assert all(from_monitoring(peer) for peer in rule["from"]), component(doc)
            else:
                # Flower: from pods of the namespace that are let in, never from elsewhere.
                assert all(set(peer) == {"podSelector"} for peer in rule["from"]), component(doc)
                assert all(peer["podSelector"] for peer in rule["from"]), component(doc)
        assert listening <= opened, component(doc)


def test_kubernetes_gives_cloud_credentials_only_to_the_pods_that_call_the_cloud() -> None:
    seen = set()
    for doc in service_workloads():
        seen.add(component(doc))
        for container in containers(doc):
            env = env_of(container)
            cloud = {name for name in env if name.startswith("OS_")}
            if component(doc) in CLOUD_CALLERS:
                assert secret_ref(env["OS_PASSWORD"]) == ("scheduled-images-cloud", "OS_PASSWORD")
                assert {"OS_AUTH_URL", "OS_USERNAME", "OS_PROJECT_NAME"} <= cloud
            else:
                assert not cloud, (component(doc), cloud)
    assert seen >= CLOUD_CALLERS | {"beat", "flower", "migrations", "worker-tick", "worker-plan"}


def test_kubernetes_serves_the_api_metrics_on_a_port_prometheus_alone_reaches() -> None:
    [api] = [doc for doc in service_workloads() if component(doc) == "api"]
    [container] = containers(api)
    port = int(env_of(container)["API_METRICS_PORT"]["value"])
    assert port not in (0, 8080)
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    for service in by_kind("Service"):
        if selects({"matchLabels": service["spec"]["selector"]}, pod_labels(api)):
            for p in service["spec"]["ports"]:
                assert p["targetPort"] not in (port, "metrics")


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


def exported_metrics() -> set[str]:
    """The names of the metrics the service's modules define."""
    modules = ("common/metrics.py", "scheduler/metrics.py", "workers/metrics.py", "api/__init__.py")
    source = "".join((DEPLOY.parent / module).read_text() for module in modules)
    return set(re.findall(r'"(si_[a-z_]+)"', source))


def unknown_metrics(expr: str, exported: set[str]) -> list[str]:
    """The si_ names in a PromQL expression that the service does not export."""
    unknown = []
    for name in re.findall(r"\bsi_[a-z_]+", expr):
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        if not (name in exported or base in exported or f"{base}_total" in exported):
            unknown.append(name)
    return unknown


def test_grafana_dashboard_plots_metrics_the_service_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "scheduled-images.json").read_text())
    exported = exported_metrics()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert unknown_metrics(target["expr"], exported) == [], panel["title"]


# -- Prometheus alert rules ----------------------------------------------------------------

PROMETHEUS = DEPLOY / "prometheus"
#: promtool, where there is one: on PATH, or where .ci/run unpacked Debian's package.
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")
#: What each alert must be about (issue 17): a metric its expression reads.
ALERTED_METRICS = {
    "stale schedules": "si_schedules_stale",
    "the oldest waiting run": "si_oldest_waiting_run_age_seconds",
    "in flight pinned at the cap": "si_inflight_cap",
    "a pool with no worker": 'up{job="scheduled-images-workers"}',
    "beat silent": "si_beat_ticks_published_total",
}


def rule_files() -> list[Path]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return [PROMETHEUS / name for name in config.get("rule_files", [])]


def alert_rules() -> list[dict]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def rule_problems(rule: dict, exported: set[str]) -> list[str]:
    """What is wrong with an alert rule: a field an operator needs missing, or a metric the
    service does not export (an alert that can never fire)."""
    problems = [
        f"no {field}"
        for field, value in (
            ("alert", rule.get("alert")),
            ("expr", rule.get("expr")),
            ("for", rule.get("for")),
            ("labels.severity", rule.get("labels", {}).get("severity")),
            ("annotations.summary", rule.get("annotations", {}).get("summary")),
        )
        if not value
    ]
    if rule.get("labels", {}).get("severity") not in (None, "warning", "critical"):
        problems.append("severity is neither warning nor critical")
    if rule.get("for") and not re.fullmatch(r"\d+[smhd]", str(rule["for"])):
        problems.append(f"for {rule['for']!r} is no duration")
    problems += [
        f"unknown metric {name}" for name in unknown_metrics(rule.get("expr", ""), exported)
    ]
    return problems


def test_prometheus_loads_alert_rules_that_compose_mounts() -> None:
    paths = rule_files()
    assert paths, "prometheus.yml names no rule_files"
    volumes = compose()["services"]["prometheus"]["volumes"]
    for path in paths:
        assert path.exists(), path
        assert f"./prometheus/{path.name}:/etc/prometheus/{path.name}:ro" in volumes


def test_alert_rules_are_complete_and_read_metrics_the_service_exports() -> None:
    rules, exported = alert_rules(), exported_metrics()
    assert rules
    for rule in rules:
        assert rule_problems(rule, exported) == [], rule.get("alert")
    expressions = " ".join(rule["expr"] for rule in rules)
    for topic, metric in ALERTED_METRICS.items():
        assert metric in expressions, f"no alert on {topic}"
    assert len({rule["alert"] for rule in rules}) == len(rules)


def test_the_rule_check_finds_a_broken_rule() -> None:
    """The check above is only worth what it catches."""
    exported = exported_metrics()
    good = alert_rules()[0]
    assert rule_problems(good, exported) == []
    assert rule_problems({**good, "expr": "si_schedules_stael > 0"}, exported) == [
        "unknown metric si_schedules_stael"
    ]
    assert rule_problems({k: v for k, v in good.items() if k != "for"}, exported) == ["no for"]
    assert "no labels.severity" in rule_problems({**good, "labels": {}}, exported)
    assert "no annotations.summary" in rule_problems({**good, "annotations": {}}, exported)


@pytest.mark.skipif(PROMTOOL is None, reason="no promtool here (.ci/run unpacks Debian's)")
def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    for path in rule_files():
        result = subprocess.run(
            [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "si_x >"}]}]})
    )
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(broken)], capture_output=True, text=True
    )
    assert result.returncode != 0


# -- no secret anywhere in deploy/ ----------------------------------------------------------


def deploy_files() -> list[Path]:
    """Every file under deploy/ but those it tells git to ignore (an operator's own secrets)."""
    ignore = DEPLOY / ".gitignore"
    ignored = {
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    return [p for p in sorted(DEPLOY.rglob("*")) if p.is_file() and p.name not in ignored]


def strings(node: object, key: str = "") -> list[tuple[str, str]]:
    """(key, value) of every string in a document; an env entry's value goes under its name."""
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and isinstance(node.get("value"), str):
            return [(node["name"], node["value"])]
        return [pair for k, v in node.items() for pair in strings(v, str(k))]
    if isinstance(node, list):
        return [pair for item in node for pair in strings(item)]
    if isinstance(node, str):
        if "=" in node and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", node, re.DOTALL):
            name, _, value = node.partition("=")
            return [(name, value)]
        return [(key, node)]
    return []


def literal_secrets(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs that hold a secret itself rather than a reference to it."""
    found = []
    for key, value in pairs:
        # What is left once references are taken out may name a user ("admin:"), no more.
        left = REFERENCE.sub("", value).strip()
        secret_key = SECRET_KEY.search(key) and not key.lower().endswith("file")
        if secret_key and not re.fullmatch(r"([\w.-]+:)?", left):
            found.append((key, value))
        for password in URL_PASSWORD.findall(value):
            if REFERENCE.sub("", password):
                found.append((key, value))
    return found


def test_no_deploy_file_holds_a_usable_secret() -> None:
    files = deploy_files()
    assert {"compose.yaml", "prometheus.yml", "Dockerfile"} <= {p.name for p in files}
    for path in files:
        text = path.read_text()
        assert not WELL_KNOWN.search(text), f"{path.name}: {WELL_KNOWN.search(text).group()}"
        if path.suffix in (".yaml", ".yml"):
            pairs = [pair for doc in yaml.safe_load_all(text) for pair in strings(doc)]
        elif path.suffix == ".json":
            doc = json.loads(text)
            # A tokens file: token -> {"tenant": ..., "roles": [...]}.
            assert not (
                isinstance(doc, dict)
                and doc
                and all(isinstance(v, dict) and "tenant" in v for v in doc.values())
            ), f"{path.name} holds tokens"
            pairs = strings(doc)
        elif path.name == "Dockerfile":
            commands = dockerfile.parse_file(str(path))
            pairs = [
                pair
                for c in commands
                for pair in (
                    zip(c.value[::2], c.value[1::2], strict=True)
                    if c.cmd == "ENV"
                    else [v.partition("=")[::2] for v in c.value]
                    if c.cmd == "ARG"
                    else []
                )
            ]
        else:
            pairs = [("", line) for line in text.splitlines()]
        assert literal_secrets(pairs) == [], path.name


def test_the_secret_scan_finds_a_literal_secret() -> None:
    """The scan above is only worth what it catches."""
    assert literal_secrets([("POSTGRES_PASSWORD", "hunter2")])
    assert literal_secrets([("FLOWER_BASIC_AUTH", "admin:s3cret")])
    assert literal_secrets([("password", "${FLOWER_PASSWORD:-hunter2}")])
    assert literal_secrets([("BROKER_URL", "redis://si:hunter2@redis:6379/0")])
    assert literal_secrets(strings([{"name": "OS_PASSWORD", "value": "x"}]))
    assert literal_secrets(strings({"environment": ["REDIS_PASSWORD=hunter2"]}))
    assert not literal_secrets([("POSTGRES_PASSWORD", "${POSTGRES_PASSWORD:?set it}")])
    assert not literal_secrets([("BROKER_URL", "redis://si:$(REDIS_PASSWORD)@redis:6379/0")])
    assert not literal_secrets([("password_file", "/run/secrets/flower_password")])
