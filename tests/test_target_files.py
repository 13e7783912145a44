"""Targets from files in Prometheus' file_sd format: parsing, refusals, re-reading, the process.

Parsing and refusals are tables (JSON and YAML alike, each bad file paired with the exact lines
its error must carry: the file, the group and the label or target). TargetFiles is driven over
real files in a temporary directory. The process tests run `python -m exporter` against Ollama
doubles on loopback, one double per target, so the requests each double saw tell which targets
were probed, listed again or left alone. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest

from exporter.config import TargetConfig, load_config, parse_config
from exporter.shard import shard_of
from exporter.target_file_format import read_target_file
from exporter.target_files import TargetFiles, TargetFileState, patterns_of, with_file_targets
from exporter.validation import ConfigError
from tests.exporter_process import (
    REPO,
    ExporterProcess,
    Samples,
    exporter_env,
    series_of,
    value,
    wait_until,
)
from tests.fakes.ollama_double import ModelScript, OllamaDouble

ENV = {"BOX_TOKEN": "Bearer s3cret", "PART_A": "a", "PART_B": "b"}


def write_json(path: Path, groups: Any) -> Path:
    """Write atomically, as a ConfigMap update or `mv` does: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(groups if isinstance(groups, str) else json.dumps(groups), "utf-8")
    os.replace(temporary, path)
    return path


def targets_of(path: Path, environ: dict[str, str] | None = None) -> list[TargetConfig]:
    return [t.config for t in read_target_file(str(path), ENV if environ is None else environ)]


# --- parsing ----------------------------------------------------------------------------------

# (file name, content) -> the targets it gives.
PARSED: list[tuple[str, str, list[TargetConfig]]] = [
    (
        "plain.json",
        '[{"targets": ["10.0.0.5:11434"]}]',
        [TargetConfig(name="10.0.0.5:11434", url="http://10.0.0.5:11434")],
    ),
    (
        "named.json",
        '[{"targets": ["10.0.0.5:11434"], "labels": {"name": "gpu-box-1", "gpu": "true"}}]',
        [TargetConfig(name="gpu-box-1", url="http://10.0.0.5:11434", gpu=True)],
    ),
    (
        "every-label.yaml",
        f"""\
        - targets: ["gpu-box.example:8443"]
          labels:
            __scheme__: https
            name: remote
            protocol: ollama
            gpu: auto
            max_models: "7"
            tls_ca_file: {certifi.where()}
            tls_insecure_skip_verify: "false"
            header_Authorization: "${{BOX_TOKEN}}"
            header_X_Pair: "${{PART_A}}${{PART_B}}"
            __meta_rack: r12
            __meta_owner: team-gpu
        """,
        [
            TargetConfig(
                name="remote",
                url="https://gpu-box.example:8443",
                protocol="ollama",
                gpu="auto",
                max_models=7,
                tls_ca_file=certifi.where(),
                tls_insecure_skip_verify=False,
                headers={"Authorization": "Bearer s3cret", "X-Pair": "ab"},
            )
        ],
    ),
    (
        "groups.yml",
        """\
        - targets: ["10.0.0.5:11434", "[fd00::7]:11434"]
          labels: {gpu: "false", tls_insecure_skip_verify: "true"}
        - targets: []
        - labels: {name: nothing}
        - targets: ["10.0.0.6:11434"]
        """,
        [
            TargetConfig(
                name="10.0.0.5:11434",
                url="http://10.0.0.5:11434",
                gpu=False,
                tls_insecure_skip_verify=True,
            ),
            TargetConfig(
                name="[fd00::7]:11434",
                url="http://[fd00::7]:11434",
                gpu=False,
                tls_insecure_skip_verify=True,
            ),
            TargetConfig(name="10.0.0.6:11434", url="http://10.0.0.6:11434"),
        ],
    ),
    ("empty.yaml", "", []),
    ("no-groups.json", "[]", []),
]


