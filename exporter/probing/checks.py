"""Answer checks: cheap, deterministic tests of a successful probe's answer text.

Their results are exported on their own; they never change whether a probe succeeded, because
"the server answered" and "the answer was good" are different questions for on-call.
"""

from __future__ import annotations

import re

from exporter.config import ChecksConfig

# The most frequent short function words of each language. A text counts as language X when
# it uses more of X's words than of the other's; good enough to tell Polish from English answers.
_STOP_WORDS = {
    "pl": frozenset(
        [
            "i",
            "w",
            "na",
            "z",
            "się",
            "nie",
            "do",
            "to",
            "że",
            "jest",
            "o",
            "jak",
            "a",
            "co",
            "ale",
            "po",
            "od",
            "dla",
            "są",
            "przez",
            "oraz",
            "może",
            "być",
            "także",
            "również",
            "tak",
            "ich",
            "jego",
            "jej",
            "które",
            "który",
            "która",
            "ze",
            "lub",
            "czy",
            "więc",
            "gdy",
            "bardzo",
        ]
    ),
    "en": frozenset(
        [
            "the",
            "and",
            "of",
            "to",
            "in",
            "is",
            "that",
            "it",
            "for",
            "are",
            "with",
            "as",
            "on",
            "be",
            "this",
            "by",
            "an",
            "or",
            "can",
            "which",
            "from",
            "have",
            "has",
            "not",
            "also",
            "their",
            "its",
            "they",
            "was",
            "were",
            "more",
            "may",
            "these",
            "such",
        ]
    ),
}
_WORD = re.compile(r"\w+", re.UNICODE)


def word_count(text: str) -> int:
    """Words as the report counted them: whitespace-separated pieces."""
    return len(text.split())


def detect_language(text: str) -> str | None:
    """The language whose stop words the text uses most, or None when it uses none."""
    words = [w.lower() for w in _WORD.findall(text)]
    scores = {lang: sum(w in stops for w in words) for lang, stops in _STOP_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else None


def run_checks(checks: ChecksConfig, text: str) -> dict[str, bool]:
    """Run every configured check on an answer; keys are the `check` label values."""
    results: dict[str, bool] = {}
    if checks.min_words is not None:
        results["min_words"] = word_count(text) >= checks.min_words
    if checks.contains_any:
        lowered = text.lower()
        results["contains_any"] = any(word.lower() in lowered for word in checks.contains_any)
    if checks.regex is not None:
        results["regex"] = re.search(checks.regex, text) is not None
    if checks.language is not None:
        results["language"] = detect_language(text) == checks.language
    return results
