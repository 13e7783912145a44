"""Static checks of the docker compose demo and the exporter's image.

CI has the Docker client but no engine and no compose plugin, so these tests read the files:
the compose spec schema, pinned images, mounted paths, loopback ports, service names that other
files rely on, the Grafana login wrapper and the model puller (both run here with `sh`).
Compose files are interpolated as a bare `docker compose up` would see them: no variable set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE_FILE = "docker-compose.yml"
GPU_FILE = "docker-compose.gpu.yml"
EXPORTER_PORT = 10434
HEALTH_PATH = "/-/healthy"
# The oldest versions the rules and the end-to-end tests run against (Debian bookworm's
# prometheus and prometheus-alertmanager packages), and the Ollama the API facts describe.
PINNED = {
    "ollama/ollama": "0.32.15",
    "prom/prometheus": "v2.42.0",
    "prom/alertmanager": "v0.25.0",
}

Compose = dict[str, Any]

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Resolve ${VAR}, ${VAR:-default}, ${VAR:?err} and $$ the way compose does."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        unset = name not in env or (op is not None and op.startswith(":") and not env[name])
        if unset and op in {":?", "?"}:
            raise ValueError(f"{name} must be set: {arg}")
        if unset:
            return arg if op in {":-", "-"} else ""
        return env[name]

    return _VARIABLE.sub(resolve, value)


def load_raw(name: str) -> Compose:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def base() -> Compose:
    return interpolate(load_raw(BASE_FILE), {})


@pytest.fixture(scope="module")
def gpu() -> Compose:
    return interpolate(load_raw(GPU_FILE), {})


def merge(base: Any, override: Any) -> Any:
    """Compose-style merge, enough for these files: mappings merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: merge(base[k], v) if k in base else v for k, v in {**base, **override}.items()}
    return override


