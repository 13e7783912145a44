"""The configuration contract: defaults, the YAML keys, durations, ${ENV} headers, and rejection.

Bad files live in tests/testdata/config/invalid-*.yaml, each paired below with the exact lines
its error must carry (the file and the field path of every problem), as a table in the style of
blackbox_exporter's config tests. A hypothesis property checks that arbitrary YAML-shaped data
is either accepted or rejected with a ConfigError, never with another exception.
"""

from __future__ import annotations

import importlib
import logging
import math
import string
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import (
    DEFAULT_LISTEN_ADDRESS,
    Config,
    ConfigError,
    TargetConfig,
    default_target,
    load_config,
    normalise_url,
    parse_config,
    parse_duration,
)
from exporter.ollama_options import KNOWN_OPTIONS, LOAD_TIME_OPTIONS

CONFIG_DIR = Path(__file__).parent / "testdata" / "config"
VALID = CONFIG_DIR / "valid.yaml"
VALID_ENV = {"PROBE_TEST_TOKEN": "s3cret-token"}

# file name -> the exact problem lines after "<file>: ", in order.
INVALID_CASES: dict[str, list[str]] = {
    "invalid-unknown-key.yaml": [
        "prompts[0]: unknown key 'temprature', did you mean 'options.temperature'?"
    ],
    "invalid-key-typo.yaml": ["probe: unknown key 'intervall', did you mean 'interval'?"],
    "invalid-wrong-type.yaml": ["probe.concurrency_per_target: 'two' is not an integer"],
    "invalid-max-models.yaml": ["targets[0].max_models: 'lots' is not an integer"],
    "invalid-header-type.yaml": [
        "targets[0].headers.Authorization: the value (not shown) is not a string"
    ],
    "invalid-duplicate-target.yaml": ["targets[1].name: duplicate name 'box'"],
    "invalid-duplicate-prompt.yaml": ["prompts[1].id: duplicate id 'liveness'"],
    "invalid-prompt-id.yaml": [
        "prompts[0].id: 'Avocado-PL' does not match the pattern '^[a-z0-9_]+$'"
    ],
    "invalid-url-scheme.yaml": [
        "targets[0].url: 'ftp://127.0.0.1:11434' does not start with http:// or https://",
    ],
    "invalid-timeout-interval.yaml": [
        "prompts[0].interval: probe.timeout (120s) must be below the interval of prompt "
        "'fast' (90s)",
    ],
    "invalid-duration.yaml": [
        "probe.interval: '5 minutes' is not a duration: use seconds or units ms, s, m, h (1m30s)",
    ],
    "invalid-header-env.yaml": [
        "targets[0].headers.Authorization: environment variable PROBE_TEST_UNSET_TOKEN is not set",
    ],
    "invalid-regex.yaml": [
        "prompts[0].checks.regex: '(unclosed' is not a valid regular expression: missing ), "
        "unterminated subpattern at position 0",
    ],
    "invalid-option-typo.yaml": [
        "prompts[0].options: unknown option 'temprature', did you mean 'temperature'?"
    ],
    "invalid-think.yaml": [
        "prompts[0].think: 'maximum' is not true, false, 'low', 'medium' or 'high'",
    ],
    "invalid-gpu.yaml": ["targets[0].gpu: 'sometimes' is not true, false or 'auto'"],
    "invalid-protocol.yaml": ["targets[0].protocol: 'vllm' is not 'ollama' or 'openai'"],
    "invalid-backend-renamed.yaml": [
        "targets[0]: unknown key 'backend': it is called 'protocol' now"
    ],
    "invalid-openai-nothing-to-probe.yaml": [
        "targets[1].discover: target 'vllm' (openai) has nothing to probe: name the models in "
        "`models`, or set `discover: true` (with `exclude_models` for the embedding models its "
        "listing holds, which chat probes would fail on forever)",
    ],
    "invalid-duty-cycle.yaml": ["probe.max_duty_cycle: 1.5 is above the maximum 1"],
    "invalid-not-yaml.yaml": ["not valid YAML: expected ',' or ']', but got ':' (line 3)"],
    "invalid-not-mapping.yaml": ["the top level must be a mapping of keys"],
    # Schema problems first, then the semantic ones whose fields are intact.
    "invalid-type-and-semantic.yaml": [
        "targets[0].max_models: 'lots' is not an integer",
        "probe.concurrency_per_target: 'two' is not an integer",
        "targets[1].name: duplicate name 'box'",
        "targets[1].url: 'ftp://127.0.0.2:11434' does not start with http:// or https://",
        "prompts[0].interval: probe.timeout (120s) must be below the interval of prompt "
        "'fast' (90s)",
        "prompts[0].options: unknown option 'num_predcit', did you mean 'num_predict'?",
    ],
}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: ConfigError) -> list[str]:
    """The message's problem lines, without the indentation."""
    return [line.strip() for line in str(exc).splitlines()[1:]]


