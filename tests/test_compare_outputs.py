"""The comparison's outputs: the JSON keys the issue names as a contract, valid JSON whatever the
numbers, and Markdown whose tables, lines and headings survive names and errors with `|` and
line breaks in them.

Reports are built from synthetic observations through the analysis, with Report and TargetState
put together here, so each test controls exactly what the renderers see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from exporter.compare.analysis import Report, analyse
from exporter.compare.document import sections
from exporter.compare.jsondoc import render_json
from exporter.compare.markdown import render_markdown
from exporter.compare.observations import Observation
from exporter.probe_command import TargetState
from tests.compare_samples import observation

SEED = 20261205


def report(observations: list[Observation], targets: list[TargetState] | None = None) -> Report:
    figures, comparisons, recommendations = analyse(observations, SEED, 300)
    return Report(
        method="synthetic observations.",
        rounds=3,
        per_visit=2,
        seed=SEED,
        targets=targets if targets is not None else [TargetState("lab", up=True)],
        results=figures,
        comparisons=comparisons,
        recommendations=recommendations,
        notes=["a note"],
        generated_at=1_700_000_000.0,
    )


def timed(model: str, centre: float, n: int = 8, **extra: Any) -> list[Observation]:
    """n warm probes of a model, rising from `centre` by 2 % of it each."""
    return [
        observation(
            centre * (1 + i / 50),
            model=model,
            ttft_s=centre / 10,
            tokens_per_second=40.0 + i,
            **extra,
        )
        for i in range(n)
    ]


def everything() -> Report:
    """Two timed models with checks, failures and a cold start, one with no warm probe at all,
    and a target that is down."""
    observations = timed("fast", 1.0, checks={"answer": True})
    observations += timed("slow", 3.0, checks={"answer": False})
    observations += [
        observation(reason="timeout", model="fast"),
        observation(reason="timeout", model="slow"),
        observation(reason="http_error", model="slow"),
        observation(40.0, model="slow", cold_start=True, load_s=30.0),
        observation(reason="refused", model="gone"),
        observation(50.0, model="gone", cold_start=True, load_s=45.0),
    ]
    targets = [TargetState("lab", up=True), TargetState("gpu", up=False, error="refused")]
    return report(observations, targets)


# --- JSON --------------------------------------------------------------------------------------

Check = Callable[[Any, str], None]


def of(*types: type) -> Check:
    """Exactly one of these types (a bool is not taken for an int)."""

    def check(value: Any, where: str) -> None:
        assert type(value) in types, f"{where}: {value!r} is not {types}"

    return check


def interval(value: Any, where: str) -> None:
    assert value is None or (
        type(value) is list
        and len(value) == 2
        and all(type(v) in (float, type(None)) for v in value)
    ), f"{where}: {value!r} is not [lo, hi] or null"


def counts(value: Any, where: str) -> None:
    assert type(value) is dict, f"{where}: {value!r} is not an object"
    assert all(type(k) is str and type(v) is int for k, v in value.items()), where


NUMBER = of(float, type(None))
FIGURE = {"n": of(int), "median": NUMBER, "mean": NUMBER, "p90": NUMBER, "ci95": interval}
# The keys the issue names, with their types; `[spec]` is a list of items of that spec.
CONTRACT: dict[str, Any] = {
    "rounds": of(int),
    "per_visit": of(int),
    "seed": of(int),
    "targets": [{"name": of(str), "up": of(bool), "error": of(str, type(None))}],
    "results": [
        {
            "target": of(str),
            "model": of(str),
            "prompt": of(str),
            "n": of(int),
            "failures": counts,
            "cold_starts": of(int),
            "duration_seconds": FIGURE,
            "ttft_seconds": FIGURE,
            "tokens_per_second": FIGURE,
            "checks": {"passed": of(int), "total": of(int), "ci95": interval},
        }
    ],
    "comparisons": [
        {
            "target": of(str),
            "prompt": of(str),
            "faster": of(str),
            "slower": of(str),
            "ratio": NUMBER,
            "ci95": interval,
            "p_value": NUMBER,
            "verdict": of(str),
        }
    ],
}


def conform(value: Any, spec: Any, where: str = "$") -> None:
    if isinstance(spec, dict):
        assert type(value) is dict, f"{where}: {value!r} is not an object"
        for key, inner in spec.items():
            assert key in value, f"{where}: no key {key!r}"
            conform(value[key], inner, f"{where}.{key}")
    elif isinstance(spec, list):
        assert type(value) is list and value, f"{where}: not a non-empty list"
        for i, item in enumerate(value):
            conform(item, spec[0], f"{where}[{i}]")
    else:
        spec(value, where)


def strict_loads(text: str) -> Any:
    """json.loads that refuses NaN and Infinity, which Python writes and JSON does not have."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def test_the_json_has_every_key_the_issue_names_with_its_type() -> None:
    document = strict_loads(render_json(everything()))
    conform(document, CONTRACT)
    assert (document["rounds"], document["per_visit"], document["seed"]) == (3, 2, SEED)


