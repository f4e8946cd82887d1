"""The layers import downwards only (docs/architecture.md). Read off the
source with ast, so a new import that breaks the design fails here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "toktoken"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (at any depth of the file)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("toktoken")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("toktoken"):
                continue
            for alias in node.names:  # "from . import jsonio" imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _imports_of(prefix: str) -> set[str]:
    return {t for m, targets in GRAPH.items() if m.startswith(prefix) for t in targets}


def _outside(prefix: str) -> set[str]:
    return {t for t in _imports_of(prefix) if not t.startswith(prefix)}


def test_convert_imports_nothing_but_errors():
    assert _outside("toktoken.convert") <= {"toktoken.errors"}


def test_config_is_a_leaf():
    assert _outside("toktoken.config") == set()


def test_backends_never_import_convert():
    assert not {t for t in _imports_of("toktoken.backends") if t.startswith("toktoken.convert")}


def test_blueprints_never_reach_the_backends_or_convert():
    reached = _outside("toktoken.api")
    assert not {t for t in reached if t.startswith(("toktoken.backends", "toktoken.convert"))}


def test_no_import_cycles():
    def visit(module, stack):
        if module in stack:
            cycle = stack[stack.index(module) :] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        for target in GRAPH.get(module, ()):
            if target != module and not module.startswith(target + "."):
                visit(target, stack + [module])

    for module in GRAPH:
        visit(module, [])


def test_no_module_is_too_long_to_read():
    long = {
        p.name: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long
