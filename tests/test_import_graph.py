"""The project's import graph: no cycles, and the layers import only downwards.

Every module of alphapose/, tools/, bench/, main.py and model_handler.py is parsed (nothing is imported)
and each ``import`` becomes an edge, a function's own imports included: an import put inside a function
to dodge a cycle still runs, and the cycle it hides still ties the modules together. Imports under
``if TYPE_CHECKING:`` are left out (they never run). Importing ``a.b.c`` runs ``a/__init__.py`` and
``a/b/__init__.py`` first, so those packages are edges too, except the importing module's own packages,
which are already running when it runs.

The tests are held to one rule of their own: no module under tests/ imports a test module. What tests
share lives in tests/helpers (or, for the golden fixtures, beside their generators), so running, moving or
deleting one test module never changes another.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("alphapose", "tools", "bench", "main.py", "model_handler.py")
LIBRARY = "alphapose"
ABOVE_THE_LIBRARY = ("tools", "bench", "main", "model_handler")
CVAT_SDK = "cvat_sdk"
CVAT_SDK_USER = "alphapose.cvat.sdk_function"  # the one module of the function's code that needs it
# What the Nuclio images run: the library and the function's two files (the images lack the ``cvat`` extra;
# the tools that talk to a CVAT server, annotate-task, need it and may import it).
FUNCTION_CODE = (LIBRARY, "main", "model_handler")

TESTS = ROOT / "tests"
TEST_MODULE_FILES = ("test_*.py", "*_test.py")  # pytest's default ``python_files``: what it collects

Graph = dict[str, set[str]]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project."""
    files: dict[str, Path] = {}
    for source in SOURCES:
        paths = [root / source] if source.endswith(".py") else sorted((root / source).rglob("*.py"))
        for path in filter(Path.is_file, paths):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under ``node`` at any depth, except the body of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports(other)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _imports(child)


