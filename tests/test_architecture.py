"""The package's imports flow one way: config → probing (and backends) → results → exposition →
the web server and the commands. A module importing against that flow fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "exporter"

# Each layer, by module prefix, and the layers it must not import.
LEAVES = (
    "exporter.config",
    "exporter.validation",
    "exporter.ollama_options",
    "exporter.redact",
    "exporter.target_files",
    "exporter.target_file_format",
    "exporter.shard",
)
DOWNSTREAM = {
    "probing": ("exporter.results", "exporter.exposition", "exporter.web", "exporter.service"),
    "results": ("exporter.exposition", "exporter.web", "exporter.service"),
    "exposition": ("exporter.web", "exporter.service", "exporter.cli"),
}
LAYERS = {
    "exporter.probing": DOWNSTREAM["probing"],
    "exporter.backends": DOWNSTREAM["probing"],
    "exporter.results": DOWNSTREAM["results"],
    "exporter.exposition": DOWNSTREAM["exposition"],
    **{leaf: ("exporter.probing", "exporter.backends", *DOWNSTREAM["probing"]) for leaf in LEAVES},
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_module_imports_against_the_flow() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        for layer, forbidden in LAYERS.items():
            if not _within(module, layer):
                continue
            wrong += [
                f"{module} imports {name}"
                for name in sorted(_imports(path))
                if any(_within(name, f) for f in forbidden)
            ]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_backward_import(tmp_path: Path) -> None:
    probe = tmp_path / "exporter" / "probing" / "x.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from exporter.results import ResultStore\nimport exporter.web.server\n")
    assert _imports(probe) >= {"exporter.results", "exporter.web.server"}
    assert any(_within(n, "exporter.results") for n in _imports(probe))


REPORT_EXTRA = ("numpy", "scipy", "matplotlib")


def test_only_compare_uses_the_report_extra_and_only_the_cli_imports_compare() -> None:
    """The exporter runs without numpy, scipy and matplotlib (its image does not ship them)."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        if _within(module, "exporter.compare"):
            continue
        for name in sorted(_imports(path)):
            if any(_within(name, extra) for extra in REPORT_EXTRA):
                wrong.append(f"{module} imports {name}")
            if _within(name, "exporter.compare") and module != "exporter.cli":
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)
