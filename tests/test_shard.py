"""Sharding: the hash that assigns targets to replicas, the `shard` key and `--shard.*` flags,
and a fleet of three real replicas beside one unsharded exporter.

The fleet test runs `python -m exporter` four times (`--shard.count 3 --shard.index 0/1/2`,
and no flags) on one configuration against the same Ollama doubles. Each target sends its name
and the replica's (from `${REPLICA}`) as headers, so the doubles can tell who asked what about
which target. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.config import parse_config
from exporter.shard import ShardConfig, shard_of, with_flags
from exporter.validation import ConfigError
from tests.exporter_process import (
    REPO,
    ExporterProcess,
    Samples,
    exporter_env,
    value,
)
from tests.fakes.ollama_double import ModelScript, OllamaDouble

# --- the hash ---------------------------------------------------------------------------------

NAMES = [f"gpu-box-{i:04d}" for i in range(1000)]


def test_shard_of_is_the_documented_definition() -> None:
    """docs/configuration.md promises this formula; other tools may compute it too."""
    for name in ("local", "gpu-box", "zażółć-🥑", ""):
        digest = hashlib.sha256(name.encode("utf-8")).digest()
        for count in (1, 2, 3, 7, 64):
            assert shard_of(name, count) == int.from_bytes(digest[:8], "big") % count
    # Pinned: a change of the definition moves targets between replicas in a rolling update.
    assert [shard_of(n, 3) for n in ("local", "gpu-box", "a", "b", "c")] == [1, 2, 1, 1, 2]


_ASSIGN = (
    "import json, sys; from exporter.shard import shard_of; "
    "names = json.load(sys.stdin); "
    "print(json.dumps([[shard_of(n, c) for n in names] for c in (2, 3, 7)]))"
)


def _assignments_in_a_process(hash_seed: str) -> list[list[int]]:
    result = subprocess.run(
        [sys.executable, "-c", _ASSIGN],
        input=json.dumps(NAMES[:300]),
        cwd=REPO,
        env=exporter_env(PYTHONHASHSEED=hash_seed),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assignments: list[list[int]] = json.loads(result.stdout)
    return assignments


def test_the_assignment_is_the_same_in_every_process() -> None:
    """Not Python's hash(): str hashes change with PYTHONHASHSEED, the shards must not."""
    first, second = _assignments_in_a_process("1"), _assignments_in_a_process("2")
    here = [[shard_of(n, c) for n in NAMES[:300]] for c in (2, 3, 7)]
    assert first == second == here
    seeded = subprocess.run(
        [sys.executable, "-c", "print(hash('gpu-box'))"],
        env=exporter_env(PYTHONHASHSEED="1"),
        capture_output=True,
        text=True,
        check=True,
    )
    other = subprocess.run(
        [sys.executable, "-c", "print(hash('gpu-box'))"],
        env=exporter_env(PYTHONHASHSEED="2"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert seeded.stdout != other.stdout  # the seeds did make the processes differ


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16])
def test_every_name_is_in_exactly_one_shard(count: int) -> None:
    for name in NAMES:
        owners = [i for i in range(count) if ShardConfig(count=count, index=i).owns(name)]
        assert owners == [shard_of(name, count)], name


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_the_shards_are_roughly_even(count: int) -> None:
    sizes = Counter(shard_of(name, count) for name in NAMES)
    assert set(sizes) == set(range(count))
    expected = len(NAMES) / count
    # Binomial spread: 4 standard deviations either way.
    spread = 4 * (len(NAMES) * (1 / count) * (1 - 1 / count)) ** 0.5
    assert all(abs(size - expected) <= spread for size in sizes.values()), sizes


# --- the shard key and the flags ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("shard", "problem"),
    [
        ({"count": 0}, "shard.count: 0 is below the minimum 1"),
        ({"index": -1}, "shard.index: -1 is below the minimum 0"),
        ({"count": 3, "index": 3}, "shard.index: 3 must be below shard.count (3)"),
        ({"index": 1}, "shard.index: 1 must be below shard.count (1)"),
        ({"count": "3"}, "shard.count: '3' is not an integer"),
        ({"cont": 3}, "shard: unknown key 'cont', did you mean 'count'?"),
        ([0, 3], "shard: a list is not a mapping"),
    ],
)
def test_a_bad_shard_key_is_named(shard: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"shard": shard}, "exporter.yml", {})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_the_shard_key_defaults_to_unsharded_and_reads_its_values() -> None:
    assert parse_config({}, "t", {}).shard == ShardConfig(count=1, index=0)
    assert parse_config({"shard": {"count": 4, "index": 3}}, "t", {}).shard == ShardConfig(
        count=4, index=3
    )
    assert parse_config({"shard": {"count": 4}}, "t", {}).shard == ShardConfig(count=4, index=0)