def services(*files: Compose) -> Iterator[tuple[str, dict[str, Any]]]:
    for compose in files:
        yield from compose["services"].items()


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path in the repo, container path) of every bind mount of a service."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((ROOT / volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((ROOT / source, target))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repo file a service sees at container_path through its bind mounts."""
    for source, target in bind_mounts(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not bind-mounted from the repo")


def published(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host ip, container port) of every published port of a service."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            result.append((str(port.get("host_ip", "")), str(port["target"])))
            continue
        parts = str(port).split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        result.append((host_ip, parts[-1].split("/")[0]))
    return result


def container_ports(service: dict[str, Any]) -> set[int]:
    exposed = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    return exposed | {int(port) for _, port in published(service)}


def assert_service_address(compose: Compose, address: str, where: str) -> None:
    host, _, port = address.rpartition(":")
    assert host in compose["services"], f"{where}: {host!r} is not a compose service"
    service = compose["services"][host]
    assert int(port) in container_ports(service), f"{where}: {host} does not serve port {port}"


def read_yaml(relative: str) -> Any:
    path = ROOT / relative
    assert path.is_file(), f"{relative} is not in the repo (yet)"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- Dockerfile parsing -------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def assert_pinned(image: str, where: str) -> None:
    assert "$" not in image, f"{where}: {image} depends on a variable"
    if "@sha256:" in image:
        return
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{where}: {image} has no tag"
    assert tag != "latest", f"{where}: {image} is not pinned"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore patterns leave `path` out (the last matching pattern wins)."""

    def regex(pattern: str) -> str:
        out = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        return out

    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        prefixes = ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        if any(re.fullmatch(regex(body), prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def dockerignore_patterns() -> list[str]:
    text = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


# --- Compose files ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [BASE_FILE, GPU_FILE])
def test_compose_file_is_valid_against_the_compose_spec(name: str) -> None:
    schema = ["--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(ROOT / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", [BASE_FILE, GPU_FILE])
def test_bare_up_needs_no_environment(name: str) -> None:
    interpolate(load_raw(name), {})  # a ${VAR:?...} would raise here, as `up` would fail


@pytest.mark.parametrize("name", [BASE_FILE, GPU_FILE])
def test_no_secret_has_a_default_value(name: str) -> None:
    for service_name, service in load_raw(name)["services"].items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{\w+(?::?-|:?\?[^}]*)?\}", value), (
                    f"{service_name}: {key} must come from the environment, not {value!r}"
                )


def test_every_image_is_pinned(base: Compose, gpu: Compose) -> None:
    for name, service in services(base, gpu):
        if "image" in service:
            assert_pinned(service["image"], name)
    for name, service in base["services"].items():
        assert "image" in service or "build" in service, f"{name} has no image"


def test_images_are_the_versions_the_project_tests(base: Compose) -> None:
    expected = {**PINNED, "grafana/grafana": grafana_target_version()}
    images = dict(s["image"].rsplit(":", 1) for s in base["services"].values() if "image" in s)
    assert images == expected


def grafana_target_version() -> str:
    """The Grafana version the dashboards target, as grafana/VERSION records it."""
    recorded = ROOT / "grafana" / "VERSION"
    assert recorded.is_file(), "grafana/VERSION records no target version"
    return recorded.read_text(encoding="utf-8").strip()


def test_every_bind_mounted_path_exists(base: Compose, gpu: Compose) -> None:
    missing = [
        f"{name}: {source.relative_to(ROOT)}"
        for name, service in services(base, gpu)
        for source, _ in bind_mounts(service)
        if not source.exists()
    ]
    assert not missing, f"mounted but not in the repo: {missing}"


def test_every_published_port_binds_loopback(base: Compose, gpu: Compose) -> None:
    for name, service in services(base, gpu):
        for host_ip, port in published(service):
            assert host_ip == "127.0.0.1", f"{name} publishes {port} on {host_ip or 'all'}"


def test_ollama_port_is_not_published(base: Compose, gpu: Compose) -> None:
    assert not base["services"]["ollama"].get("ports")
    assert not gpu["services"].get("ollama", {}).get("ports")


# --- Names other files rely on ------------------------------------------------------------


def test_prometheus_scrapes_and_alerts_compose_services(base: Compose) -> None:
    prometheus = base["services"]["prometheus"]
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = host_path(prometheus, config_arg.split("=", 1)[1])
    assert config_path == ROOT / "prometheus" / "prometheus.yml"
    config = read_yaml("prometheus/prometheus.yml")
    scraped = [
        target
        for job in config.get("scrape_configs", [])
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert f"exporter:{EXPORTER_PORT}" in scraped
    for target in scraped:
        if target not in {"localhost:9090", "127.0.0.1:9090"}:  # Prometheus itself
            assert_service_address(base, target, "prometheus.yml scrape target")
    alerting = [
        target
        for manager in config.get("alerting", {}).get("alertmanagers", [])
        for static in manager.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert alerting, "prometheus.yml sends alerts nowhere"
    for target in alerting:
        assert_service_address(base, target, "prometheus.yml alertmanager")


def test_prometheus_command_keeps_the_image_defaults(base: Compose) -> None:
    command = base["services"]["prometheus"]["command"]
    for flag in [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        "--web.enable-lifecycle",
    ]:
        assert flag in command


def test_alertmanager_reads_the_shipped_config(base: Compose) -> None:
    alertmanager = base["services"]["alertmanager"]
    config_arg = next(a for a in alertmanager["command"] if a.startswith("--config.file="))
    config_path = host_path(alertmanager, config_arg.split("=", 1)[1])
    assert config_path == ROOT / "prometheus" / "alertmanager.yml"
    config = read_yaml("prometheus/alertmanager.yml")
    for receiver in config.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            if "url" in webhook:
                url = urlsplit(webhook["url"])
                assert_service_address(base, f"{url.hostname}:{url.port or 80}", "webhook")


def test_grafana_datasources_point_at_compose_services(base: Compose) -> None:
    folder = ROOT / "grafana" / "provisioning" / "datasources"
    files = sorted(folder.glob("*.y*ml"))
    assert files, "grafana/provisioning/datasources has no datasource file (yet)"
    kinds = set()
    for path in files:
        for source in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", []):
            url = urlsplit(source["url"])
            assert_service_address(base, f"{url.hostname}:{url.port}", path.name)
            kinds.add((source["type"], url.hostname))
    assert ("prometheus", "prometheus") in kinds


def test_grafana_dashboard_providers_read_the_mounted_dashboards(base: Compose) -> None:
    grafana = base["services"]["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning") == ROOT / "grafana" / "provisioning"
    files = sorted((ROOT / "grafana" / "provisioning" / "dashboards").glob("*.y*ml"))
    assert files, "grafana/provisioning/dashboards has no provider file (yet)"
    for path in files:
        for provider in yaml.safe_load(path.read_text(encoding="utf-8")).get("providers", []):
            source = host_path(grafana, provider["options"]["path"])
            assert source == ROOT / "grafana" / "dashboards", path.name


# --- The exporter's image -----------------------------------------------------------------


def test_dockerfile_base_images_are_pinned() -> None:
    instructions = dockerfile()
    defaults = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    stages = set()
    for keyword, value in instructions:
        if keyword != "FROM":
            continue
        image, *alias = re.split(r"\s+AS\s+", value, flags=re.IGNORECASE)
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)
        if image not in stages:  # a later stage may start FROM an earlier one
            assert_pinned(image, "Dockerfile")
            assert image.startswith("python:3.11-slim")
        stages.update(alias)


def test_exporter_image_runs_as_a_non_root_user(base: Compose, gpu: Compose) -> None:
    users = [value for keyword, value in final_stage() if keyword == "USER"]
    assert users, "the final stage has no USER: the exporter would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    for name, service in services(base, gpu):
        user = str(service.get("user", "")).split(":")[0]
        assert user not in {"root", "0"}, f"{name} runs as root"


def test_exporter_healthcheck_asks_the_health_endpoint() -> None:
    checks = [value for keyword, value in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    url = urlsplit(re.search(r"http://[^'\"\s]+", checks[0]).group(0))
    assert (url.path, url.port) == (HEALTH_PATH, EXPORTER_PORT)
    assert ("EXPOSE", str(EXPORTER_PORT)) in final_stage()
    sources = (ROOT / "exporter").rglob("*.py")
    assert any(HEALTH_PATH in path.read_text(encoding="utf-8") for path in sources), (
        f"the exporter serves no {HEALTH_PATH} (yet)"
    )


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    entrypoints = [value for keyword, value in final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoints == [f'["{next(iter(project["project"]["scripts"]))}"]']


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    patterns = dockerignore_patterns()
    for keyword, value in dockerfile():
        if keyword != "COPY" or "--from" in value:
            continue
        for source in value.split()[:-1]:
            path = ROOT / source
            assert path.exists(), f"the Dockerfile copies {source}, which is not in the repo"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py") if p.is_file()]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                assert not dockerignored(relative, patterns), f".dockerignore drops {relative}"


@pytest.mark.parametrize(
    "path", [".venv/bin/python", ".git/config", ".env", "tests/test_compose.py", "x/.pytest_cache"]
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert dockerignored(path, dockerignore_patterns())


# --- Ollama and the model puller ----------------------------------------------------------


def test_puller_waits_for_ollama_and_the_exporter_for_the_puller(base: Compose) -> None:
    ollama, puller = base["services"]["ollama"], base["services"]["ollama-pull"]
    assert ollama["healthcheck"]["test"] == ["CMD", "ollama", "list"]
    assert puller["image"] == ollama["image"]
    assert environment(puller)["OLLAMA_HOST"] == "ollama:11434"
    assert puller["restart"] == "no"
    assert puller["depends_on"]["ollama"]["condition"] == "service_healthy"
    condition = base["services"]["exporter"]["depends_on"]["ollama-pull"]["condition"]
    assert condition == "service_completed_successfully"


def run_puller(base: Compose, tmp_path: Path, models: str) -> tuple[int, list[str]]:
    """Run the puller's shell command with a stand-in `ollama` that logs and fails on 'bad'."""
    log = tmp_path / "calls"
    fake = tmp_path / "ollama"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n[ "$2" != bad ]\n', encoding="utf-8")
    fake.chmod(0o755)
    puller = base["services"]["ollama-pull"]
    assert puller["entrypoint"] == ["/bin/sh", "-c"]
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "OLLAMA_DEMO_MODELS": models}
    result = subprocess.run(["/bin/sh", "-c", *puller["command"]], env=env, check=False)
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return result.returncode, calls


