"""Writes every alert's `runbook_url` annotation as a literal link, from one constant.

    python -m prometheus.runbook_links            # rewrite prometheus/rules/*.yml
    python -m prometheus.runbook_links --check    # exit 1 if a file is not current
    python -m prometheus.runbook_links --base-url https://git.example.org/.../runbooks.md

Each alert links to its section of docs/runbooks.md: `<base>#<alert name in lower case>`. The
link used to be built from an external label, which made it a label of every alert: changing
the URL changed every alert's identity (and re-paged everything firing), and a Prometheus
without that label rendered broken links. A literal annotation has neither problem. The files
are rewritten line by line, so their comments and layout stay as written.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

RUNBOOK_BASE_URL = (
    "https://github.com/ollama-probe-exporter/ollama-probe-exporter/blob/main/docs/runbooks.md"
)
RULES = Path(__file__).resolve().parent / "rules"

_ALERT = re.compile(r"^\s*-\s+alert:\s*(\S+)\s*$")
_LINK = re.compile(r"^(\s*)runbook_url:.*$")


def link(alert: str, base_url: str = RUNBOOK_BASE_URL) -> str:
    return f"{base_url}#{alert.lower()}"


def rewrite(text: str, base_url: str = RUNBOOK_BASE_URL) -> str:
    """The rule file with each alert's runbook_url line set to its link."""
    lines, alert = [], None
    for line in text.splitlines(keepends=True):
        if found := _ALERT.match(line):
            alert = found.group(1)
        elif (found := _LINK.match(line)) and alert is not None:
            ending = line[len(line.rstrip("\r\n")) :]
            line = f'{found.group(1)}runbook_url: "{link(alert, base_url)}"{ending}'
        lines.append(line)
    return "".join(lines)


def missing_links(text: str) -> list[str]:
    """Alerts of a rule file without a runbook_url annotation."""
    groups = (yaml.safe_load(text) or {}).get("groups", [])
    return [
        rule["alert"]
        for group in groups
        for rule in group.get("rules", [])
        if "alert" in rule and "runbook_url" not in rule.get("annotations", {})
    ]


def stale_files(base_url: str = RUNBOOK_BASE_URL, rules: Path = RULES) -> list[Path]:
    return [
        p
        for p in sorted(rules.glob("*.yml"))
        if rewrite(p.read_text(encoding="utf-8"), base_url) != p.read_text(encoding="utf-8")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prometheus.runbook_links")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is not current")
    parser.add_argument("--base-url", default=RUNBOOK_BASE_URL, help="where runbooks.md renders")
    args = parser.parse_args(argv)
    problems = [
        f"{path.name}: {alert} has no runbook_url annotation"
        for path in sorted(RULES.glob("*.yml"))
        for alert in missing_links(path.read_text(encoding="utf-8"))
    ]
    stale = stale_files(args.base_url)
    if args.check:
        problems += [
            f"{path.name}: not current, run python -m prometheus.runbook_links" for path in stale
        ]
    else:
        for path in stale:
            path.write_text(
                rewrite(path.read_text(encoding="utf-8"), args.base_url), encoding="utf-8"
            )
            print(f"rewrote {path.name}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