@pytest.mark.parametrize(("name", "content", "expected"), PARSED, ids=[c[0] for c in PARSED])
def test_a_file_gives_its_targets(
    tmp_path: Path, name: str, content: str, expected: list[TargetConfig]
) -> None:
    path = write_json(tmp_path / name, textwrap.dedent(content))
    assert targets_of(path) == expected


def test_the_same_groups_in_json_and_yaml_give_the_same_targets(tmp_path: Path) -> None:
    groups = [{"targets": ["10.0.0.5:11434"], "labels": {"name": "a", "max_models": "3"}}]
    as_json = write_json(tmp_path / "fleet.json", groups)
    as_yaml = write_json(tmp_path / "fleet.yaml", "- targets: [10.0.0.5:11434]\n"
                         "  labels: {name: a, max_models: '3'}\n")  # fmt: skip
    assert targets_of(as_json) == targets_of(as_yaml) != []


# file content -> the exact problem lines after "<file>: ", in order.
REFUSED: dict[str, tuple[str, list[str]]] = {
    "literal header": (
        '[{"targets": ["h:1"], "labels": {"header_Authorization": "Bearer hunter2"}}]',
        [
            "[0].labels.header_Authorization: a literal header value is refused: write only "
            "${VAR} references (a target file holds no secrets; put the whole value, "
            "'Bearer ...' included, in the variable)"
        ],
    ),
    "literal around a reference": (
        '[{"targets": ["h:1"], "labels": {"header_X_Key": "key-${PART_A}"}}]',
        [
            "[0].labels.header_X_Key: a literal header value is refused: write only ${VAR} "
            "references (a target file holds no secrets; put the whole value, 'Bearer ...' "
            "included, in the variable)"
        ],
    ),
    "unset variable": (
        '[{"targets": ["h:1"]}, {"targets": ["h:2"], "labels": {"header_X_Key": "${NOPE}"}}]',
        ["[1].labels.header_X_Key: environment variable NOPE is not set"],
    ),
    "unknown label with a typo": (
        '[{"targets": ["h:1"], "labels": {"max_model": "3"}}]',
        ["[0].labels: unknown key 'max_model', did you mean 'max_models'?"],
    ),
    "unknown label": (
        '[{"targets": ["h:1"], "labels": {"env": "prod", "__metrics_path__": "/x"}}]',
        [
            "[0].labels: unknown key 'env' (free-form metadata goes in __meta_* labels, which "
            "are ignored)",
            "[0].labels: unknown key '__metrics_path__' (free-form metadata goes in __meta_* "
            "labels, which are ignored)",
        ],
    ),
    "header name with a hyphen": (
        '[{"targets": ["h:1"], "labels": {"header_X-Key": "${PART_A}"}}]',
        [
            "[0].labels: 'header_X-Key' is not a label name ([a-zA-Z_][a-zA-Z0-9_]*): write "
            "header_X_Key (an underscore becomes a hyphen)"
        ],
    ),
    "bad values": (
        '[{"targets": ["h:1"], "labels": {"gpu": "yes", "max_models": "0", "__scheme__": '
        '"ftp", "protocol": "vllm", "tls_insecure_skip_verify": "True", "name": ""}}]',
        [
            "[0].labels.gpu: 'yes' is not 'true', 'false' or 'auto'",
            "[0].labels.max_models: '0' is not a whole number of at least 1",
            "[0].labels.__scheme__: 'ftp' is not 'http' or 'https'",
            "[0].labels.protocol: 'vllm' is not 'ollama' or 'openai'",
            "[0].labels.tls_insecure_skip_verify: 'True' is not 'true' or 'false'",
            "[0].labels.name: the name is empty",
        ],
    ),
    "values that are no strings": (
        '[{"targets": ["h:1"], "labels": {"max_models": 3, "header_X_Key": 918273}}]',
        [
            "[0].labels.max_models: 3 is not a string: label values are strings",
            "[0].labels.header_X_Key: the value (not shown) is not a string: label values are "
            "strings",
        ],
    ),
    "bad addresses": (
        '[{"targets": ["10.0.0.5", "http://h:1", "h:1/x", "h:port", 11434, "user:hunter2@h:1"]}]',
        [
            "[0].targets[0]: '10.0.0.5' has no port: write host:port",
            "[0].targets[1]: 'http://h:1' is not host:port (the scheme comes from the "
            "__scheme__ label)",
            "[0].targets[2]: 'h:1/x' is not host:port (the scheme comes from the __scheme__ label)",
            "[0].targets[3]: 'h:port' is not host:port",
            "[0].targets[4]: 11434 is not a string",
            "[0].targets[5]: the value (not shown) holds credentials: a target file holds no "
            "secrets",
        ],
    ),
    "duplicate names": (
        '[{"targets": ["h:1"], "labels": {"name": "box"}}, {"targets": ["h:1", "h:2"], '
        '"labels": {"name": "box"}}]',
        ["[1].targets[0]: duplicate name 'box'", "[1].targets[1]: duplicate name 'box'"],
    ),
    "bad shapes": (
        '[{"targets": "h:1"}, "h:2", {"targets": ["h:3"], "labels": ["gpu"], "label": {}}]',
        [
            "[0].targets: 'h:1' is not a list",
            "[1]: 'h:2' is not a mapping of targets and labels",
            "[2]: unknown key 'label', did you mean 'labels'?",
            "[2].labels: a list is not a mapping",
        ],
    ),
    "not a list": ('{"targets": ["h:1"]}', ["the top level must be a list of target groups"]),
    "not json": ('[{"targets": ["h:1"]]', ["not valid JSON: Expecting ',' delimiter (line 1)"]),
}


