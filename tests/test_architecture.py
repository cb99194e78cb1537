"""The shape of the code, checked: what docs/design.md promises about it stays true.

- layers: imports go one way, down (``cli`` → ``runs`` → ``sweeps`` → ``train`` → the
  building blocks → the shared concerns); an upward import fails here with its line;
- size: no package over 20 modules, no module over 400 lines, no function body over 60 lines
  unless a comment in it says why it is long (the rule a reviewer would apply by hand).

Each check also runs on a small made-up tree, so a check that can no longer fail is caught.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "expctl"

# Lower number = lower layer. A module may import its own package or any lower layer.
LAYERS: dict[str, int] = {
    "cli": 8,
    "runs": 7,
    "sweeps": 6,
    "train": 5,
    "artifacts": 4,
    "config": 4,
    "trackers": 4,
    "provenance": 4,
    "device": 4,
    "host_share": 4,
    "rundir": 3,
    "record": 2,
    "fsutil": 1,
    "secrets": 1,
    "signals": 1,
    "status": 1,
    "errors": 0,
}
# The package's doors, above every layer: `python -m expctl` and `expctl.train(...)`.
ENTRY_POINTS = {"__init__", "__main__"}
MAX_MODULES_PER_PACKAGE = 20
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _area(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _imported_areas(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "expctl":
                yield from ((node.lineno, alias.name) for alias in node.names)
            elif node.module.startswith("expctl."):
                yield node.lineno, node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("expctl."):
                    yield node.lineno, alias.name.split(".")[1]


def upward_imports(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        area = _area(path, root)
        if area in ENTRY_POINTS:
            continue
        for line, target in _imported_areas(ast.parse(path.read_text())):
            if target == area or target == "__version__":
                continue
            if target not in LAYERS or area not in LAYERS:
                found.append(f"{path.relative_to(root)}:{line}: {area} → {target}: unknown area")
            elif LAYERS[target] >= LAYERS[area]:
                found.append(f"{path.relative_to(root)}:{line}: {area} → {target} goes up")
    return found


def oversized(root: Path) -> list[str]:
    found = []
    for package in sorted(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        modules = list(package.glob("*.py"))
        if len(modules) > MAX_MODULES_PER_PACKAGE:
            found.append(f"{package.relative_to(root)}/: {len(modules)} modules")
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(root)}: {lines} lines")
        source = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first, last = node.body[0].lineno, node.end_lineno or node.body[0].lineno
            if last - first + 1 <= MAX_FUNCTION_LINES:
                continue
            if not any(line.lstrip().startswith("#") for line in source[node.lineno - 1 : last]):
                found.append(
                    f"{path.relative_to(root)}:{node.lineno}: {node.name} is "
                    f"{last - first + 1} lines with no comment saying why"
                )
    return found


def test_imports_go_down_the_layers():
    assert upward_imports(PACKAGE) == []


def test_packages_modules_and_functions_stay_small():
    assert oversized(PACKAGE) == []


@pytest.fixture
def made_up_tree(tmp_path: Path) -> Path:
    root = tmp_path / "expctl"
    (root / "train").mkdir(parents=True)
    (root / "train" / "loop.py").write_text("from expctl.runs.query import resolve_run\n")
    (root / "errors.py").write_text("\n" * (MAX_MODULE_LINES + 1))
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES + 1))
    (root / "fsutil.py").write_text(f"def long():\n{body}\ndef explained():\n    # why\n{body}")
    wide = root / "wide"
    wide.mkdir()
    for i in range(MAX_MODULES_PER_PACKAGE + 1):
        (wide / f"m{i}.py").write_text("")
    return root


def test_the_checks_find_what_they_are_meant_to_find(made_up_tree: Path):
    assert upward_imports(made_up_tree) == ["train/loop.py:1: train → runs goes up"]
    problems = oversized(made_up_tree)
    assert "errors.py: 401 lines" in problems
    assert "wide/: 21 modules" in problems
    assert any("fsutil.py:1: long is 61 lines" in p for p in problems)
    assert not any("explained" in p for p in problems)
