"""PromQL fragments: selectors bound to the dashboard variables and the shared formulas.

Formulas that appear on more than one panel (mean duration, relative speed) live here once, so
the table, the bar gauges and the time series cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

# Multi-value variables use regex matchers; their All value is `.*` (see variables.py).
TARGET = 'target=~"$target"'
MODEL = 'model=~"$model"'
# Single-value variable: the comparison is only fair on one prompt, so match it exactly.
PROMPT = 'prompt="$prompt"'

PROBE_LABELS = (TARGET, MODEL, PROMPT)
MODEL_LABELS = (TARGET, MODEL)


def sel(metric: str, matchers: Sequence[str] = ()) -> str:
    """`metric{m1, m2}` (or the bare name without matchers)."""
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def by(labels: Sequence[str]) -> str:
    return ", ".join(labels)


def sum_rate(metric: str, matchers: Sequence[str], window: str, labels: Sequence[str]) -> str:
    return f"sum by ({by(labels)}) (rate({sel(metric, matchers)}[{window}]))"


def sum_increase(metric: str, matchers: Sequence[str], window: str, labels: Sequence[str]) -> str:
    return f"sum by ({by(labels)}) (increase({sel(metric, matchers)}[{window}]))"


def histogram_mean(
    histogram: str, matchers: Sequence[str], window: str, labels: Sequence[str]
) -> str:
    """Mean observation over `window`: rate of _sum over rate of _count (successful probes)."""
    return (
        f"{sum_rate(histogram + '_sum', matchers, window, labels)}"
        f" / {sum_rate(histogram + '_count', matchers, window, labels)}"
    )


def histogram_p95(
    histogram: str, matchers: Sequence[str], window: str, labels: Sequence[str]
) -> str:
    return (
        "histogram_quantile(0.95, "
        f"{sum_rate(histogram + '_bucket', matchers, window, (*labels, 'le'))})"
    )


def relative_to_fastest(mean: str) -> str:
    """Fastest mean / this mean, per series of `mean` (1 = the fastest).

    `min(...)` has no labels, so it is matched with `on()` against every series of the right
    side; `group_right` keeps the right side's labels (target, model) on the result. Its empty
    `()` is needed: PromQL reads a parenthesis right after group_right as its label list.
    """
    return f"min({mean}) / on() group_right() ({mean})"


def max_by(metric: str, matchers: Sequence[str], labels: Sequence[str]) -> str:
    """A gauge reduced to `labels`; with one prompt selected the reduction loses nothing."""
    return f"max by ({by(labels)}) ({sel(metric, matchers)})"