# --- the table of bad files -------------------------------------------------------------------


def test_every_invalid_file_has_a_case() -> None:
    assert sorted(p.name for p in CONFIG_DIR.glob("invalid-*.yaml")) == sorted(INVALID_CASES)


@pytest.mark.parametrize(
    ("name", "expected"), sorted(INVALID_CASES.items()), ids=sorted(INVALID_CASES)
)
def test_invalid_file_is_rejected_with_its_exact_message(name: str, expected: list[str]) -> None:
    path = CONFIG_DIR / name
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    exc = caught.value
    assert exc.source == str(path)
    assert exc.problems == expected
    assert str(exc).splitlines() == [
        f"invalid configuration ({len(expected)} problem(s)):",
        *(f"  {path}: {problem}" for problem in expected),
    ]


def test_valid_file_sets_every_key_of_the_contract() -> None:
    config = load_config(VALID, environ=VALID_ENV)
    local, remote = config.targets
    assert local == TargetConfig(
        name="local",
        url="http://127.0.0.1:11434",
        headers={"Authorization": "Bearer s3cret-token", "X-Static": "plain"},
        gpu="auto",
        tls_ca_file=None,
        tls_insecure_skip_verify=False,
        max_models=50,
    )
    assert (remote.name, remote.url, remote.headers, remote.gpu) == (
        "remote",
        "https://gpu-box.example:8443",
        {},
        False,
    )
    assert local.owns_local_gpu() and not remote.owns_local_gpu()
    assert config.models == ["llama3.2", "gemma3:12b"]
    assert config.exclude_models == ["*embed*", "nomic-*"]
    avocado, liveness = config.prompts
    assert avocado.id == "avocado_pl"
    assert avocado.text == "Jakie są korzyści zdrowotne jedzenia awokado?"
    assert (avocado.api, avocado.interval, avocado.think, avocado.cache_bust) == (
        "chat",
        1800.0,
        None,
        True,
    )
    assert avocado.options == {"temperature": 0, "seed": 42, "num_predict": 512}
    assert avocado.checks.min_words == 50
    assert avocado.checks.contains_any == ["potas", "błonnik"]
    assert (avocado.checks.regex, avocado.checks.language) == (None, "pl")
    assert avocado.checks.names() == ("min_words", "contains_any", "language")
    assert (liveness.id, liveness.api, liveness.interval, liveness.think) == (
        "liveness_en",
        "generate",
        90.0,
        "low",
    )
    assert liveness.cache_bust is False
    assert liveness.checks.names() == ("regex", "language")
    probe = config.probe
    assert (probe.interval, probe.timeout, probe.health_interval, probe.inventory_interval) == (
        300.0,
        60.0,
        15.0,
        3600.0,
    )
    assert probe.concurrency_per_target == 2
    assert probe.keep_alive == "10m"
    assert probe.preserve_residency is True and probe.only_loaded is True
    assert probe.max_duty_cycle == 0.5
    assert probe.max_response_bytes == 1048576
    assert config.gpu.enabled == "auto"
    assert config.web.listen_address == "127.0.0.1:10434"
    assert config.target_files == ["fleet/*.json", "/etc/ollama-exporter/targets/*.yaml"]
    assert config.target_files_refresh_interval == 60.0