def test_flags_override_the_key_and_a_bad_pair_names_the_flag() -> None:
    file = ShardConfig(count=4, index=3)
    assert with_flags(file, None, None) is file
    assert with_flags(file, 5, None) == ShardConfig(count=5, index=3)
    assert with_flags(file, 2, 1) == ShardConfig(count=2, index=1)
    assert with_flags(ShardConfig(count=3), None, 2) == ShardConfig(count=3, index=2)
    with pytest.raises(ValueError, match=r"^--shard\.count: the shard index 3 \(shard\.index of"):
        with_flags(file, 2, None)
    with pytest.raises(ValueError, match=r"^--shard\.index: the shard index 3 \(--shard\.index\)"):
        with_flags(ShardConfig(), None, 3)
    with pytest.raises(ValueError, match=r"^--shard\.index: .* below the shard count 3 \(--shard"):
        with_flags(file, 3, 3)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", *args],
        cwd=REPO,
        env=exporter_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard.count=0"], "argument --shard.count: must be at least 1, not 0"),
        (["--shard.index=-1"], "argument --shard.index: must be at least 0, not -1"),
        (["--shard.count=3", "--shard.index=3"], "--shard.index: the shard index 3"),
        (["--shard.index=1"], "--shard.index: the shard index 1 (--shard.index) must be below"),
    ],
)
def test_the_cli_exits_2_naming_the_flag(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_the_cli_accepts_flags_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text("shard: {count: 4, index: 3}\n", encoding="utf-8")
    assert run_cli(f"--config.file={config}", "--shard.count=5").returncode == 0
    bad = run_cli(f"--config.file={config}", "--shard.count=3")
    assert bad.returncode == 2
    assert "--shard.count: the shard index 3 (shard.index of the configuration)" in bad.stderr


# --- a fleet of three replicas and one unsharded exporter ------------------------------------

COUNT = 3
MODEL = "tiny:1b"


def fleet_names() -> list[str]:
    """Nine target names, at least two in each of the three shards."""
    names = [f"box-{i}" for i in range(9)]
    sizes = Counter(shard_of(n, COUNT) for n in names)
    assert sorted(sizes) == [0, 1, 2] and min(sizes.values()) >= 2, sizes
    return names


@pytest.fixture
def doubles() -> Iterator[list[OllamaDouble]]:
    # Tokens spaced out: an answer read in one piece has no client-side rate, and the series
    # sets compared below must not depend on how the reads fell.
    script = ModelScript(MODEL, token_interval=0.01)
    started = [OllamaDouble([replace(script)]).start() for _ in range(3)]
    try:
        yield started
    finally:
        for double in started:
            double.stop()


def fleet_config(path: Path, doubles: list[OllamaDouble]) -> Path:
    """Nine targets over three doubles; each names itself and the replica in its headers."""
    targets = "".join(
        f"  - {{name: {name}, url: '{doubles[i % 3].url}',"
        f" headers: {{X-Target: {name}, X-Replica: '${{REPLICA}}'}}}}\n"
        for i, name in enumerate(fleet_names())
    )
    path.write_text(
        f"targets:\n{targets}"
        "prompts: [{id: liveness, text: 'Why avocados?'}]\n"
        "probe: {interval: 60s, timeout: 10s, health_interval: 300ms, inventory_interval: 60s,"
        " max_duty_cycle: 1}\n"
        "gpu: {enabled: false}\n",
        encoding="utf-8",
    )
    return path


def targets_of(samples: Samples) -> set[str]:
    return {dict(labels)["target"] for (_, labels) in samples if "target" in dict(labels)}


def target_scoped(samples: Samples) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """Every series about a target (it has a `target` label): names and labels, no values."""
    return {key for key in samples if "target" in dict(key[1])}


def probed_once(samples: Samples, targets: set[str]) -> bool:
    return all(
        value(samples, "ollama_probes_total", target=t, model=MODEL, prompt="liveness") == 1
        for t in targets
    )


def poll(check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until it holds or the deadline passes; the caller asserts what it wants."""
    deadline, pause = time.monotonic() + timeout, threading.Event()
    while not check() and time.monotonic() < deadline:
        pause.wait(0.1)


def test_three_replicas_split_the_targets_and_together_serve_what_one_unsharded_does(
    tmp_path: Path, doubles: list[OllamaDouble]
) -> None:
    config = fleet_config(tmp_path / "fleet.yml", doubles)
    names = fleet_names()
    owned = {i: {n for n in names if shard_of(n, COUNT) == i} for i in range(COUNT)}
    replicas = [
        ExporterProcess(
            config,
            env=exporter_env(REPLICA=str(i)),
            extra_args=[f"--shard.count={COUNT}", f"--shard.index={i}"],
        )
        for i in range(COUNT)
    ]
    whole = ExporterProcess(config, env=exporter_env(REPLICA="all"))
    try:
        for i, replica in enumerate(replicas):
            # Each replica's first probes are done: the doubles' tallies of first runs are final.
            replica.samples_when(
                functools.partial(probed_once, targets=owned[i]), 30, f"replica {i}'s first probes"
            )
        whole.samples_when(lambda s: probed_once(s, set(names)), 30, "the unsharded probes")

        # The union of the replicas' target series settles to the unsharded exporter's (the
        # residency series follow the health checks of /api/ps): poll, then compare.
        def union_matches() -> bool:
            union = set().union(*(target_scoped(r.samples()) for r in replicas))
            return union == target_scoped(whole.samples())

        poll(union_matches, 15)
        fleet = [r.samples() for r in replicas]
        unsharded = whole.samples()
    finally:
        for process in (*replicas, whole):
            process.close()

    # Each replica serves exactly its shard's targets; together, every target once.
    for i, samples in enumerate(fleet):
        assert targets_of(samples) == owned[i], i
        assert value(samples, "ollama_exporter_shard_info", shard_index=str(i), shard_count="3")
        assert value(samples, "ollama_exporter_shard_targets") == len(owned[i])
        expected = {
            dict(labels)["shard_index"]
            for (name, labels) in samples
            if name == "ollama_exporter_shard_expected"
        }
        assert expected == {"0", "1", "2"}
    assert value(unsharded, "ollama_exporter_shard_info", shard_index="0", shard_count="1") == 1
    assert value(unsharded, "ollama_exporter_shard_targets") == len(names)

    union = set().union(*map(target_scoped, fleet))
    assert union == target_scoped(unsharded), (
        f"only sharded: {sorted(union - target_scoped(unsharded))}\n"
        f"only unsharded: {sorted(target_scoped(unsharded) - union)}"
    )
    # The same series names everywhere: rules and dashboards need no change.
    names_of = [{name for (name, _) in samples} for samples in (*fleet, unsharded)]
    assert all(n == names_of[-1] for n in names_of), [sorted(n ^ names_of[-1]) for n in names_of]

    # At the doubles: a replica never touched another shard's target (no probe, no health
    # check, no listing), and every target got exactly one first probe from its owner.
    seen: Counter[tuple[str, str, str]] = Counter()
    for double in doubles:
        for record in double.records:
            target, sender = record.headers["x-target"], record.headers["x-replica"]
            seen[(target, sender, record.path)] += 1
            if sender != "all":
                assert shard_of(target, COUNT) == int(sender), (target, sender, record.path)
    for name in names:
        owner = str(shard_of(name, COUNT))
        assert seen[(name, owner, "/api/chat")] == 1, name
        assert seen[(name, "all", "/api/chat")] == 1, name
        assert seen[(name, owner, "/api/version")] >= 1, name
        assert seen[(name, owner, "/api/tags")] >= 1, name
    assert sum(n for (_, _, path), n in seen.items() if path == "/api/chat") == 2 * len(names)


def test_a_reload_applies_a_new_shard(tmp_path: Path, doubles: list[OllamaDouble]) -> None:
    """The file's shard changes at a reload; flags stay over it."""
    config = fleet_config(tmp_path / "fleet.yml", doubles)
    text = config.read_text(encoding="utf-8")
    config.write_text(text + "shard: {count: 3}\n", encoding="utf-8")
    names = fleet_names()
    with ExporterProcess(
        config, env=exporter_env(REPLICA="r"), extra_args=["--shard.index=1"]
    ) as exporter:
        samples = exporter.samples_when(
            lambda s: value(s, "ollama_exporter_shard_info", shard_index="1", shard_count="3"),
            20,
            "shard 1 of 3",
        )
        assert targets_of(samples) == {n for n in names if shard_of(n, 3) == 1}
        config.write_text(text + "shard: {count: 2}\n", encoding="utf-8")
        assert exporter.post("/-/reload").status_code == 200
        samples = exporter.samples()
        assert value(samples, "ollama_exporter_shard_info", shard_index="1", shard_count="2") == 1
        assert targets_of(samples) == {n for n in names if shard_of(n, 2) == 1}
        assert value(samples, "ollama_exporter_shard_targets") == len(targets_of(samples))
        # A file whose count leaves no room for the flag's index is refused; the shard stays.
        config.write_text(text + "shard: {count: 1}\n", encoding="utf-8")
        refused = exporter.post("/-/reload")
        assert refused.status_code == 500
        assert "--shard.index: the shard index 1" in refused.text
        assert value(
            exporter.samples(), "ollama_exporter_shard_info", shard_index="1", shard_count="2"
        )
