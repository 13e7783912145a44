"""The comparison as JSON, for scripts.

The keys the issue names are a contract; others may be added, never renamed. A figure that
could not be computed is null (every key still present), and so is any non-finite number:
JSON has no infinity, and a script should not have to parse one.
"""

from __future__ import annotations

import json
import math
from typing import Any

from exporter.compare.analysis import Comparison, Kpi, ModelFigures, Report, Spread
from exporter.compare.stats import Figure, Interval


def render_json(report: Report) -> str:
    document = {
        "rounds": report.rounds,
        "per_visit": report.per_visit,
        "seed": report.seed,
        "method": report.method,
        "generated_at": report.generated_at,
        "targets": [{"name": t.name, "up": t.up, "error": t.error} for t in report.targets],
        "results": [_result(f) for f in report.results],
        "comparisons": [_comparison(c) for c in report.comparisons],
        "recommendations": report.recommendations,
        "notes": report.notes,
    }
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _result(f: ModelFigures) -> dict[str, Any]:
    return {
        "target": f.target,
        "model": f.model,
        "prompt": f.prompt,
        "n": f.n,
        "probes": f.probes,
        "failures": dict(sorted(f.failures.items())),
        "cold_starts": f.cold_starts,
        "cold_load_seconds": _figure(f.cold_load),
        "duration_seconds": _figure(f.duration),
        "ttft_seconds": _figure(f.ttft),
        "tokens_per_second": _figure(f.tokens_per_second),
        "relative_speed": {"value": _num(f.relative_speed), "ci95": _interval(f.relative_ci95)},
        "characters": _spread(f.characters),
        "words": _spread(f.words),
        "checks": {
            "passed": f.checks.passed,
            "total": f.checks.total,
            "ci95": _interval(f.checks.ci95),
        },
        "vram_bytes": f.vram_bytes,
        "gpu_peak_memory_bytes": f.gpu_peak_memory_bytes,
        "gpu_utilization_ratio": _figure(f.gpu_utilization),
        "kpis": [_kpi(k) for k in f.kpis],
    }


def _figure(fig: Figure | None) -> dict[str, Any]:
    if fig is None:
        return {"n": 0, "median": None, "mean": None, "p90": None, "ci95": None}
    return {
        "n": fig.n,
        "median": _num(fig.median),
        "mean": _num(fig.mean),
        "p90": _num(fig.p90),
        "ci95": _interval(fig.ci95),
    }


def _spread(s: Spread | None) -> dict[str, Any]:
    if s is None:
        return {"n": 0, "mean": None, "sd": None}
    return {"n": s.n, "mean": _num(s.mean), "sd": _num(s.sd)}


def _kpi(k: Kpi) -> dict[str, Any]:
    return {
        "name": k.name,
        "verdict": k.verdict,
        "estimate": _num(k.estimate),
        "ci95": _interval(k.ci95),
        "why": k.why,
    }


def _comparison(c: Comparison) -> dict[str, Any]:
    return {
        "target": c.target,
        "prompt": c.prompt,
        "faster": c.faster,
        "slower": c.slower,
        "ratio": _num(c.ratio),
        "ci95": _interval(c.ci95),
        "p_value": _num(c.p_value),
        "verdict": c.verdict,
    }


def _interval(ci: Interval | None) -> list[float | None] | None:
    return None if ci is None else [_num(ci[0]), _num(ci[1])]


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
