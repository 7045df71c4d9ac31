"""The layer contracts of docs/architecture.md, checked on the source of every module.

Each module's imports are read with ``ast`` -- at module level and inside functions,
``TYPE_CHECKING`` blocks included -- and checked against what its layer may import:

- ``dicombus.protocol`` (sans-I/O core): the standard library, pydicom and itself;
- ``dicombus.runtime``: neither ``dicombus.services``, ``dicombus.bus`` nor ``dicombus.cli``;
- ``dicombus.services``: neither ``dicombus.bus`` nor ``dicombus.cli``, nor the association,
  the AE or the server (it sees an association through ``dicombus.services.interface``);
- ``dicombus.bus``: never ``dicombus.cli``, nor ``dicombus.association`` (it reads
  associations through ``dicombus.bus.association_view``);
- ``dicombus``: never ``dicombus_workers``, except the commands that start workers.

Only direct imports are checked: a module is responsible for what it names.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parent.parent / "services"

# A known violation, named with the reason it stays for now. Each must still be a
# violation (test_every_exception_is_still_needed), so a fixed one is removed here.
EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.imported}"


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICES).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted((SERVICES / "dicombus").rglob("*.py"))}


def imports_in(source: str, importer: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import statement anywhere in ``source``, as absolute module names.

    ``from package import name`` counts as importing ``package.name`` when that is one
    of our modules (``from dicombus import evt``), else as importing ``package``.
    """
    package = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield Import(importer, candidate if candidate in MODULES else base, node.lineno)


def all_imports() -> Iterator[Import]:
    for name, path in MODULES.items():
        yield from imports_in(path.read_text(), name, is_package=path.name == "__init__.py")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def _protocol(found: Import) -> bool:
    """Whether ``found`` breaks: the protocol core imports only stdlib, pydicom, itself."""
    if not _within(found.importer, "dicombus.protocol"):
        return False
    top = found.imported.partition(".")[0]
    if top in sys.stdlib_module_names or top == "pydicom":
        return False
    return not _within(found.imported, "dicombus.protocol")


def _forbids(layer: str, *above: str, unless: tuple[str, ...] = ()) -> Callable[[Import], bool]:
    def breaks(found: Import) -> bool:
        return (
            _within(found.importer, layer)
            and found.importer not in unless
            and any(_within(found.imported, name) for name in above)
        )

    return breaks


def _outside_the_commands_imports_them(found: Import) -> bool:
    """Whether ``found`` breaks: only the commands (``dicombus.cli``) import the commands."""
    return not _within(found.importer, "dicombus.cli") and _within(found.imported, "dicombus.cli")


CONTRACTS: dict[str, Callable[[Import], bool]] = {
    "only the commands import the commands": _outside_the_commands_imports_them,
    "protocol imports only the standard library, pydicom and itself": _protocol,
    "runtime imports neither services, bus nor cli": _forbids(
        "dicombus.runtime", "dicombus.services", "dicombus.bus", "dicombus.cli"
    ),
    "services import neither bus nor cli": _forbids(
        "dicombus.services", "dicombus.bus", "dicombus.cli"
    ),
    "the bus never imports cli": _forbids("dicombus.bus", "dicombus.cli"),
    # Issue 9: the services see an association through services.interface, the bus
    # through bus.association_view; neither names the runtime's Association (or the AE).
    "services see neither the association, the AE nor the server": _forbids(
        "dicombus.services", "dicombus.association", "dicombus.ae", "dicombus.server"
    ),
    "the bus never imports the association": _forbids("dicombus.bus", "dicombus.association"),
    "dicombus never imports dicombus_workers (but the commands starting workers)": _forbids(
        "dicombus", "dicombus_workers", unless=("dicombus.cli.up", "dicombus.cli.worker")
    ),
}


def violations(contract: Callable[[Import], bool]) -> list[Import]:
    return [
        found
        for found in all_imports()
        if contract(found) and (found.importer, found.imported) not in EXCEPTIONS
    ]


@pytest.mark.parametrize("contract", list(CONTRACTS))
def test_layer_contract(contract: str) -> None:
    broken = violations(CONTRACTS[contract])
    assert not broken, f"{contract}:\n" + "\n".join(map(str, broken))


def test_every_exception_is_still_needed() -> None:
    found = {(each.importer, each.imported) for each in all_imports()}
    breaking = {
        (each.importer, each.imported)
        for each in all_imports()
        if any(contract(each) for contract in CONTRACTS.values())
    }
    assert set(EXCEPTIONS) <= found & breaking, "remove the exceptions that no longer apply"


def test_imports_inside_functions_and_relative_imports_are_seen() -> None:
    source = (
        "from . import fsm\n"
        "from ..cli import storescp\n"
        "def handler():\n"
        "    import dicombus_workers.app\n"
        "    from dicombus import evt\n"
    )
    found = [each.imported for each in imports_in(source, "dicombus.protocol.pdus")]
    assert found == [
        "dicombus.protocol.fsm",
        "dicombus.cli.storescp",
        "dicombus_workers.app",
        "dicombus.evt",
    ]
    assert [_protocol(each) for each in imports_in(source, "dicombus.protocol.pdus")] == [
        False,
        True,
        True,
        True,
    ]


# -- import cycles and deferred imports -------------------------------------------------


def _module_level_statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """The statements run when the module is imported: not in functions or classes'
    methods, and not under ``if TYPE_CHECKING:`` (which only the type checker runs)."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.If):
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                pending.extend(node.orelse)
                continue
            pending.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                pending.extend(handler.body)
        elif isinstance(node, ast.ClassDef):
            pending.extend(
                each
                for each in node.body
                if not isinstance(each, ast.FunctionDef | ast.AsyncFunctionDef)
            )
        else:
            yield node


def runtime_imports() -> dict[str, set[str]]:
    """Each module's imports of our modules that run at import time.

    The package ``dicombus`` itself is left out: its ``__init__`` re-exports the
    API, and ``from dicombus import evt`` loads it only once, before any module.
    """
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        module = ast.Module(body=list(_module_level_statements(tree)), type_ignores=[])
        graph[name] = {
            each.imported
            for each in imports_in(ast.unparse(module), name, is_package=path.name == "__init__.py")
            if each.imported in MODULES and each.imported != "dicombus"
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: one path per strongly connected component
    with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_runtime_imports() -> None:
    assert cycles(runtime_imports()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


# Commands import what they run inside their functions: `dicombus --help` and each
# command's start stay fast, and a command needing workers or the bus loads them alone.
DEFERRED_IMPORTS_ALLOWED_IN = ("dicombus.cli",)


def test_no_deferred_imports_of_our_modules_outside_the_commands() -> None:
    deferred = []
    for name, path in MODULES.items():
        if any(_within(name, allowed) for allowed in DEFERRED_IMPORTS_ALLOWED_IN):
            continue
        tree = ast.parse(path.read_text())
        at_import = {id(node) for node in _module_level_statements(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in at_import:
                if _is_type_checking_import(tree, node):
                    continue
                for found in imports_in(
                    ast.unparse(node), name, is_package=path.name == "__init__.py"
                ):
                    if _within(found.imported, "dicombus") or _within(
                        found.imported, "dicombus_workers"
                    ):
                        deferred.append(f"{name} (line {node.lineno}) imports {found.imported}")
    assert not deferred, "\n".join(deferred)


def _is_type_checking_import(tree: ast.Module, target: ast.stmt) -> bool:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
            and any(child is target for child in ast.walk(node))
        ):
            return True
    return False
