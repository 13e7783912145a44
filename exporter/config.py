"""Configuration: the YAML contract, its embedded defaults, and validation at load.

Everything is validated once, here. A bad file is rejected with one message that names the file
and the path of every bad field, so the CLI can exit 2 without a traceback.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationError

from exporter.ollama_options import KNOWN_OPTIONS, LOAD_TIME_OPTIONS, typo_of
from exporter.redact import printable, url_without_credentials
from exporter.shard import ShardConfig
from exporter.validation import (
    INVALID,
    ConfigError,
    Schema,
    StrictModel,
    field_value,
    problems_of,
    read_yaml,
    shown,
)

log = logging.getLogger(__name__)

DEFAULT_OLLAMA_URL = "http://localhost:11434"
DEFAULT_LISTEN_ADDRESS = ":10434"
CONFIG_ENV = "OLLAMA_PROBE_EXPORTER_CONFIG"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_duration(value: object) -> float:
    """Parse 90, 1.5, "90", "90s", "1m30s", "500ms", "1h" into seconds."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{shown(value)} is too large for a duration") from None
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and _DURATION_PART.sub("", text) == "":
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds is None:
        raise ValueError(
            f"{shown(value)} is not a duration: use seconds or units ms, s, m, h (1m30s)"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{shown(value)} is not a positive finite duration")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


# The server protocols a target may speak: the keys of exporter.backends.BACKENDS.
BackendName = Literal["ollama", "openai"]


class TargetConfig(StrictModel):
    name: str = Field(min_length=1)
    url: str
    protocol: BackendName = "ollama"
    headers: dict[str, str] = {}
    gpu: Literal[True, False, "auto"] = "auto"
    tls_ca_file: str | None = None
    tls_insecure_skip_verify: bool = False
    max_models: int = Field(default=200, ge=1)
    # Probe every model the listing has (less exclude_models) when `models` is empty. Unset:
    # on for ollama, whose listing says which models generate; off for openai, whose /v1/models
    # lists embedding models too, which would get chat probes and fail forever.
    discover: bool | None = None

    def discovers(self) -> bool:
        """Whether an empty `models` list means every listed model (else no model at all)."""
        return self.discover if self.discover is not None else self.protocol != "openai"

    def connection(self) -> tuple[object, ...]:
        """What reaching the server depends on: a change of these makes it a new target."""
        return (
            self.protocol,
            self.url,
            self.headers,
            self.tls_ca_file,
            self.tls_insecure_skip_verify,
        )

    def owns_local_gpu(self) -> bool:
        """Whether this machine's NVML readings belong to this target."""
        if self.gpu != "auto":
            return self.gpu
        host = (urlsplit(self.url).hostname or "").lower()
        return host in {"localhost", "127.0.0.1", "::1", socket.gethostname().lower()} or (
            host.startswith("127.")
        )


class ChecksConfig(StrictModel):
    min_words: int | None = Field(default=None, ge=1)
    contains_any: list[str] = []
    regex: str | None = None
    language: Literal["pl", "en"] | None = None

    def names(self) -> tuple[str, ...]:
        """The checks this prompt has configured, in a fixed order (label values of `check`)."""
        configured = {
            "min_words": self.min_words is not None,
            "contains_any": bool(self.contains_any),
            "regex": self.regex is not None,
            "language": self.language is not None,
        }
        return tuple(name for name, on in configured.items() if on)


ThinkSetting = Literal[True, False, "low", "medium", "high"] | None


def _keep_alive(value: object) -> object:
    """Ollama's keep_alive: seconds as a number, or a Go duration string ("5m", "-1", "0")."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h)?)+", value):
        return value
    raise ValueError(
        f"{shown(value)} is not a keep_alive: use seconds or a duration such as 5m or -1"
    )


KeepAlive = Annotated[Any, BeforeValidator(_keep_alive)]


class PromptConfig(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    text: str = Field(min_length=1)
    api: Literal["chat", "generate"] = "chat"
    interval: Duration | None = None
    think: ThinkSetting = None
    cache_bust: bool = True
    options: dict[str, Any] = {}
    checks: ChecksConfig = ChecksConfig()


class ProbeConfig(StrictModel):
    interval: Duration = 300.0
    timeout: Duration = 120.0
    health_interval: Duration = 15.0
    inventory_interval: Duration = 300.0
    concurrency_per_target: int = Field(default=1, ge=1)
    keep_alive: KeepAlive = None
    preserve_residency: bool = False
    only_loaded: bool = False
    max_duty_cycle: float = Field(default=0.25, gt=0, le=1)
    max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)


class GpuConfig(StrictModel):
    enabled: Literal[True, False, "auto"] = "auto"


class WebConfig(StrictModel):
    listen_address: str = DEFAULT_LISTEN_ADDRESS


LIVENESS_PROMPT = PromptConfig(
    id="liveness",
    text="Reply with one short sentence: are you ready?",
    options={"temperature": 0, "seed": 42, "num_predict": 16},
)

AVOCADO_PROMPT = PromptConfig(
    id="avocado_pl",
    text="Jakie są korzyści zdrowotne jedzenia awokado?",
    interval=1800.0,
    options={"temperature": 0, "seed": 42, "num_predict": 512},
    checks=ChecksConfig(min_words=50, contains_any=["potas", "błonnik"], language="pl"),
)


class Config(StrictModel):
    targets: list[TargetConfig] = Field(default_factory=lambda: [default_target()])
    models: list[str] = []
    exclude_models: list[str] = []
    prompts: list[PromptConfig] = Field(default_factory=lambda: [LIVENESS_PROMPT, AVOCADO_PROMPT])
    probe: ProbeConfig = ProbeConfig()
    gpu: GpuConfig = GpuConfig()
    web: WebConfig = WebConfig()
    # Globs of files in Prometheus' file_sd format (exporter.target_files), and how often they
    # are checked for changes.
    target_files: list[str] = []
    target_files_refresh_interval: Duration = 30.0
    shard: ShardConfig = ShardConfig()  # exporter/shard.py: which targets this replica probes

    def interval_of(self, prompt: PromptConfig) -> float:
        """The configured interval of a prompt (before any duty-cycle stretching)."""
        return prompt.interval if prompt.interval is not None else self.probe.interval


# Header values are usually tokens: an error never shows them.
SCHEMA = Schema(Config, secret_keys=frozenset({"headers"}), nested_keys={"options": KNOWN_OPTIONS})


def default_target(environ: Mapping[str, str] | None = None) -> TargetConfig:
    """The zero-config target: $OLLAMA_URL, else $OLLAMA_HOST, else localhost:11434."""
    env = os.environ if environ is None else environ
    variable = "OLLAMA_URL" if env.get("OLLAMA_URL") else "OLLAMA_HOST"
    raw = env.get(variable) or DEFAULT_OLLAMA_URL
    try:
        url = normalise_url(raw)
    except ValueError:
        url = raw
    problem = _url_problem(url)
    if problem:
        raise ConfigError(f"${variable}", [f"the default target's URL: {problem}"])
    return TargetConfig(name="local", url=url)


def normalise_url(raw: str) -> str:
    """Read OLLAMA_HOST forms the way the official client does.

    `host`, `host:port`, `:port`, `[v6]:port`, with or without a scheme and a path. Without a
    scheme the port defaults to 11434; with one, to the scheme's port. An empty host means
    127.0.0.1. Raises ValueError for text that is no URL at all.
    """
    text = raw.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, default_port = "http", text, 11434
    else:
        default_port = 443 if scheme == "https" else 80
    parts = urlsplit(f"{scheme}://{rest}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Load, validate and resolve a config file; None gives the embedded defaults."""
    env = os.environ if environ is None else environ
    if path is None:
        return Config(targets=[default_target(env)])
    return parse_config(read_yaml(path), str(path), env)


def parse_config(data: object, source: str, environ: Mapping[str, str]) -> Config:
    """Validate already-parsed YAML data; raise ConfigError naming every bad field.

    Schema and semantic problems are reported together: each semantic check reads only the
    fields it needs, so one broken field does not hide the problems of the others.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping of keys"])
    if "targets" not in data:
        # With target_files the fleet comes from files: no default target beside it.
        targets = [] if "target_files" in data else [default_target(environ).model_dump()]
        data = {**data, "targets": targets}
    if "prompts" not in data:
        data = {**data, "prompts": [p.model_dump() for p in (LIVENESS_PROMPT, AVOCADO_PROMPT)]}
    config: Config | None = None
    try:
        config = Config.model_validate(data)
        problems = []
    except ValidationError as exc:
        problems = problems_of(exc, SCHEMA)
    problems += semantic_problems(data, environ)
    if problems or config is None:
        raise ConfigError(source, problems)
    config = _resolve_headers(config, environ)
    _warn_about_options(config, source)
    _warn_about_openai(config, source)
    return config


def semantic_problems(data: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Problems across fields (duplicates, URLs, timeouts, ...) of raw, possibly broken data."""
    targets, prompts = _entries(data.get("targets")), _entries(data.get("prompts"))
    names = [(i, field_value(TargetConfig, "name", t)) for i, t in targets]
    problems = _duplicates(names, "targets", "name")
    ids = [(i, field_value(PromptConfig, "id", p)) for i, p in prompts]
    problems += _duplicates(ids, "prompts", "id")
    for i, target in targets:
        problems += _target_problems(i, target)
        problems += _discovery_problems(i, target, data.get("models"))
    probe = data.get("probe", {})
    for i, prompt in prompts:
        if isinstance(probe, dict):
            problems += _timeout_problems(i, prompt, probe)
        problems += _prompt_problems(i, prompt)
    if data.get("prompts") == []:
        problems.append("prompts: at least one prompt is needed")
    for i, target in targets:
        problems += _header_problems(i, target, environ)
    problems += _target_files_problems(data.get("target_files"))
    return problems


TARGET_FILE_SUFFIXES = (".json", ".yml", ".yaml")


def _target_files_problems(patterns: object) -> list[str]:
    """A glob must name JSON or YAML files, as Prometheus' file_sd_configs asks."""
    if not isinstance(patterns, list):
        return []
    return [
        f"target_files[{i}]: {shown(p)} does not end in .json, .yml or .yaml"
        for i, p in enumerate(patterns)
        if isinstance(p, str) and not p.endswith(TARGET_FILE_SUFFIXES)
    ]


def _entries(items: object) -> list[tuple[int, Mapping[str, Any]]]:
    """The mappings of a list with their index; anything else is a schema problem already."""
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _target_problems(i: int, target: Mapping[str, Any]) -> list[str]:
    problems = []
    url = field_value(TargetConfig, "url", target)
    if url is not INVALID and (problem := _url_problem(url)):
        problems.append(f"targets[{i}].url: {problem}")
    ca_file = field_value(TargetConfig, "tls_ca_file", target)
    if ca_file is not INVALID and ca_file is not None:
        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"targets[{i}].tls_ca_file: cannot load {ca_file!r} as CA file: {exc}")
    return problems