@pytest.mark.parametrize(("content", "expected"), REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_file_is_refused_naming_file_group_and_label(
    tmp_path: Path, content: str, expected: list[str]
) -> None:
    path = write_json(tmp_path / "fleet.json", content)
    with pytest.raises(ConfigError) as caught:
        read_target_file(str(path), ENV)
    assert caught.value.source == str(path)
    assert caught.value.problems == expected
    assert "hunter2" not in str(caught.value) and "918273" not in str(caught.value)


def test_bad_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write_json(tmp_path / "fleet.yml", "- targets: [h:1\n- labels: {}\n")
    with pytest.raises(ConfigError) as caught:
        read_target_file(str(path), ENV)
    (problem,) = caught.value.problems
    assert problem.startswith("not valid YAML: ") and problem.endswith("(line 2)")


def test_an_unloadable_ca_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    path = write_json(
        tmp_path / "f.json", [{"targets": ["h:1"], "labels": {"tls_ca_file": str(missing)}}]
    )
    with pytest.raises(ConfigError) as caught:
        read_target_file(str(path), ENV)
    (problem,) = caught.value.problems
    assert problem.startswith(f"[0].labels.tls_ca_file: cannot load '{missing}' as CA file: ")


# --- the configuration keys -------------------------------------------------------------------


def test_target_files_without_targets_drops_the_default_target(tmp_path: Path) -> None:
    config = parse_config(
        {"target_files": ["fleet/*.json"]}, "c.yaml", {"OLLAMA_URL": "http://x:1"}
    )
    assert config.targets == []
    assert (config.target_files, config.target_files_refresh_interval) == (["fleet/*.json"], 30.0)
    both = parse_config(
        {"target_files": [], "targets": [{"name": "box", "url": "http://h:1"}]}, "c.yaml", {}
    )
    assert [t.name for t in both.targets] == ["box"]
    assert parse_config({"target_files": []}, "c.yaml", {}).targets == []
    assert [t.name for t in parse_config({}, "c.yaml", {}).targets] == ["local"]


def test_a_target_files_glob_must_name_json_or_yaml_files(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "target_files: [fleet/*.json, fleet/*.txt, 7]\ntarget_files_refresh_interval: soon\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == [
        "target_files[2]: 7 is not a string",
        "target_files_refresh_interval: 'soon' is not a duration: use seconds or units ms, s, "
        "m, h (1m30s)",
        "target_files[1]: 'fleet/*.txt' does not end in .json, .yml or .yaml",
    ]


def test_relative_globs_are_read_from_the_config_files_directory(tmp_path: Path) -> None:
    config = parse_config({"target_files": ["fleet/*.json", "/abs/*.yaml"]}, "c", {})
    assert patterns_of(config, tmp_path / "exporter.yaml") == [
        str(tmp_path / "fleet" / "*.json"),
        "/abs/*.yaml",
    ]
    assert patterns_of(config, Path("exporter.yaml")) == ["fleet/*.json", "/abs/*.yaml"]


def test_the_one_shot_commands_get_the_files_targets(tmp_path: Path) -> None:
    write_json(tmp_path / "fleet" / "a.json", [{"targets": ["h:1"], "labels": {"name": "a"}}])
    static = [{"name": "box", "url": "http://h:2"}]
    config = parse_config({"targets": static, "target_files": ["fleet/*.json"]}, "c", {})
    merged = with_file_targets(config, tmp_path / "exporter.yaml")
    assert [t.name for t in merged.targets] == ["box", "a"]


# --- re-reading: TargetFiles over real files --------------------------------------------------


def group(name: str, port: int = 1) -> dict[str, Any]:
    return {"targets": [f"127.0.0.1:{port}"], "labels": {"name": name}}


def names(files: TargetFiles) -> list[str]:
    return [t.name for t in files.targets]


def states(files: TargetFiles) -> dict[str, tuple[bool, int]]:
    return {Path(s.file).name: (s.ok, s.targets) for s in files.states}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Path, TargetFiles]]:
    directory = tmp_path / "fleet"
    directory.mkdir()
    yield directory, TargetFiles([str(directory / "*.json"), str(directory / "*.yaml")], ENV)


