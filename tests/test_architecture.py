"""The import rules of the rooms (shared/DESIGN.md), read from the source with ast, so the house stays as drawn:
the pure core does no I/O, dependencies point one way, only the Kafka edges import the Kafka clients, and the
worker and the feed never import the command line, the evaluation, the simulator or the benchmark. Imports inside
functions count as much as those at the top."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("twin_state", "alerts", "streams", "feed", "cli", "evaluation", "simulation", "bench")
MAY_IMPORT = {
    "twin_state": {"twin_state"},
    "alerts": {"twin_state", "alerts"},
    "streams": {"twin_state", "alerts", "streams"},
    "feed": {"twin_state", "alerts", "streams", "feed"},
    "simulation": {"twin_state", "alerts", "streams", "simulation"},
    "evaluation": {"twin_state", "alerts", "streams", "simulation", "evaluation"},
    "bench": {"twin_state", "alerts", "streams", "simulation", "bench"},
    "cli": set(OURS),
}
KAFKA_CLIENTS = {"aiokafka", "faust", "mode", "kafka"}
IO_LIBRARIES = KAFKA_CLIENTS | {"redis", "prometheus_client", "fastapi", "starlette", "uvicorn", "httpx", "click",
                                "socket", "asyncio", "subprocess", "urllib", "requests", "time"}
PURE_ADAPTERS = {"twin_state/redis_store.py"}
"""The one module of the pure rooms that talks to something: it persists twins and profiles in Redis."""
KAFKA_EDGES = ("streams/", "feed/kafka.py", "bench/")


def modules() -> Iterator[tuple[str, ast.Module]]:
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def top(name: str) -> str:
    """The package of a dotted module name or of a path."""
    return name.replace("/", ".").split(".")[0]


def test_every_package_imports_only_the_rooms_below_it() -> None:
    wrong = [f"{path}:{line} imports {name}" for path, tree in modules() for line, name in imported(tree)
             if top(name) in OURS and top(name) not in MAY_IMPORT[top(path)]]
    assert wrong == []


def test_the_pure_core_does_no_io_and_reads_no_clock_or_environment() -> None:
    wrong = []
    for path, tree in modules():
        if top(path) not in {"twin_state", "alerts"} or path in PURE_ADAPTERS:
            continue
        wrong += [f"{path}:{line} imports {name}" for line, name in imported(tree) if top(name) in IO_LIBRARIES]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                    (node.value.id == "os" and node.attr in {"environ", "getenv"})
                    or (node.value.id in {"datetime", "date"} and node.attr in {"now", "today", "utcnow"})):
                wrong.append(f"{path}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert wrong == []


def test_only_the_kafka_edges_import_a_kafka_client() -> None:
    wrong = [f"{path}:{line} imports {name}" for path, tree in modules() for line, name in imported(tree)
             if top(name) in KAFKA_CLIENTS and not path.startswith(KAFKA_EDGES)]
    assert wrong == []


def test_no_module_level_app() -> None:
    """Apps are built by functions (``create_app``, ``create_api``); importing a module starts nothing."""
    wrong = []
    for path, tree in modules():
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                func = node.value.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in {"App", "FastAPI", "create_app", "create_api"}:
                    wrong.append(f"{path}:{node.lineno} builds an app at import")
    assert wrong == []


@pytest.mark.parametrize("rule", sorted(MAY_IMPORT))
def test_the_rules_name_real_rooms(rule: str) -> None:
    assert (ROOT / rule / "__init__.py").exists() and MAY_IMPORT[rule] <= set(OURS)
