"""The package's shape: no import cycle between its modules, none over 400 lines, and the parts
that run generated code reachable from the plugin's hooks; and CI's script names only test
modules there are."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "pytest_upskill"
LONGEST_MODULE = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules `name` imports when it runs (at the top or in a function; not
    the imports that only type checkers read)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    nodes: list[ast.AST] = [ast.parse(path.read_text())]
    while nodes:
        node = nodes.pop()
        if _type_checking_only(node):
            continue
        nodes.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


def test_no_module_imports_itself_back() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check above would see one: `keys` importing `plugin`, which imports `keys`."""
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert "pytest_upskill.keys" in graph["pytest_upskill.plugin"]
    graph["pytest_upskill.keys"].add("pytest_upskill.plugin")
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(graph).static_order())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= LONGEST_MODULE, f"{name} has {lines} lines"


def test_the_modules_ci_leaves_out_of_the_cuda_run_are_there() -> None:
    """`--ignore` of a path that is not there ignores nothing, silently: a misspelt or renamed
    module would run again against the CUDA build."""
    loop = re.search(r"for module in ([^;]*); do", (REPO / ".ci" / "run").read_text())
    assert loop is not None
    modules = loop.group(1).replace("\\\n", " ").split()
    assert len(modules) >= 10
    missing = [name for name in modules if not (REPO / "tests" / f"test_{name}.py").is_file()]
    assert missing == []