def test_a_bad_file_keeps_its_last_good_content_until_fixed(
    fleet: tuple[Path, TargetFiles], caplog: pytest.LogCaptureFixture
) -> None:
    directory, files = fleet
    path = write_json(directory / "a.json", [group("a"), group("b", 2)])
    assert files.refresh() and names(files) == ["a", "b"]
    assert files.states == (TargetFileState(str(path), True, 2),)
    with caplog.at_level(logging.INFO, logger="exporter.target_files"):
        write_json(path, '[{"targets": ["127.0.0.1:1"]')
        assert not files.refresh()
        assert not files.refresh()  # the same problem is logged once
    assert names(files) == ["a", "b"] and states(files) == {"a.json": (False, 2)}
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line.startswith(f"target file {path}: not valid JSON: ")
    assert line.endswith("; keeping its last good content (2 target(s))")
    write_json(path, [group("a")])
    assert files.refresh() and names(files) == ["a"]
    assert states(files) == {"a.json": (True, 1)}


def test_a_file_is_read_again_only_when_its_time_size_or_inode_changes(
    fleet: tuple[Path, TargetFiles],
) -> None:
    directory, files = fleet
    path = write_json(directory / "a.json", [group("box-a")])
    files.refresh()
    stamp = path.stat()
    # Rewritten in place with the same size and its old time: no change to see.
    path.write_text(json.dumps([group("box-b")]), encoding="utf-8")
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert not files.refresh() and names(files) == ["box-a"]
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))
    assert files.refresh() and names(files) == ["box-b"]


def test_a_file_that_disappears_takes_its_targets_and_series_with_it(
    fleet: tuple[Path, TargetFiles],
) -> None:
    directory, files = fleet
    write_json(directory / "a.json", [group("a")])
    gone = write_json(directory / "b.yaml", "- targets: ['127.0.0.1:2']\n  labels: {name: b}\n")
    files.refresh()
    assert names(files) == ["a", "b"]
    gone.unlink()
    assert files.refresh() and names(files) == ["a"]
    assert states(files) == {"a.json": (True, 1)}


