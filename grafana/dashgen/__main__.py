"""Write (or with --check, compare) grafana/dashboards/*.json.

Usage from the repository root: `python -m grafana.dashgen [--check]`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import render_all

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboards"


def stale_files(rendered: dict[str, str], directory: Path) -> list[str]:
    """Names whose committed text differs from `rendered`, plus JSON files nobody generates."""
    stale = [
        name
        for name, text in rendered.items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]
    stale += sorted(p.name for p in directory.glob("*.json") if p.name not in rendered)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.dashgen", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed file differs; write nothing"
    )
    args = parser.parse_args(argv)
    rendered = render_all()
    if args.check:
        stale = stale_files(rendered, DASHBOARD_DIR)
        for name in stale:
            print(f"grafana/dashboards/{name} is not what the generator produces", file=sys.stderr)
        return 1 if stale else 0
    DASHBOARD_DIR.mkdir(exist_ok=True)
    for name, text in rendered.items():
        (DASHBOARD_DIR / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