def _discovery_problems(i: int, target: Mapping[str, Any], models: object) -> list[str]:
    """A target that does not discover needs the models to probe named."""
    protocol = field_value(TargetConfig, "protocol", target)
    discover = field_value(TargetConfig, "discover", target)
    if INVALID in (protocol, discover) or models:
        return []
    config = TargetConfig.model_construct(protocol=protocol, discover=discover)
    if config.discovers():
        return []
    return [
        f"targets[{i}].discover: target {shown(target.get('name'))} ({protocol}) has nothing to "
        "probe: name the models in `models`, or set `discover: true` (with `exclude_models` for "
        "the embedding models its listing holds, which chat probes would fail on forever)"
    ]


def _timeout_problems(i: int, prompt: Mapping[str, Any], probe: Mapping[str, Any]) -> list[str]:
    timeout = field_value(ProbeConfig, "timeout", probe)
    interval = field_value(PromptConfig, "interval", prompt)
    if interval is None:
        interval = field_value(ProbeConfig, "interval", probe)
    if INVALID in (timeout, interval) or timeout < interval:
        return []
    name = prompt.get("id")
    which = f"prompt {name!r}" if isinstance(name, str) else "the prompt"
    return [
        f"prompts[{i}].interval: probe.timeout ({timeout:g}s) must be below the interval of "
        f"{which} ({interval:g}s)"
    ]