def test_a_duplicate_name_is_an_error_of_the_file_that_brings_it(
    fleet: tuple[Path, TargetFiles],
) -> None:
    directory, files = fleet
    write_json(directory / "b.json", [group("shared"), group("b", 2)])
    files.refresh(taken={"static"})
    # a.json comes first in path order, but b.json had the name first.
    newcomer = write_json(directory / "a.json", [group("a", 3), group("shared", 4)])
    files.refresh(taken={"static"})
    assert names(files) == ["shared", "b"]
    assert states(files) == {"a.json": (False, 0), "b.json": (True, 2)}
    # A name of the configuration file's own targets is taken as well.
    write_json(newcomer, [group("a", 3), group("static", 4)])
    files.refresh(taken={"static"})
    assert states(files) == {"a.json": (False, 0), "b.json": (True, 2)}
    write_json(newcomer, [group("a", 3)])
    assert files.refresh(taken={"static"})
    assert names(files) == ["a", "shared", "b"]
    assert states(files) == {"a.json": (True, 1), "b.json": (True, 2)}


def test_a_static_target_that_takes_a_files_name_makes_that_file_bad(
    fleet: tuple[Path, TargetFiles], caplog: pytest.LogCaptureFixture
) -> None:
    directory, files = fleet
    path = write_json(directory / "a.json", [group("a"), group("b", 2)])
    files.refresh()
    with caplog.at_level(logging.INFO, logger="exporter.target_files"):
        # A reload adds a static target named like one of the file's: the file loses it.
        assert files.refresh(taken={"b"})
        assert names(files) == ["a"] and states(files) == {"a.json": (False, 1)}
        assert files.refresh() and names(files) == ["a", "b"]
    assert states(files) == {"a.json": (True, 2)}
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.ERROR,
            f"target file {path}: [1].targets[0]: duplicate name 'b', already a target of the "
            "configuration file; keeping its last good content (1 target(s))",
        ),
        (logging.INFO, f"target file {path} is good again: 2 target(s)"),
    ]


def test_a_name_given_up_by_one_file_is_free_for_another_at_the_next_refresh(
    fleet: tuple[Path, TargetFiles],
) -> None:
    directory, files = fleet
    old_home = write_json(directory / "b.json", [group("moving")])
    files.refresh()
    # Moved in one go: a.json is read while b.json still has the name.
    write_json(directory / "a.json", [group("moving", 2)])
    write_json(old_home, [])
    files.refresh()
    files.refresh()  # a.json is not changed, but its refused content is tried again
    assert [str(t.url) for t in files.targets] == ["http://127.0.0.1:2"]
    assert states(files) == {"a.json": (True, 1), "b.json": (True, 0)}


def test_a_glob_that_matches_nothing_is_logged_once_at_info(
    fleet: tuple[Path, TargetFiles], caplog: pytest.LogCaptureFixture
) -> None:
    directory, files = fleet
    with caplog.at_level(logging.INFO, logger="exporter.target_files"):
        assert not files.refresh()
        files.refresh()
    assert files.targets == () and files.states == ()
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert logged == [
        (logging.INFO, f"target_files: {directory}/*.json matches no file (yet)"),
        (logging.INFO, f"target_files: {directory}/*.yaml matches no file (yet)"),
    ]


# --- the exporter process ---------------------------------------------------------------------

SLOTS = "ollama_exporter_probe_concurrency_slots"
FAST = "{timeout: 5s, health_interval: 300ms, inventory_interval: 60s}"


def exporter_config(path: Path, static: str = "") -> Path:
    text = f"""\
        {static}
        target_files: [fleet/*.json]
        target_files_refresh_interval: 100ms
        prompts: [{{id: liveness, text: hi, interval: 60s}}]
        probe: {FAST}
        gpu: {{enabled: false}}
        """
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def probes(samples: Samples, target: str) -> float | None:
    labels = {"target": target, "model": "alpha:1b", "prompt": "liveness"}
    return value(samples, "ollama_probes_total", **labels)


def target_names(samples: Samples) -> set[str]:
    """The targets the exporter runs: their pacing series exist from the moment one is added."""
    return {labels["target"] for labels in series_of(samples, SLOTS)}


def chats(double: OllamaDouble) -> int:
    return len(double.requests("/api/chat"))


