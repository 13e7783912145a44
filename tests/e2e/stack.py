"""A real alerting stack on loopback for end-to-end tests.

Starts Debian's `prometheus` and `prometheus-alertmanager` binaries (and, when asked, the
exporter) on 127.0.0.1 and free ports, with a webhook sink in the test process that keeps every
notification Alertmanager sends. Nothing here is a second, hand-edited copy of the shipped
configuration: the loopback Prometheus config, the Alertmanager config and a scaled-down rule
file are all derived at run time from prometheus/prometheus.yml, prometheus/alertmanager.yml and
prometheus/rules/*.yml, so a test exercises exactly what ships.

Every wait is a poll with a deadline (`wait_for`), and every process is stopped by the context
manager that started it. A missing binary raises, so tests fail rather than skip: the README's
test command installs the packages.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_CONFIG = PROMETHEUS_DIR / "alertmanager.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"

# The scrape job the rules select (`up{job="..."}`); the derived config keeps the name.
EXPORTER_JOB = "ollama-probe-exporter"
INSTALL_HINT = (
    "install Debian's `prometheus` and `prometheus-alertmanager` packages "
    "(the README's test command, scripts/test, does)"
)

T = TypeVar("T")
Json = dict[str, Any]


# --- binaries, ports, waiting -----------------------------------------------------------------


class MissingBinaryError(RuntimeError):
    """A tool the tests need is not installed: a failure, never a skip."""


def find_binary(*names: str) -> str:
    """The path of the first of `names` on PATH (Debian calls Alertmanager differently)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise MissingBinaryError(f"none of {', '.join(names)} is on PATH: {INSTALL_HINT}")


def promtool() -> str:
    return find_binary("promtool")


def amtool() -> str:
    return find_binary("amtool")


def prometheus_binary() -> str:
    return find_binary("prometheus")


def alertmanager_binary() -> str:
    return find_binary("prometheus-alertmanager", "alertmanager")


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout` seconds.

    Transport errors count as "not yet" (a server that is still starting refuses connections).
    `details` adds context to the failure message, e.g. the tail of a process log.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
        except (httpx.HTTPError, OSError, ValueError) as exc:
            result, last_error = None, exc
        if result:
            return result
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:.0f} s waiting for {what}"
            if last_error is not None:
                message += f" (last error: {last_error!r})"
            if details is not None:
                message += "\n" + details()
            raise AssertionError(message)
        time.sleep(interval)


# --- durations and scaled-down rules ----------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Range selectors and subqueries ([5m], [1h:1m]) and offsets, outside string literals.
_RANGE = re.compile(r"\[\s*([0-9a-z]+)\s*(?::\s*([0-9a-z]*)\s*)?\]")
_OFFSET = re.compile(r"\boffset\s+([0-9a-z]+)")
_STRING = re.compile(r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`)")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as `90s`, `5m` or `1h30m`."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for `seconds`, to the millisecond (2.42 reads `1500ms`)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


@dataclass(frozen=True)
class TimeScale:
    """How much faster than production a test runs its rules.

    factor=1/60 turns an hour into a minute: a 5m rate window becomes 5s, `for: 2m` becomes 2s,
    a 30d period 12h. Ranges never go below `min_range`, so that each still holds a few scrapes.
    Thresholds and minimum event counts are left as shipped.
    """

    factor: float
    min_range: float = 4.0

    def duration(self, text: str, *, floor: float = 0.0) -> str:
        return format_duration(max(parse_duration(text) * self.factor, floor))

    def promql(self, expr: str) -> str:
        def scale_range(match: re.Match[str]) -> str:
            window = self.duration(match.group(1), floor=self.min_range)
            step = match.group(2)
            if step is None:
                return f"[{window}]"
            return f"[{window}:{self.duration(step, floor=0.001) if step else ''}]"

        def scale_offset(match: re.Match[str]) -> str:
            return f"offset {self.duration(match.group(1))}"

        # Brackets may occur inside regex matchers ("[a-z]+"): only code outside strings scales.
        pieces = _STRING.split(expr)
        for i in range(0, len(pieces), 2):
            pieces[i] = _OFFSET.sub(scale_offset, _RANGE.sub(scale_range, pieces[i]))
        return "".join(pieces)

    def rule_groups(self, document: Mapping[str, Any]) -> Json:
        """A copy of a rule file with every window, `for:` and group interval scaled."""
        scaled: Json = copy.deepcopy(dict(document))
        for group in scaled.get("groups", []):
            if "interval" in group:
                group["interval"] = self.duration(group["interval"], floor=1.0)
            for rule in group.get("rules", []):
                rule["expr"] = self.promql(rule["expr"])
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = self.duration(rule[key])
        return scaled


