"""The package's imports flow one way: no module imports, directly or through others, a
module that imports it back. Read from the source (every ``import`` statement, including
those inside functions), so a cycle is found even where a lazy import would hide it at
run time."""

from __future__ import annotations

import ast
from pathlib import Path

import rtcheck

PACKAGE = Path(rtcheck.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["rtcheck", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from rtcheck.x import y``: y may itself be a module of the package.
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for target in targets:
                # The longest module name the target starts with: that module is imported.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target != "rtcheck":
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read_from_the_source() -> None:
    graph = _graph()
    # Known edges, so that an empty graph cannot pass the acyclicity test below.
    assert "rtcheck.dvh.interpolation" in graph["rtcheck.dvh.core"]
    assert "rtcheck.dvh.structure" in graph["rtcheck.dvh.area_profile"]
    assert "rtcheck.reports.common" in graph["rtcheck.reports.check"]


def test_no_import_cycles() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_dvh_model_never_imports_upwards() -> None:
    # The DVH model knows nothing of DICOM, protocols, reports or the command line, and
    # its shape-model modules never import the sampler.
    graph = _graph()
    for name, imports in graph.items():
        if name.startswith("rtcheck.dvh"):
            outside = {t for t in imports if not t.startswith("rtcheck.dvh")}
            assert not outside, f"{name} imports {outside}"
    for name in ("rtcheck.dvh.interpolation", "rtcheck.dvh.area_profile", "rtcheck.dvh.structure"):
        assert "rtcheck.dvh.core" not in graph[name]
        assert "rtcheck.dvh" not in graph[name]


def test_lower_layers_never_import_reports_or_the_command_line() -> None:
    graph = _graph()
    for name, imports in graph.items():
        if name.startswith(
            (
                "rtcheck.reports",
                "rtcheck.cli",
                "rtcheck.batch",
                "rtcheck.watch",
                "rtcheck.serve",
                "rtcheck.__main__",
            )
        ):
            continue
        upward = {t for t in imports if t.startswith(("rtcheck.reports", "rtcheck.cli"))}
        assert not upward, f"{name} imports {upward}"