def _prompt_problems(i: int, prompt: Mapping[str, Any]) -> list[str]:
    problems = []
    checks = prompt.get("checks", {})
    regex = field_value(ChecksConfig, "regex", checks) if isinstance(checks, dict) else None
    if isinstance(regex, str):
        try:
            re.compile(regex)
        except (re.error, OverflowError, RecursionError) as exc:
            problems.append(
                f"prompts[{i}].checks.regex: {shown(regex)} is not a valid regular "
                f"expression: {exc}"
            )
    options = field_value(PromptConfig, "options", prompt)
    for name in options if isinstance(options, dict) else ():
        if (nearest := typo_of(name)) is not None:
            problems.append(
                f"prompts[{i}].options: unknown option {name!r}, did you mean {nearest!r}?"
            )
    return problems


def _duplicates(values: list[tuple[int, Any]], key: str, field: str) -> list[str]:
    seen: set[str] = set()
    problems = []
    for i, value in values:
        if value is INVALID:
            continue
        if value in seen:
            problems.append(f"{key}[{i}].{field}: duplicate {field} {value!r}")
        seen.add(value)
    return problems


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        # Not echoed: an unparsable URL could hold credentials we cannot strip.
        return "the value (not shown) is not a valid URL"
    shown_url = shown(url_without_credentials(url))
    if parts.scheme not in {"http", "https"}:
        return f"{shown_url} does not start with http:// or https://"
    if not parts.hostname:
        return f"{shown_url} has no host"
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"{shown_url} has an invalid port"
    return None