def write_scaled_rules(directory: Path, scale: TimeScale) -> list[Path]:
    """Write a scaled copy of every shipped rule file into `directory`; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(RULES_DIR.glob("*.yml")):
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        target = directory / f"scaled-{source.name}"
        header = (
            f"# Generated by tests/e2e/stack.py from prometheus/rules/{source.name}"
            f" (time x{scale.factor:g}).\n"
        )
        target.write_text(header + yaml.safe_dump(scale.rule_groups(document), sort_keys=False))
        written.append(target)
    return written


# --- configs derived from the shipped files ---------------------------------------------------


def read_yaml(path: Path) -> Json:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return loaded


def derive_prometheus_config(
    *,
    exporters: Sequence[str],
    alertmanager: str,
    rule_files: Sequence[Path],
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    shipped: Path = PROMETHEUS_CONFIG,
) -> Json:
    """The shipped prometheus.yml pointed at loopback addresses, with faster intervals.

    Only the exporter's job is kept (any other job would scrape a compose service that does not
    exist here); its name, any external labels and the alerting section's shape stay as shipped.
    """
    config = read_yaml(shipped)
    settings = config.setdefault("global", {})
    settings["scrape_interval"] = scrape_interval
    settings["scrape_timeout"] = scrape_interval  # must not exceed the interval
    settings["evaluation_interval"] = evaluation_interval
    jobs = [job for job in config.get("scrape_configs", []) if job["job_name"] == EXPORTER_JOB]
    if len(jobs) != 1:
        raise ValueError(f"{shipped} must have exactly one job named {EXPORTER_JOB}")
    (job,) = jobs
    job["scrape_interval"] = scrape_interval
    job.pop("scrape_timeout", None)
    job["static_configs"] = [{"targets": list(exporters)}]
    config["scrape_configs"] = [job]
    managers = config.get("alerting", {}).get("alertmanagers", [])
    if not managers:
        raise ValueError(f"{shipped} sends alerts to no Alertmanager")
    for manager in managers:
        manager["static_configs"] = [{"targets": [alertmanager]}]
    config["rule_files"] = [str(path) for path in rule_files]
    return config


def derive_alertmanager_config(
    *,
    webhook_url: str,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    shipped: Path = ALERTMANAGER_CONFIG,
) -> Json:
    """The shipped alertmanager.yml with every receiver replaced by the test's webhook.

    Receiver `NAME` posts to `<webhook_url>/NAME`, so a test sees which route an alert took.
    Routing tree, grouping, matchers and inhibition rules stay as shipped; only the timings of
    every route that sets them are shortened.
    """
    config = read_yaml(shipped)
    for receiver in config.get("receivers", []):
        for key in [k for k in receiver if k.endswith("_configs")]:
            del receiver[key]
        receiver["webhook_configs"] = [
            {"url": f"{webhook_url}/{receiver['name']}", "send_resolved": True}
        ]
    timings = {
        "group_wait": group_wait,
        "group_interval": group_interval,
        "repeat_interval": repeat_interval,
    }

    def retime(route: Json, root: bool) -> None:
        for key, value in timings.items():
            if root or key in route:
                route[key] = value
        for child in route.get("routes", []):
            retime(child, root=False)

    retime(config["route"], root=True)
    return config


def write_yaml(path: Path, document: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


# --- the webhook receiver ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedAlert:
    """One alert of one webhook notification."""

    receiver: str  # the path the notification came to: the Alertmanager receiver's name
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    received_at: float  # time.monotonic() when the notification arrived

    def matches(self, **labels: str) -> bool:
        return all(self.labels.get(k) == v for k, v in labels.items())


class WebhookSink:
    """Alertmanager's webhook receiver, in the test process: keeps every JSON body it gets.

    Answers 200 to everything (a 5xx makes Alertmanager retry, a 4xx drops the notification).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notifications: list[tuple[str, float, Json]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with sink._lock:
                    sink._notifications.append((self.path, time.monotonic(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output readable; the notifications are inspected instead

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-sink", daemon=True
        )

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def notifications(self) -> list[Json]:
        with self._lock:
            return [body for _, _, body in self._notifications]

    def alerts(self) -> list[ReceivedAlert]:
        """Every alert of every notification so far, oldest first."""
        with self._lock:
            received = list(self._notifications)
        return [
            ReceivedAlert(
                receiver=path.strip("/"),
                status=alert.get("status", ""),
                labels=dict(alert.get("labels", {})),
                annotations=dict(alert.get("annotations", {})),
                received_at=when,
            )
            for path, when, body in received
            for alert in body.get("alerts", [])
        ]

    def wait_for_alert(
        self, *, status: str, timeout: float, since: float = 0.0, **labels: str
    ) -> ReceivedAlert:
        """The first alert with this status and these labels received after `since`."""

        def find() -> ReceivedAlert | None:
            for alert in self.alerts():
                if (
                    alert.received_at >= since
                    and alert.status == status
                    and alert.matches(**labels)
                ):
                    return alert
            return None

        return wait_for(
            find,
            timeout=timeout,
            what=f"a {status} notification of {labels}",
            details=lambda: "received:\n" + "\n".join(map(repr, self.alerts())),
        )


# --- processes --------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A child process with its output in a log file, always stopped by `stop()`."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # The child keeps its own copy of the descriptor; ours can close at once.
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if self.env is None else dict(self.env),
                cwd=self.cwd,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return f"[{self.name}: no log]"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.name} ({self.log_path}) ---\n{tail}"

    def wait_http_ok(self, url: str, timeout: float) -> None:
        """Poll `url` until it answers 200; fail early, with the log, if the process dies."""

        def ready() -> bool:
            if not self.running():
                raise AssertionError(f"{self.name} exited early\n{self.log_tail()}")
            return httpx.get(url, timeout=2).status_code == 200

        wait_for(ready, timeout=timeout, what=f"{self.name} at {url}", details=self.log_tail)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout`: only this process, by its own handle."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


# --- the servers ------------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    process: ManagedProcess

    def query(self, expr: str) -> list[Json]:
        """The result vector of an instant query (raises on an API error)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        payload = response.json()
        if payload.get("status") != "success":
            raise ValueError(f"query {expr!r} failed: {payload}")
        result: list[Json] = payload["data"]["result"]
        return result

    def rule_problems(self) -> list[str] | None:
        """None until every rule was evaluated at least once; then the unhealthy ones (if any)."""
        response = httpx.get(f"{self.url}/api/v1/rules", timeout=5)
        response.raise_for_status()
        rules = [r for g in response.json()["data"]["groups"] for r in g["rules"]]
        if not rules or any(r.get("health") == "unknown" for r in rules):
            return None
        return [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]


@dataclass
class Alertmanager:
    url: str
    process: ManagedProcess

    def alerts(self, **labels: str) -> list[Json]:
        """Every alert Alertmanager holds (active, silenced and inhibited) with these labels."""
        params: list[tuple[str, str]] = [
            ("active", "true"),
            ("silenced", "true"),
            ("inhibited", "true"),
            ("unprocessed", "true"),
        ]
        params += [("filter", f'{key}="{value}"') for key, value in labels.items()]
        response = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        response.raise_for_status()
        alerts: list[Json] = response.json()
        return alerts


def start_alertmanager(workdir: Path, config: Mapping[str, Any], stack: ExitStack) -> Alertmanager:
    """Alertmanager on a loopback port, with no cluster listener (nothing binds beyond lo)."""
    port = free_port()
    config_path = write_yaml(workdir / "alertmanager.yml", config)
    process = ManagedProcess(
        "alertmanager",
        [
            alertmanager_binary(),
            f"--config.file={config_path}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ],
        workdir / "alertmanager.log",
    )
    stack.callback(process.stop)
    process.start()
    server = Alertmanager(f"http://127.0.0.1:{port}", process)
    process.wait_http_ok(f"{server.url}/-/ready", timeout=30)
    return server


def start_prometheus(workdir: Path, config: Mapping[str, Any], stack: ExitStack) -> Prometheus:
    """Prometheus on a loopback port with a throw-away TSDB."""
    port = free_port()
    config_path = write_yaml(workdir / "prometheus.yml", config)
    process = ManagedProcess(
        "prometheus",
        [
            prometheus_binary(),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Resend firing alerts every second, not every minute: Alertmanager learns of
            # state changes (and of alerts it dropped while starting) at test speed.
            "--rules.alert.resend-delay=1s",
            "--log.level=debug",
        ],
        workdir / "prometheus.log",
    )
    stack.callback(process.stop)
    process.start()
    server = Prometheus(f"http://127.0.0.1:{port}", process)
    process.wait_http_ok(f"{server.url}/-/ready", timeout=60)
    return server


@dataclass
class Exporter:
    address: str  # host:port, as Prometheus scrapes it
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def start_exporter(
    workdir: Path,
    config: Mapping[str, Any],
    stack: ExitStack,
    *,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60,
) -> Exporter:
    """`python -m exporter` from this checkout with `config`; waits for /-/ready.

    `env` adds to the inherited environment (e.g. PYTHONPATH for the stand-in pynvml module).
    """
    port = free_port()
    config_path = write_yaml(workdir / "exporter.yml", config)
    process = ManagedProcess(
        "exporter",
        [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={config_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=debug",
        ],
        workdir / "exporter.log",
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
    )
    stack.callback(process.stop)
    process.start()
    exporter = Exporter(f"127.0.0.1:{port}", process)
    process.wait_http_ok(f"{exporter.url}/-/ready", timeout=ready_timeout)
    return exporter


@dataclass
class AlertingStack:
    """Prometheus with the scaled shipped rules, Alertmanager, and the webhook sink."""

    prometheus: Prometheus
    alertmanager: Alertmanager
    sink: WebhookSink
    scale: TimeScale

    def logs(self) -> str:
        return "\n".join(
            server.process.log_tail() for server in (self.prometheus, self.alertmanager)
        )


@contextmanager
def alerting_stack(
    workdir: Path,
    *,
    exporters: Sequence[str],
    scale: TimeScale,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    group_wait: str = "5s",
) -> Iterator[AlertingStack]:
    """Start sink, Alertmanager and Prometheus (in that order); stop all of them on exit.

    `group_wait` is the time Alertmanager holds a new alert before notifying it. Scaled windows
    make some alerts fire within seconds of an outage, about as fast as OllamaDown; in
    production the waits (30 s, 2 min for tickets) let OllamaDown arrive first and inhibit
    them, and 5 s keeps that true here on a loaded machine.
    """
    with ExitStack() as stack:
        sink = stack.enter_context(WebhookSink())
        alertmanager = start_alertmanager(
            workdir,
            derive_alertmanager_config(webhook_url=sink.url, group_wait=group_wait),
            stack,
        )
        rule_files = write_scaled_rules(workdir / "rules", scale)
        config = derive_prometheus_config(
            exporters=exporters,
            alertmanager=alertmanager.url.removeprefix("http://"),
            rule_files=rule_files,
            scrape_interval=scrape_interval,
            evaluation_interval=evaluation_interval,
        )
        prometheus = start_prometheus(workdir, config, stack)
        yield AlertingStack(prometheus, alertmanager, sink, scale)