def imported_names(module: str, path: Path, is_package: bool) -> set[str]:
    """The absolute names a module imports: each module, and ``module.name`` for a from-import's names."""
    names: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            anchor = package[: len(package) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _packages(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: what importing it runs."""
    parts = name.split(".")
    return [".".join(parts[: n + 1]) for n in range(len(parts))]


def import_graph(files: Mapping[str, Path]) -> tuple[Graph, dict[str, set[str]]]:
    """Project module -> the project modules it runs by importing, and module -> every name it imports."""
    graph: Graph = {}
    imported: dict[str, set[str]] = {}
    for module, path in files.items():
        names = imported_names(module, path, path.name == "__init__.py")
        own = set(_packages(module))
        imported[module] = names
        graph[module] = {
            target for name in names for target in _packages(name) if target in files and target not in own
        }
    return graph, imported


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as ``[a, b, ..., a]``, or None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def _reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def all_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle in each group of modules that import each other (strongly connected components)."""
    reach = {node: _reachable(graph, node) for node in graph}
    cycles, done = [], set()
    for node in sorted(graph):
        if node in done or node not in reach[node]:
            continue
        group = {other for other in reach[node] if node in reach[other]}
        done |= group
        cycles.append(find_cycle({m: graph[m] & group for m in group}) or [node, node])
    return cycles


def importable_test_names(tests: Path) -> set[str]:
    """Every name a test module can be imported by: dotted from the checkout (``tests.tools.test_x``) and
    bare (``test_x``: pytest puts a test module's folder on ``sys.path`` to import it)."""
    names = set()
    for pattern in TEST_MODULE_FILES:
        for path in tests.rglob(pattern):
            names.add(".".join(path.relative_to(tests.parent).with_suffix("").parts))
            names.add(path.stem)
    return names


def imports_of_test_modules(tests: Path) -> dict[str, list[str]]:
    """Each module under ``tests`` (helpers and conftest.py included) -> the test modules it imports."""
    targets = importable_test_names(tests)
    found = {}
    for path in sorted(tests.rglob("*.py")):
        module = ".".join(path.relative_to(tests.parent).with_suffix("").parts)
        names = imported_names(module, path, path.name == "__init__.py")
        imported = sorted({target for name in names for target in _packages(name) if target in targets})
        if imported:
            found[str(path.relative_to(tests.parent))] = imported
    return found


@pytest.fixture(scope="module")
def project() -> tuple[Graph, dict[str, set[str]]]:
    return import_graph(module_files())


def test_the_project_has_no_import_cycle(project: tuple[Graph, dict[str, set[str]]]) -> None:
    graph, _ = project
    assert len(graph) > 50, "the project's modules were not found"
    cycles = all_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_strict_loader_is_a_leaf(project: tuple[Graph, dict[str, set[str]]]) -> None:
    """Every loader imports it, so it imports nothing of the project but the errors."""
    graph, _ = project
    assert graph["alphapose.weights.strict"] == {"alphapose.errors"}


def test_the_library_imports_nothing_above_it(project: tuple[Graph, dict[str, set[str]]]) -> None:
    _, imported = project
    upward = {
        module: sorted(n for n in names if n.split(".")[0] in ABOVE_THE_LIBRARY)
        for module, names in imported.items()
        if module.split(".")[0] == LIBRARY
    }
    assert {module: names for module, names in upward.items() if names} == {}


def test_only_the_sdk_function_imports_cvat_sdk(project: tuple[Graph, dict[str, set[str]]]) -> None:
    """Of the code the function images run, only the SDK function (which they do not stage) imports it."""
    _, imported = project
    users = sorted(
        module
        for module, names in imported.items()
        if module.split(".")[0] in FUNCTION_CODE
        and any(n.split(".")[0] == CVAT_SDK for n in names)
        and module != CVAT_SDK_USER
    )
    assert users == [], f"cvat_sdk imported outside {CVAT_SDK_USER}: {users}"


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    """A deliberate cycle (a package whose ``__init__`` imports a module that imports, inside a function,
    a module of another package that imports the first) is found and named, written absolutely or
    relatively; the same import under ``TYPE_CHECKING`` is no edge."""
    library = tmp_path / "alphapose"
    for package in (library, library / "x", library / "y"):
        package.mkdir()
        (package / "__init__.py").write_text("")
    (library / "x" / "__init__.py").write_text("from alphapose.x.m import run\n")
    (library / "x" / "m.py").write_text("def run():\n    from alphapose.y import n\n    return n\n")
    cycle = ["alphapose.x", "alphapose.x.m", "alphapose.y.n", "alphapose.x"]
    for back in ("from alphapose.x import run\n", "from ..x import run\n", "import alphapose.x.m\n"):
        (library / "y" / "n.py").write_text(back)
        graph, _ = import_graph(module_files(tmp_path))
        assert find_cycle(graph) == cycle, back
        assert all_cycles(graph) == [cycle], back
    (library / "y" / "n.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from alphapose.x import run\n"
    )
    graph, _ = import_graph(module_files(tmp_path))
    assert graph["alphapose.y.n"] == set() and find_cycle(graph) is None and all_cycles(graph) == []


def test_no_test_module_imports_another() -> None:
    """A helper two test modules need belongs in tests/helpers, not in one of them."""
    assert imports_of_test_modules(TESTS) == {}


def test_the_checker_finds_a_test_module_imported(tmp_path: Path) -> None:
    """A test module imported dotted, bare, or as a package's attribute is found, inside a function too;
    a helper, conftest.py and a generator beside the tests are not test modules."""
    tests = tmp_path / "tests"
    for folder in ("a", "b", "helpers"):
        (tests / folder).mkdir(parents=True)
    (tests / "conftest.py").write_text("import shared\n")
    (tests / "helpers" / "shared.py").write_text("X = 1\n")
    (tests / "a" / "gen_data.py").write_text("Y = 2\n")
    (tests / "a" / "test_one.py").write_text("from shared import X\nfrom tests.a.gen_data import Y\n")
    assert imports_of_test_modules(tests) == {}
    for back, name in (
        ("from tests.a.test_one import X\n", "tests.a.test_one"),
        ("from tests.a import test_one\n", "tests.a.test_one"),
        ("import test_one\n", "test_one"),
        ("def f():\n    from test_one import X\n", "test_one"),
    ):
        (tests / "b" / "test_two.py").write_text(back)
        assert imports_of_test_modules(tests) == {"tests/b/test_two.py": [name]}, back
