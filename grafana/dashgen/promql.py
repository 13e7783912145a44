"""PromQL fragments: selectors bound to the dashboard variables and the shared formulas.

Formulas that appear on more than one panel (mean duration, relative speed, sample counts) live
here once, so the table, the bar gauges and the time series cannot drift apart.
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


def relative_to_fastest(mean: str, within: Sequence[str]) -> str:
    """Fastest mean / this mean among the series of `mean` that share the `within` labels
    (1 = the fastest of its group).

    `min by (within)` has one series per group; `on(within)` matches it against every series
    of that group on the right side, and `group_right` keeps the right side's labels (target,
    model) on the result. Its empty `()` is needed: PromQL reads a parenthesis right after
    group_right as its label list.
    """
    group = by(within)
    return f"min by ({group}) ({mean}) / on ({group}) group_right() ({mean})"


def sample_count(counter: str, matchers: Sequence[str], window: str, labels: Sequence[str]) -> str:
    """How many times `counter` went up over `window` (probes, for a per-probe counter).

    increase() extrapolates to the window's edges, at most by the probes of about one scrape
    interval at each edge (a tenth of a probe at 15 s scrapes and 5-minute probes); a count
    of probes is whole, so it is rounded.
    """
    return f"round({sum_increase(counter, matchers, window, labels)})"


def max_by(metric: str, matchers: Sequence[str], labels: Sequence[str]) -> str:
    """A gauge reduced to `labels`; with one prompt selected the reduction loses nothing."""
    return f"max by ({by(labels)}) ({sel(metric, matchers)})"