def test_every_problem_is_listed_in_one_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "targets:\n"
        "  - {name: a, url: 'http://127.0.0.1:1', headers: {X-Key: '${PROBE_TEST_NOPE}'}}\n"
        "  - {name: a, url: 'gopher://127.0.0.1:2'}\n"
        "prompts:\n"
        "  - {id: p, text: hi}\n"
        "  - {id: p, text: again, checks: {regex: '[a-'}}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == [
        "targets[1].name: duplicate name 'a'",
        "prompts[1].id: duplicate id 'p'",
        "targets[1].url: 'gopher://127.0.0.1:2' does not start with http:// or https://",
        "prompts[1].checks.regex: '[a-' is not a valid regular expression: unterminated "
        "character set at position 0",
        "targets[0].headers.X-Key: environment variable PROBE_TEST_NOPE is not set",
    ]
    assert str(caught.value).startswith("invalid configuration (5 problem(s)):\n")


def test_every_schema_problem_is_listed_in_one_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "probe: {interval: soon, concurrency_per_target: 0, colour: red}\ngpu: {enabled: maybe}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == [
        "probe.interval: 'soon' is not a duration: use seconds or units ms, s, m, h (1m30s)",
        "probe.concurrency_per_target: 0 is below the minimum 1",
        "probe: unknown key 'colour'",
        "gpu.enabled: 'maybe' is not true, false or 'auto'",
    ]


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, environ={})
    assert caught.value.problems == ["cannot read file: No such file or directory"]
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:11434", "'127.0.0.1:11434' does not start with http:// or https://"),
        ("http://", "'http://' has no host"),
        ("http://127.0.0.1:99999", "'http://127.0.0.1:99999' has an invalid port"),
        ("http://127.0.0.1:port", "'http://127.0.0.1:port' has an invalid port"),
    ],
)
def test_a_bad_target_url_is_a_config_error(tmp_path: Path, url: str, problem: str) -> None:
    path = write(tmp_path, f"targets: [{{name: box, url: '{url}'}}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == [f"targets[0].url: {problem}"]


def test_an_unclosed_ipv6_bracket_in_a_url_is_a_config_error(tmp_path: Path) -> None:
    # urlsplit() itself raises ValueError("Invalid IPv6 URL") for this one.
    path = write(tmp_path, "targets: [{name: box, url: 'http://[::1:11434'}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert len(caught.value.problems) == 1
    # The URL itself is not echoed: an unparsable one could hold credentials we cannot strip.
    assert caught.value.problems == ["targets[0].url: the value (not shown) is not a valid URL"]


def test_a_regex_that_python_cannot_compile_for_size_is_a_config_error(tmp_path: Path) -> None:
    # re.compile raises OverflowError, not re.error, for a repeat count past its limit.
    path = write(tmp_path, "prompts: [{id: p, text: hi, checks: {regex: 'a{4294967296}'}}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("prompts[0].checks.regex: ")


def test_a_check_whose_input_is_broken_is_not_reported(tmp_path: Path) -> None:
    # The interval cannot be read, so timeout < interval cannot be judged; the second target's
    # name is no string, so it is no duplicate; the options are no mapping, so no typo check.
    path = write(
        tmp_path,
        "targets:\n"
        "  - {name: box, url: 'http://127.0.0.1:1'}\n"
        "  - {name: [box], url: 'http://127.0.0.1:2'}\n"
        "probe: {timeout: 10m}\n"
        "prompts: [{id: p, text: hi, interval: soon, options: [temprature]}]\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == [
        "targets[1].name: a list is not a string",
        "prompts[0].interval: 'soon' is not a duration: use seconds or units ms, s, m, h (1m30s)",
        "prompts[0].options: a list is not a mapping",
    ]


@pytest.mark.parametrize(
    "headers",
    ["'Bearer tok-918273'", "{Authorization: 918273}", "{Authorization: [tok-918273]}"],
    ids=["not a mapping", "a number", "a list"],
)
def test_a_bad_header_value_is_never_shown(tmp_path: Path, headers: str) -> None:
    path = write(tmp_path, f"targets: [{{name: box, url: 'http://h:1', headers: {headers}}}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("targets[0].headers")
    assert "918273" not in str(caught.value)


def test_a_long_value_is_shortened(tmp_path: Path) -> None:
    path = write(tmp_path, f"gpu: {{enabled: {'x' * 500}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("gpu.enabled: 'xxx") and "x... is not" in problem
    assert len(problem) < 120 and "is not true, false or 'auto'" in problem


# --- prompts[].options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("temprature", "temperature"),
        ("temperatur", "temperature"),
        ("num_predcit", "num_predict"),
        ("repeat_penatly", "repeat_penalty"),
        ("num_cxt", "num_ctx"),
        ("sed", "seed"),
        ("stpo", "stop"),
    ],
)
def test_an_option_close_to_a_documented_one_is_a_typo(
    tmp_path: Path, written: str, meant: str
) -> None:
    path = write(tmp_path, f"prompts: [{{id: p, text: hi, options: {{{written}: 1}}}}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == [
        f"prompts[0].options: unknown option {written!r}, did you mean {meant!r}?"
    ]


def test_an_unknown_option_far_from_the_documented_ones_is_sent_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "prompts: [{id: p, text: hi, options: {mirostat: 2, temperature: 0}}]\n")
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        config = load_config(path, environ={})
    assert config.prompts[0].options == {"mirostat": 2, "temperature": 0}
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{path}: prompt p sets option 'mirostat', which is not among")
    assert "sent as is" in warning


def test_every_documented_option_is_accepted_and_listed_in_the_docs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = {name: 1 for name in sorted(KNOWN_OPTIONS)}
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        config = parse_config({"prompts": [{"id": "p", "text": "hi", "options": options}]}, "t", {})
    assert config.prompts[0].options == options
    # Only the load-time warnings: no documented option is called unknown.
    assert all("load-time option" in r.getMessage() for r in caplog.records)
    assert LOAD_TIME_OPTIONS < KNOWN_OPTIONS
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert [name for name in sorted(KNOWN_OPTIONS) if f"`{name}`" not in docs] == []


# --- zero-config defaults ---------------------------------------------------------------------


def test_zero_config_probes_localhost_with_the_two_built_in_prompts() -> None:
    config = load_config(None, environ={})
    assert config.targets == [TargetConfig(name="local", url="http://localhost:11434")]
    assert config.targets[0].headers == {} and config.targets[0].gpu == "auto"
    assert config.models == [] and config.exclude_models == []
    liveness, avocado = config.prompts
    assert liveness.id == "liveness"
    assert liveness.text and liveness.text.isascii()
    assert liveness.options["num_predict"] == 16
    assert liveness.interval is None and config.interval_of(liveness) == config.probe.interval
    assert liveness.checks.names() == ()
    assert avocado.id == "avocado_pl"
    assert avocado.text == "Jakie są korzyści zdrowotne jedzenia awokado?"
    assert avocado.options["num_predict"] == 512
    assert config.interval_of(avocado) == 1800.0
    assert avocado.checks.names() == ("min_words", "contains_any", "language")
    assert avocado.checks.language == "pl"
    for prompt in config.prompts:
        assert (prompt.api, prompt.think, prompt.cache_bust) == ("chat", None, True)
    probe = config.probe
    assert (probe.interval, probe.timeout, probe.health_interval, probe.inventory_interval) == (
        300.0,
        120.0,
        15.0,
        300.0,
    )
    assert probe.concurrency_per_target == 1
    assert probe.keep_alive is None
    assert probe.preserve_residency is False and probe.only_loaded is False
    assert probe.max_duty_cycle == 0.25
    assert config.gpu.enabled == "auto"
    assert config.web.listen_address == DEFAULT_LISTEN_ADDRESS == ":10434"


def test_zero_config_equals_an_empty_file(tmp_path: Path) -> None:
    empty = write(tmp_path, "# nothing set\n")
    assert load_config(empty, environ={}) == load_config(None, environ={})


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://localhost:11434"),
        ({"OLLAMA_URL": "http://gpu-box:12345"}, "http://gpu-box:12345"),
        ({"OLLAMA_HOST": "0.0.0.0:11434"}, "http://0.0.0.0:11434"),
        ({"OLLAMA_HOST": "gpu-box"}, "http://gpu-box:11434"),
        ({"OLLAMA_HOST": "https://gpu-box"}, "https://gpu-box:443"),
        (
            {"OLLAMA_URL": "http://first:1111", "OLLAMA_HOST": "second:2222"},
            "http://first:1111",
        ),
        ({"OLLAMA_URL": "", "OLLAMA_HOST": "second:2222"}, "http://second:2222"),
    ],
    ids=["nothing", "url", "host-port", "host-only", "host-https", "url-wins", "empty-url"],
)
def test_default_target_follows_the_environment(
    tmp_path: Path, environ: dict[str, str], url: str
) -> None:
    expected = [TargetConfig(name="local", url=url)]
    assert load_config(None, environ=environ).targets == expected
    # A file without `targets:` gets the same default target.
    assert load_config(write(tmp_path, "probe: {timeout: 60s}\n"), environ=environ).targets == (
        expected
    )


