"""The house rules that import-linter cannot check (it checks the layers: `lint-imports`, in `make test`).

- No private name (`_x`) is imported from another module: what a module shares, it names publicly.
- Small units: no module over 400 lines, no function over 60, unless the line above the `def` (or the module's first
  line) carries a `# long: <why>` comment (for a module: a top-level one in its first 8 lines) that says why the longer
  unit reads better.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engage_assets", "resources", "sensors")
FIRST_PARTY = PACKAGES + ("tests", "bench")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _explained(lines: list[str], lineno: int) -> bool:
    """A `# long:` comment on the line above (or on) the definition, skipping decorators."""
    i = lineno - 1
    while i > 0 and lines[i - 1].lstrip().startswith("@"):
        i -= 1
    return any("# long:" in lines[j] for j in (i - 1, lineno - 1) if 0 <= j < len(lines))


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_private_names_imported_across_modules(path: Path):
    tree = ast.parse(path.read_text())
    private = [
        f"{node.module}.{alias.name} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FIRST_PARTY
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not private, f"{_rel(path)} imports private names: {private}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_units_are_small(path: Path):
    text = path.read_text()
    lines = text.splitlines()
    problems = []
    if len(lines) > MAX_MODULE_LINES and not any(line.startswith("# long:") for line in lines[:8]):
        problems.append(f"module has {len(lines)} lines (> {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            if n > MAX_FUNCTION_LINES and not _explained(lines, node.lineno):
                problems.append(f"{node.name} (line {node.lineno}) has {n} lines (> {MAX_FUNCTION_LINES})")
    assert not problems, f"{_rel(path)}: " + "; ".join(problems)