@pytest.fixture
def doubles() -> Iterator[tuple[OllamaDouble, OllamaDouble, OllamaDouble]]:
    with (
        OllamaDouble([ModelScript("alpha:1b", resident=True)]) as a,
        OllamaDouble([ModelScript("alpha:1b", resident=True)]) as b,
        OllamaDouble([ModelScript("alpha:1b", resident=True)]) as c,
    ):
        yield a, b, c


def test_file_changes_start_and_stop_only_the_targets_that_changed(
    tmp_path: Path, doubles: tuple[OllamaDouble, OllamaDouble, OllamaDouble]
) -> None:
    a, b, _ = doubles
    fleet = tmp_path / "fleet" / "gpus.json"
    write_json(fleet, [group("box-a", a.port)])
    with ExporterProcess(exporter_config(tmp_path / "exporter.yaml")) as exporter:
        exporter.samples_when(lambda s: probes(s, "box-a") == 1, 20, "box-a's first probe")
        listings_of_a = len(a.requests("/api/tags"))
        write_json(fleet, [group("box-a", a.port), group("box-b", b.port)])
        added = exporter.samples_when(lambda s: probes(s, "box-b") == 1, 20, "box-b probed")
        # box-a kept its target, jobs and schedule: not listed again, not probed again.
        assert probes(added, "box-a") == 1 and chats(a) == 1
        assert len(a.requests("/api/tags")) == listings_of_a
        assert value(added, "ollama_exporter_target_file_targets", file=str(fleet)) == 2
        assert "box-b" in exporter.get("/").text

        write_json(fleet, [group("box-a", a.port)])
        removed = exporter.samples_when(
            lambda s: target_names(s) == {"box-a"}, 20, "box-b's series gone"
        )
        assert [labels["target"] for labels in series_of(removed, "ollama_probes_total")] == [
            "box-a"
        ]
        assert probes(removed, "box-a") == 1 and chats(a) == 1 and chats(b) == 1


def test_a_malformed_file_keeps_its_targets_and_reports_it_until_fixed(
    tmp_path: Path, doubles: tuple[OllamaDouble, OllamaDouble, OllamaDouble]
) -> None:
    a, b, _ = doubles
    fleet = tmp_path / "fleet" / "gpus.json"
    write_json(fleet, [group("box-a", a.port)])
    success = "ollama_exporter_target_file_last_read_success"
    with ExporterProcess(exporter_config(tmp_path / "exporter.yaml")) as exporter:
        first = exporter.samples_when(lambda s: probes(s, "box-a") == 1, 20, "box-a probed")
        assert value(first, success, file=str(fleet)) == 1
        write_json(fleet, '[{"targets": ["127.0.0.1:1"]')  # cut short
        bad = exporter.samples_when(
            lambda s: value(s, success, file=str(fleet)) == 0, 20, "the read failure"
        )
        assert target_names(bad) == {"box-a"} and probes(bad, "box-a") == 1
        assert value(bad, "ollama_exporter_target_file_targets", file=str(fleet)) == 1
        line = f"ERROR exporter.target_files: target file {fleet}: not valid JSON"
        wait_until(lambda: line in exporter.stderr, 10, "the error in the log")
        assert exporter.stderr.count(line) == 1  # once, not at every poll

        write_json(fleet, [group("box-a", a.port), group("box-b", b.port)])
        fixed = exporter.samples_when(lambda s: probes(s, "box-b") == 1, 20, "box-b probed")
        assert value(fixed, success, file=str(fleet)) == 1
        assert probes(fixed, "box-a") == 1 and chats(a) == 1