def _endpoint(url: str) -> tuple[str, str | None, int, str]:
    """Where a URL really sends requests: scheme, host, port (scheme default), path."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


# OLLAMA_HOST forms and the endpoint the official Python client (ollama 0.6.3) derives from them.
OLLAMA_HOST_FORMS = [
    ("0.0.0.0:11434", "http://0.0.0.0:11434"),
    ("gpu-box", "http://gpu-box:11434"),
    ("gpu-box:8080", "http://gpu-box:8080"),
    ("gpu-box:8080/", "http://gpu-box:8080"),
    ("https://gpu-box", "https://gpu-box:443"),
    ("https://gpu-box:8443/ollama", "https://gpu-box:8443/ollama"),
    ("[::1]", "http://[::1]:11434"),
    ("[::1]:8080", "http://[::1]:8080"),
    ("http://gpu-box", "http://gpu-box:80"),
    (":8080", "http://127.0.0.1:8080"),
    ("gpu-box/ollama", "http://gpu-box:11434/ollama"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), OLLAMA_HOST_FORMS, ids=[f[0] for f in OLLAMA_HOST_FORMS]
)
def test_ollama_host_table_is_what_the_official_client_does(raw: str, expected: str) -> None:
    client = importlib.import_module("ollama._client")
    assert client._parse_host(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), OLLAMA_HOST_FORMS, ids=[f[0] for f in OLLAMA_HOST_FORMS]
)
def test_ollama_host_is_read_as_the_official_client_reads_it(raw: str, expected: str) -> None:
    assert _endpoint(normalise_url(raw)) == _endpoint(expected)
    assert _endpoint(default_target({"OLLAMA_HOST": raw}).url) == _endpoint(expected)


@pytest.mark.parametrize("variable", ["OLLAMA_URL", "OLLAMA_HOST"])
@pytest.mark.parametrize("value", ["gpu-box:port", "http://[::1:11434"])
def test_a_malformed_ollama_address_is_a_config_error(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={variable: value})
    assert variable in str(caught.value)


def test_targets_in_a_file_replace_the_default_target(tmp_path: Path) -> None:
    path = write(tmp_path, "targets: [{name: box, url: 'http://10.0.0.7:11434'}]\n")
    config = load_config(path, environ={"OLLAMA_URL": "http://elsewhere:1"})
    assert [(t.name, t.url) for t in config.targets] == [("box", "http://10.0.0.7:11434")]
    assert [p.id for p in config.prompts] == ["liveness", "avocado_pl"]


def test_prompts_in_a_file_replace_the_built_in_prompts(tmp_path: Path) -> None:
    path = write(tmp_path, "prompts: [{id: only_one, text: 'Say hi.'}]\n")
    config = load_config(path, environ={})
    assert [p.id for p in config.prompts] == ["only_one"]
    assert config.targets == [TargetConfig(name="local", url="http://localhost:11434")]
    only = config.prompts[0]
    assert (only.api, only.interval, only.think, only.cache_bust, only.options) == (
        "chat",
        None,
        None,
        True,
        {},
    )
    assert only.checks.names() == ()


def test_an_empty_prompt_list_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "prompts: []\n"), environ={})
    assert caught.value.problems == ["prompts: at least one prompt is needed"]


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("2.5", 2.5),
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (" 5m ", 300.0),
    ],
)
def test_duration_forms(tmp_path: Path, value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds
    # The same value through a file, in every duration field.
    rendered = yaml.safe_dump(value)
    text = "probe:\n" + "".join(
        f"  {key}: {rendered.splitlines()[0]}\n"
        for key in ("interval", "health_interval", "inventory_interval")
    )
    text += "  timeout: 100ms\nprompts: [{id: p, text: hi, interval: " + rendered.splitlines()[0]
    text += "}]\n"
    config = load_config(write(tmp_path, text), environ={})
    probe = config.probe
    assert (probe.interval, probe.health_interval, probe.inventory_interval) == (seconds,) * 3
    assert config.prompts[0].interval == seconds


@pytest.mark.parametrize(
    "value",
    ["5 minutes", "", "m", "1d", "90S", "1m30", "1.2.3s", "-5s", "0s", 0, -1, True, None, [5]],
    ids=repr,
)
def test_bad_durations_are_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, ".nan", ".inf"], ids=repr)
def test_a_duration_must_be_finite(tmp_path: Path, value: object) -> None:
    # YAML's .nan and .inf load as floats; nan slips past "must be positive" (nan <= 0 is
    # False), and an infinite interval overflows the scheduler's timedelta.
    if isinstance(value, float):
        with pytest.raises(ValueError):
            parse_duration(value)
    else:
        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, f"probe: {{interval: {value}}}\n"), environ={})
        assert caught.value.problems[0].startswith("probe.interval: ")


def test_a_huge_integer_duration_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "probe: {interval: 1" + "0" * 400 + "}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems[0].startswith("probe.interval: ")


def test_timeout_must_be_below_the_inherited_interval_too(tmp_path: Path) -> None:
    path = write(tmp_path, "probe: {interval: 1m, timeout: 1m}\nprompts: [{id: p, text: hi}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == [
        "prompts[0].interval: probe.timeout (60s) must be below the interval of prompt 'p' (60s)"
    ]


# --- headers with ${ENV} ----------------------------------------------------------------------


def test_header_values_expand_environment_variables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "targets:\n"
        "  - name: box\n"
        "    url: http://127.0.0.1:11434\n"
        "    headers:\n"
        "      Authorization: 'Bearer ${TOKEN}'\n"
        "      X-Pair: '${USER_A}:${USER_B}'\n"
        "      X-Empty: '${EMPTY}'\n"
        "      X-Literal: '$TOKEN and {TOKEN}'\n",
    )
    environ = {"TOKEN": "abc", "USER_A": "u", "USER_B": "v", "EMPTY": ""}
    assert load_config(path, environ=environ).targets[0].headers == {
        "Authorization": "Bearer abc",
        "X-Pair": "u:v",
        "X-Empty": "",
        "X-Literal": "$TOKEN and {TOKEN}",
    }


def test_an_unset_header_variable_names_it_and_not_the_other_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "targets:\n"
        "  - name: box\n"
        "    url: http://127.0.0.1:11434\n"
        "    headers: {X-Static: hunter2-literal, Authorization: 'Bearer ${TOKEN} ${GONE}'}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"TOKEN": "abc-secret"})
    assert caught.value.problems == [
        "targets[0].headers.Authorization: environment variable GONE is not set"
    ]
    assert "hunter2" not in str(caught.value) and "abc-secret" not in str(caught.value)


# --- load-time options ------------------------------------------------------------------------


def test_load_time_options_are_accepted_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        "prompts:\n"
        "  - {id: big_ctx, text: hi, options: {num_ctx: 8192, num_gpu: 99, temperature: 0}}\n"
        "  - {id: plain, text: hi, options: {temperature: 0, seed: 1, num_predict: 8}}\n",
    )
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        config = load_config(path, environ={})
    assert config.prompts[0].options == {"num_ctx": 8192, "num_gpu": 99, "temperature": 0}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.name for r in warnings] == ["exporter.config", "exporter.config"]
    messages = sorted(r.getMessage() for r in warnings)
    assert [m.split(":")[0] for m in messages] == [
        "prompt big_ctx sets load-time option num_ctx",
        "prompt big_ctx sets load-time option num_gpu",
    ]
    assert all("reload" in m for m in messages)
    assert not any("plain" in m or "temperature" in m for m in messages)


def test_no_warning_without_load_time_options(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        load_config(None, environ={})
    assert caplog.records == []


# --- property: anything YAML can hold is accepted or a ConfigError ----------------------------

CONTRACT_KEYS = [
    "targets", "models", "exclude_models", "prompts", "probe", "gpu", "web",
    "name", "url", "backend", "headers", "tls_ca_file", "tls_insecure_skip_verify", "max_models",
    "id", "text", "api", "interval", "think", "cache_bust", "options", "checks",
    "min_words", "contains_any", "regex", "language", "timeout", "health_interval",
    "inventory_interval", "concurrency_per_target", "keep_alive", "preserve_residency",
    "only_loaded", "max_duty_cycle", "max_response_bytes", "enabled", "listen_address",
    "target_files", "target_files_refresh_interval",
]  # fmt: skip
# Per field, values a user might plausibly (mis)type; each field also gets arbitrary data.
URLS = [
    "http://127.0.0.1:11434", "https://box", "ftp://x", "http://", "127.0.0.1:11434",
    "http://[::1", "http://[::1]:99999", "http://h:port",
]  # fmt: skip
DURATIONS = [
    "5m", "1m30s", "500ms", "90", 90, 1.5, 0, -1, "0s", "1d", math.nan, math.inf, 2**63, 10**400,
]  # fmt: skip
REGEXES = ["(?i)ok", "(unclosed", "[a-", "a{4294967296}", "(?P<x>a)(?P<x>b)", "*"]
HEADER_VALUES = ["plain", "${PROBE_TEST_SET}", "${PROBE_TEST_UNSET}", "${", "$PROBE_TEST_SET"]
NAMES = ["local", "box", "", "a b", "Bad-Id", "p", "q"]
CHOICES = [True, False, None, "auto", "low", "medium", "high", "chat", "generate", "pl", "en"]
NUMBERS = [0, 1, -1, 0.25, 1.0, 1.5, 2**63, 10**400, math.nan, "1", "two"]

keys = st.one_of(st.sampled_from(CONTRACT_KEYS), st.text(string.ascii_letters + "_-", max_size=8))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=4,
)


def field(pool: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(pool), values)


def section(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with some of `fields`, now and then with an unknown key as well."""
    return st.fixed_dictionaries({}, optional={**fields, "extra_key": values})


