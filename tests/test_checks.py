"""Answer checks: min_words, contains_any, regex and the pl/en language heuristic."""

from __future__ import annotations

from typing import Literal

import pytest

from exporter.config import ChecksConfig
from exporter.probing.checks import detect_language, run_checks, word_count

POLISH = (
    "Awokado jest bogate w zdrowe tłuszcze jednonienasycone, które wspierają pracę serca. "
    "Zawiera także dużo potasu oraz błonnika, a witamina E i kwas foliowy chronią komórki. "
    "Regularne jedzenie awokado może obniżać poziom złego cholesterolu."
)
ENGLISH = (
    "Avocados are rich in monounsaturated fats that support the health of the heart. "
    "They also contain potassium and fibre, and their vitamin E and folate protect cells. "
    "Eating avocado regularly may lower bad cholesterol."
)
# A short Polish answer with an English brand name and a loanword in it.
POLISH_WITH_ENGLISH_WORDS = "Tak, to jest dobre pytanie. Smoothie z awokado to świetny wybór."
ENGLISH_WITH_POLISH_WORDS = "The Polish word for avocado is awokado, and it is eaten with bread."


# --- word_count ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", 0),
        ("   \n\t ", 0),
        ("one", 1),
        ("Awokado zawiera potas.", 3),
        ("  leading and trailing  ", 3),
        ("lines\nand\ttabs", 3),
        ("non-breaking\u00a0space", 2),  # str.split() treats NBSP as whitespace
        ("żółć, gęś — jaźń", 4),  # punctuation glued to a word or on its own counts as it stands
    ],
)
def test_word_count_splits_on_whitespace(text: str, words: int) -> None:
    assert word_count(text) == words


# --- min_words ----------------------------------------------------------------------------


@pytest.mark.parametrize(("minimum", "passed"), [(1, True), (34, True), (35, False)])
def test_min_words_is_inclusive(minimum: int, passed: bool) -> None:
    assert word_count(ENGLISH) == 34
    assert run_checks(ChecksConfig(min_words=minimum), ENGLISH) == {"min_words": passed}


def test_min_words_fails_on_an_empty_answer() -> None:
    assert run_checks(ChecksConfig(min_words=1), "") == {"min_words": False}


# --- contains_any -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("needles", "passed"),
    [
        (["potas", "błonnik"], True),  # stems match inflected forms: potasu, błonnika
        (["BŁONNIK"], True),  # case-insensitive, Polish letters included
        (["magnez", "wapń"], False),
        (["cholesterol"], True),
    ],
)
def test_contains_any_matches_case_insensitive_substrings(needles: list[str], passed: bool) -> None:
    assert run_checks(ChecksConfig(contains_any=needles), POLISH) == {"contains_any": passed}


def test_contains_any_needs_only_one() -> None:
    result = run_checks(ChecksConfig(contains_any=["zinc", "Potassium"]), ENGLISH)
    assert result == {"contains_any": True}


# --- regex --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "passed"),
    [
        (r"witamin[aey] [A-Z]", True),
        (r"^Awokado", True),
        (r"cholesterolu\.$", True),
        (r"^cholesterol", False),
        (r"(?i)AWOKADO", True),
        (r"AWOKADO", False),  # case-sensitive unless the pattern says otherwise
        (r"\d+ mg", False),
    ],
)
def test_regex_searches_anywhere(pattern: str, passed: bool) -> None:
    assert run_checks(ChecksConfig(regex=pattern), POLISH) == {"regex": passed}


# --- language -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        (POLISH, "pl"),
        (ENGLISH, "en"),
        (POLISH_WITH_ENGLISH_WORDS, "pl"),
        (ENGLISH_WITH_POLISH_WORDS, "en"),
        ("JEST TO BARDZO ZDROWE I SMACZNE.", "pl"),
        ("THIS IS VERY HEALTHY AND TASTY.", "en"),
        ("Awokado: 160 kcal, 15 g tłuszczu, 7 g błonnika.", None),  # no function words at all
        ("", None),
        ("12345 !!! ???", None),
    ],
)
def test_detect_language_on_realistic_text(text: str, language: str | None) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("text", "expected", "passed"),
    [
        (POLISH, "pl", True),
        (ENGLISH, "pl", False),
        (ENGLISH, "en", True),
        (POLISH, "en", False),
        ("", "pl", False),  # an empty answer is in no language
        ("160 kcal", "en", False),
    ],
)
def test_language_check(text: str, expected: Literal["pl", "en"], passed: bool) -> None:
    assert run_checks(ChecksConfig(language=expected), text) == {"language": passed}


# --- all together -------------------------------------------------------------------------


def test_no_checks_configured_gives_no_results() -> None:
    assert run_checks(ChecksConfig(), POLISH) == {}


def test_every_configured_check_reports_under_its_label() -> None:
    checks = ChecksConfig(
        min_words=50, contains_any=["potas", "błonnik"], regex=r"serca", language="pl"
    )
    results = run_checks(checks, POLISH)
    assert results == {"min_words": False, "contains_any": True, "regex": True, "language": True}
    # The keys are exactly the `check` label values the exposition pre-creates.
    assert tuple(results) == checks.names()