def test_puller_pulls_every_model_it_is_given(base: Compose, tmp_path: Path) -> None:
    models = environment(base["services"]["ollama-pull"])["OLLAMA_DEMO_MODELS"]
    assert models == "qwen2.5:0.5b"
    assert run_puller(base, tmp_path, "qwen2.5:0.5b org/m:Q4_K_M") == (
        0,
        ["pull qwen2.5:0.5b", "pull org/m:Q4_K_M"],
    )


def test_puller_pulls_nothing_when_told_so(tmp_path: Path) -> None:
    raw = load_raw(BASE_FILE)
    quiet = interpolate(raw, {"OLLAMA_DEMO_MODELS": ""})  # set but empty: no default
    assert environment(quiet["services"]["ollama-pull"])["OLLAMA_DEMO_MODELS"] == ""
    assert run_puller(quiet, tmp_path, "") == (0, [])


def test_puller_fails_when_a_pull_fails(base: Compose, tmp_path: Path) -> None:
    returncode, calls = run_puller(base, tmp_path, "a bad c")
    assert returncode != 0
    assert calls == ["pull a", "pull bad"]


def test_ollama_keeps_models_in_a_named_volume(base: Compose) -> None:
    assert "ollama-models:/root/.ollama" in base["services"]["ollama"]["volumes"]
    assert "ollama-models" in base["volumes"]


# --- Exporter configuration ---------------------------------------------------------------


def exporter_config(compose: Compose) -> tuple[Path, dict[str, Any]]:
    exporter = compose["services"]["exporter"]
    path = host_path(exporter, environment(exporter)["OLLAMA_PROBE_EXPORTER_CONFIG"])
    assert path.is_file(), f"the exporter's config {path.relative_to(ROOT)} is missing"
    return path, yaml.safe_load(path.read_text(encoding="utf-8"))