targets = section(
    {
        "name": field(NAMES),
        "url": field(URLS),
        "headers": st.dictionaries(keys, field(HEADER_VALUES), max_size=2),
        "gpu": field(CHOICES),
        "protocol": field(["ollama", "openai", "Ollama"]),
        "discover": field([True, False, None, "yes"]),
        "max_models": field(NUMBERS),
    }
)
prompts = section(
    {
        "id": field(NAMES),
        "text": field(["hi", ""]),
        "api": field(CHOICES),
        "interval": field(DURATIONS),
        "think": field(CHOICES),
        "options": st.dictionaries(st.sampled_from(["num_ctx", "seed", "x"]), scalars),
        "checks": section(
            {
                "min_words": field(NUMBERS),
                "contains_any": field([["potas"], []]),
                "regex": field(REGEXES),
                "language": field(CHOICES),
            }
        ),
    }
)
probe = section(
    {
        "interval": field(DURATIONS),
        "timeout": field(DURATIONS),
        "health_interval": field(DURATIONS),
        "keep_alive": field(DURATIONS),
        "max_duty_cycle": field(NUMBERS),
        "concurrency_per_target": field(NUMBERS),
    }
)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "targets": st.lists(targets, max_size=2),
        "models": field([["llama3.2"], []]),
        "prompts": st.lists(prompts, max_size=2),
        "probe": probe,
        "gpu": section({"enabled": field(CHOICES)}),
        "web": section({"listen_address": field([":10434", "127.0.0.1:0"])}),
        "target_files": field([["fleet/*.json"], ["fleet/*.txt"], []]),
        "target_files_refresh_interval": field(DURATIONS),
    },
)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.one_of(values, shaped))
def test_any_yaml_data_is_accepted_or_a_config_error(data: object) -> None:
    try:
        config = parse_config(data, "random.yaml", {"PROBE_TEST_SET": "x"})
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must list at least one problem"
        assert all(isinstance(p, str) and p for p in exc.problems)
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(raw=st.one_of(st.text(max_size=30), st.sampled_from([*URLS, "box:", ":8080", "[::1]"])))
def test_any_ollama_host_value_is_accepted_or_a_config_error(raw: str) -> None:
    try:
        load_config(None, environ={"OLLAMA_HOST": raw})
    except ConfigError as exc:
        assert exc.problems