def test_the_json_figures_are_the_reports() -> None:
    r = everything()
    document = strict_loads(render_json(r))
    by_model = {row["model"]: row for row in document["results"]}
    slow = by_model["slow"]
    assert (slow["n"], slow["cold_starts"]) == (8, 1)
    assert slow["failures"] == {"http_error": 1, "timeout": 1}
    assert (slow["checks"]["passed"], slow["checks"]["total"]) == (0, 8)  # the cold one had none
    assert by_model["fast"]["checks"]["passed"] == by_model["fast"]["checks"]["total"] == 8
    [figures] = [f for f in r.results if f.model == "slow"]
    assert figures.duration is not None and figures.duration.ci95 is not None
    assert slow["duration_seconds"]["median"] == figures.duration.median
    assert slow["duration_seconds"]["ci95"] == list(figures.duration.ci95)
    [pair] = document["comparisons"]
    assert (pair["faster"], pair["slower"], pair["verdict"]) == ("fast", "slow", "faster")
    assert pair["ratio"] == pytest.approx(3.0)
    assert [t["up"] for t in document["targets"]] == [True, False]
    assert document["targets"][1]["error"] == "refused"


@pytest.mark.parametrize("key", ["duration_seconds", "ttft_seconds", "tokens_per_second"])
def test_a_figure_without_warm_probes_keeps_its_keys_as_nulls(key: str) -> None:
    document = strict_loads(render_json(everything()))
    [gone] = [row for row in document["results"] if row["model"] == "gone"]
    assert gone["n"] == 0
    assert gone[key] == {"n": 0, "median": None, "mean": None, "p90": None, "ci95": None}


def test_an_infinite_ratio_becomes_null_and_the_json_stays_valid() -> None:
    # A faster median of 0 against a positive one: the statistics give an infinite ratio.
    r = report(timed("instant", 0.0) + timed("slow", 2.0))
    [pair] = r.comparisons
    assert pair.ratio == float("inf")  # the premise
    document = strict_loads(render_json(r))
    [row] = document["comparisons"]
    assert row["faster"] == "instant" and row["ratio"] is None
    conform(document, CONTRACT)


# --- Markdown ----------------------------------------------------------------------------------

# A cell boundary is a `|` that no backslash escapes (GitHub's table rule).
BOUNDARY = re.compile(r"(?<!\\)\|")


def cells(line: str) -> list[str]:
    """The cells of a table row, unescaped."""
    inner = BOUNDARY.split(line.strip())
    assert inner[0] == "" and inner[-1] == "", f"not a table row: {line!r}"
    return [c.strip().replace("\\|", "|") for c in inner[1:-1]]


def tables(markdown: str) -> list[list[list[str]]]:
    """Every table as its rows of cells, header first, the rule line left out."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|(---\|)+", line):
                current.append(cells(line))
        elif current:
            found.append(current)
            current = []
    return found


def awkward() -> Report:
    """Names and an error with `|` and line breaks in them, as a server could send them."""
    observations = timed("llama|3:8b", 1.0, checks={"a|b": True})
    observations += timed("qwen", 2.0, checks={"a|b": True})
    observations += [observation(reason="timeout", model="qwen")]
    targets = [
        TargetState("lab", up=True),
        TargetState("gpu|2", up=False, error="connect | refused\nretry later\r\n(errno 111)"),
    ]
    return report(observations, targets)


def test_every_table_row_has_as_many_columns_as_its_header() -> None:
    found = tables(render_markdown(awkward()))
    assert len(found) >= 4  # summary, pairs, KPIs, per model, GPU
    for table in found:
        header, *rows = table
        assert rows
        for row in rows:
            assert len(row) == len(header), f"{row} against {header}"


def test_a_name_with_a_pipe_is_one_cell() -> None:
    models = {row[0] for table in tables(render_markdown(awkward())) for row in table[1:]}
    assert "llama|3:8b" in models


def test_a_line_break_in_an_error_stays_on_its_bullet() -> None:
    lines = render_markdown(awkward()).splitlines()
    [bullet] = [line for line in lines if "gpu|2" in line]
    assert bullet.startswith("- ")
    assert "connect | refused" in bullet and bullet.endswith("retry later (errno 111))")
    assert not any(line.startswith(("retry", "(errno")) for line in lines)


@pytest.mark.parametrize("build", [awkward, everything])
def test_every_section_is_a_heading_of_its_level(build: Callable[[], Report]) -> None:
    r = build()
    lines = render_markdown(r).splitlines()
    titles = sections(r)
    assert {s.level for s in titles} == {1, 2, 3}
    for s in titles:
        assert "#" * s.level + " " + " ".join(s.title.split()) in lines, s.title


@pytest.mark.parametrize("build", [awkward, everything])
def test_the_summary_shows_each_models_warm_n(build: Callable[[], Report]) -> None:
    r = build()
    summaries = [t for t in tables(render_markdown(r)) if t[0][:2] == ["model", "n"]]
    shown = {row[0]: row[1] for table in summaries for row in table[1:]}
    assert shown == {f.model: str(f.n) for f in r.results}
    assert set(shown.values()) != {"0"}