def test_a_duplicate_name_is_refused_for_the_file_that_brings_it_only(
    tmp_path: Path, doubles: tuple[OllamaDouble, OllamaDouble, OllamaDouble]
) -> None:
    a, b, c = doubles
    static = f'targets: [{{name: static-box, url: "{c.url}"}}]'
    config = exporter_config(tmp_path / "exporter.yaml", static)
    first = write_json(tmp_path / "fleet" / "a.json", [group("box-a", a.port)])
    success = "ollama_exporter_target_file_last_read_success"
    with ExporterProcess(config) as exporter:
        exporter.samples_when(
            lambda s: probes(s, "box-a") == 1 and probes(s, "static-box") == 1, 20, "first probes"
        )
        second = write_json(
            tmp_path / "fleet" / "b.json", [group("box-b", b.port), group("box-a", b.port)]
        )
        refused = exporter.samples_when(
            lambda s: value(s, success, file=str(second)) == 0, 20, "b.json refused"
        )
        assert value(refused, success, file=str(first)) == 1
        assert target_names(refused) == {"box-a", "static-box"}
        assert "duplicate name 'box-a', already a target of target file" in exporter.stderr

        write_json(second, [group("box-b", b.port), group("static-box", b.port)])
        exporter.samples_when(
            lambda s: "already a target of the configuration file" in exporter.stderr,
            20,
            "the clash with a static target logged",
        )
        write_json(second, [group("box-b", b.port)])
        fixed = exporter.samples_when(lambda s: probes(s, "box-b") == 1, 20, "box-b probed")
        assert value(fixed, success, file=str(second)) == 1
        assert target_names(fixed) == {"box-a", "box-b", "static-box"}
        # Only box-b's double was probed by the newcomer: the others kept their one probe.
        assert (chats(a), chats(b), chats(c)) == (1, 1, 1)


def test_a_reload_reads_the_files_and_an_empty_glob_is_a_valid_start(
    tmp_path: Path, doubles: tuple[OllamaDouble, OllamaDouble, OllamaDouble]
) -> None:
    a, _, _ = doubles
    config = exporter_config(tmp_path / "exporter.yaml")
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("100ms", "1h"), encoding="utf-8")  # no polling in time
    (tmp_path / "fleet").mkdir()
    with ExporterProcess(config) as exporter:
        exporter.wait_ready()
        assert "target_files: " in exporter.stderr and "matches no file (yet)" in exporter.stderr
        assert target_names(exporter.samples()) == set()
        write_json(tmp_path / "fleet" / "a.json", [group("box-a", a.port)])
        assert exporter.post("/-/reload").status_code == 200
        # The reload answered after it had added the file's target.
        assert target_names(exporter.samples()) == {"box-a"}


def test_the_probe_command_probes_the_files_targets_too(
    tmp_path: Path, doubles: tuple[OllamaDouble, OllamaDouble, OllamaDouble]
) -> None:
    a, _, c = doubles
    static = f'targets: [{{name: static-box, url: "{c.url}"}}]'
    config = exporter_config(tmp_path / "exporter.yaml", static)
    write_json(tmp_path / "fleet" / "a.json", [group("box-a", a.port)])
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "probe", f"--config.file={config}", "--output=json"],
        cwd=REPO,
        env=exporter_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [t["name"] for t in report["targets"]] == ["static-box", "box-a"]
    assert chats(a) == 1 and chats(c) == 1


def test_a_sharded_replica_probes_only_its_shard_of_the_files_targets(
    tmp_path: Path, doubles: tuple[OllamaDouble, OllamaDouble, OllamaDouble]
) -> None:
    names = ["box-a", "box-b", "box-d"]  # shard_of puts the last alone in shard 1 of 2
    mine = {n for n in names if shard_of(n, 2) == 0}
    assert mine and mine != set(names), "the names must fall in both shards"
    write_json(
        tmp_path / "fleet" / "gpus.json",
        [group(name, double.port) for name, double in zip(names, doubles, strict=True)],
    )
    config = exporter_config(tmp_path / "exporter.yaml", "shard: {count: 2, index: 0}")
    with ExporterProcess(config) as exporter:
        exporter.samples_when(
            lambda s: all(probes(s, n) == 1 for n in mine), 20, "the shard's first probes"
        )
        assert target_names(exporter.samples()) == mine
    others = [d for n, d in zip(names, doubles, strict=True) if n not in mine]
    assert all(d.requests() == [] for d in others)