def test_cpu_demo_probes_ollama_by_service_name(base: Compose) -> None:
    path, config = exporter_config(base)
    assert path.name == "cpu.yml"
    assert [t["url"] for t in config["targets"]] == ["http://ollama:11434"]


@pytest.mark.parametrize("path", sorted((ROOT / "compose" / "exporter").glob("*.yml")))
def test_demo_exporter_config_passes_config_check(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", "--config.file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    listen = yaml.safe_load(path.read_text(encoding="utf-8")).get("web", {}).get("listen_address")
    assert listen in {None, f":{EXPORTER_PORT}"}


def test_host_config_reaches_the_host_through_host_gateway(base: Compose) -> None:
    exporter = base["services"]["exporter"]
    assert "host.docker.internal:host-gateway" in exporter["extra_hosts"]
    config = yaml.safe_load((ROOT / "compose/exporter/host.yml").read_text(encoding="utf-8"))
    assert [urlsplit(t["url"]).hostname for t in config["targets"]] == ["host.docker.internal"]


# --- GPU override -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ollama", "exporter"])
def test_gpu_override_reserves_nvidia_gpus(gpu: Compose, name: str) -> None:
    devices = gpu["services"][name]["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in devices


def test_gpu_exporter_can_read_nvml_and_host_pids(gpu: Compose) -> None:
    exporter = gpu["services"]["exporter"]
    env = environment(exporter)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "utility" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert exporter["pid"] == "host"


def test_gpu_exporter_config_marks_its_target_gpu(base: Compose, gpu: Compose) -> None:
    path, config = exporter_config(merge(base, gpu))
    assert path.name == "gpu.yml"
    assert config["targets"], "no target"
    assert all(target["gpu"] is True for target in config["targets"])
    assert [t["url"] for t in config["targets"]] == ["http://ollama:11434"]


def test_gpu_override_pulls_the_models_of_the_report(gpu: Compose) -> None:
    models = environment(gpu["services"]["ollama-pull"])["OLLAMA_DEMO_MODELS"].split()
    assert models[:2] == ["gemma3:12b", "mistral:7b"]
    assert len(models) == 3
    assert "bielik-11b" in models[2].lower()
    assert models[2].lower().endswith(":q4_k_m")


# --- Grafana login ------------------------------------------------------------------------


def test_grafana_is_anonymous_read_only_without_a_fixed_password(base: Compose) -> None:
    grafana = base["services"]["grafana"]
    env = environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env  # empty would mean Grafana's default
    assert env["GRAFANA_ADMIN_PASSWORD"] == ""
    script = host_path(grafana, grafana["entrypoint"][-1])
    assert script == ROOT / "compose" / "grafana" / "start.sh"
    assert grafana["command"] == ["/run.sh"]  # the image's own entrypoint, run by the wrapper
    assert env["GF_PATHS_DATA"] in grafana["tmpfs"]


def run_grafana_wrapper(password: str | None) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"]}
    if password is not None:
        env["GRAFANA_ADMIN_PASSWORD"] = password
    result = subprocess.run(
        ["/bin/sh", str(ROOT / "compose/grafana/start.sh"), "env"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


@pytest.mark.parametrize("password", [None, ""])
def test_grafana_without_a_password_has_no_admin_login(password: str | None) -> None:
    first, second = run_grafana_wrapper(password), run_grafana_wrapper(password)
    assert first["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    assert first["GF_AUTH_BASIC_ENABLED"] == "false"
    assert len(first["GF_SECURITY_ADMIN_PASSWORD"]) >= 32
    assert first["GF_SECURITY_ADMIN_PASSWORD"] != second["GF_SECURITY_ADMIN_PASSWORD"]
    assert "GRAFANA_ADMIN_PASSWORD" not in first


def test_grafana_with_a_password_lets_admin_log_in_with_it() -> None:
    env = run_grafana_wrapper("correct horse")
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "correct horse"
    assert env["GF_AUTH_DISABLE_LOGIN_FORM"] == "false"
    assert "GRAFANA_ADMIN_PASSWORD" not in env


# --- Documentation ------------------------------------------------------------------------


def test_demo_docs_cover_ports_variants_and_settings(base: Compose, gpu: Compose) -> None:
    text = (ROOT / "docs" / "demo.md").read_text(encoding="utf-8")
    for service in base["services"].values():
        for port in service.get("ports", []):
            assert f"localhost:{str(port).split(':')[1]}" in text
    for needle in [
        GPU_FILE,
        "OLLAMA_DEMO_MODELS",
        "GRAFANA_ADMIN_PASSWORD",
        "EXPORTER_CONFIG=host.yml",
        "host-gateway",
        "127.0.0.1",
        environment(gpu["services"]["ollama-pull"])["OLLAMA_DEMO_MODELS"],
    ]:
        assert needle in text, f"docs/demo.md does not mention {needle}"