def _header_problems(i: int, target: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Unset ${VAR}s and control characters; say which header, never its value (a secret)."""
    headers = field_value(TargetConfig, "headers", target)
    if headers is INVALID:
        return []
    problems = []
    for name, value in headers.items():
        for var in _ENV_REF.findall(value):
            if var not in environ:
                problems.append(
                    f"targets[{i}].headers.{name}: environment variable {var} is not set"
                )
        if any(c in _expand(value, environ) for c in "\r\n\0"):
            problems.append(f"targets[{i}].headers.{name}: the value holds a control character")
    return problems


def _expand(value: str, environ: Mapping[str, str]) -> str:
    return _ENV_REF.sub(lambda m: environ.get(m.group(1), ""), value)


def _resolve_headers(config: Config, environ: Mapping[str, str]) -> Config:
    """Expand ${VAR} in header values (checked by _header_problems)."""
    targets = [
        t.model_copy(update={"headers": {k: _expand(v, environ) for k, v in t.headers.items()}})
        for t in config.targets
    ]
    return config.model_copy(update={"targets": targets})


def _warn_about_options(config: Config, source: str) -> None:
    for prompt in config.prompts:
        for option in sorted(LOAD_TIME_OPTIONS & prompt.options.keys()):
            log.warning(
                "prompt %s sets load-time option %s: Ollama reloads a resident model whose "
                "value differs, so a probe may pay (and cause) a cold load",
                prompt.id,
                option,
            )
        for option in sorted(prompt.options.keys() - KNOWN_OPTIONS):
            log.warning(
                "%s: prompt %s sets option %r, which is not among Ollama's documented options: "
                "it is sent as is (an Ollama that does not know it ignores it)",
                source,
                prompt.id,
                option,
            )


# The prompt options an openai target sends, and the request field each becomes; the others
# (top_k, num_ctx, ...) are Ollama's own and are not sent.
OPENAI_OPTIONS: Mapping[str, str] = {
    "temperature": "temperature",
    "seed": "seed",
    "num_predict": "max_tokens",
    "top_p": "top_p",
    "stop": "stop",
}


def _warn_about_openai(config: Config, source: str) -> None:
    """Once per load: the settings and prompt options that openai targets do not take."""
    names = [t.name for t in config.targets if t.protocol == "openai"]
    if not names:
        return
    targets = ", ".join(printable(n) for n in names)
    probe = config.probe
    unused = [
        setting
        for setting, set_ in (
            ("probe.only_loaded", probe.only_loaded),
            ("probe.preserve_residency", probe.preserve_residency),
            ("probe.keep_alive", probe.keep_alive is not None),
        )
        if set_
    ]
    if unused:
        log.warning(
            "%s: %s do(es) not apply to openai targets (%s): the protocol has no residency, "
            "so they are probed without them",
            source,
            ", ".join(unused),
            targets,
        )
    for prompt in config.prompts:
        dropped = sorted(prompt.options.keys() - OPENAI_OPTIONS.keys())
        if prompt.think is not None:
            dropped.append("think")
        if dropped:
            log.warning(
                "%s: prompt %s sets %s, which openai targets (%s) are not sent: only %s are",
                source,
                prompt.id,
                ", ".join(dropped),
                targets,
                ", ".join(sorted(OPENAI_OPTIONS)),
            )
