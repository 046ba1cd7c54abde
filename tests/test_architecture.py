"""The package layers of docs/architecture.md, enforced on the code (function-local imports included).

A module may import its own package and any lower layer, never a higher
one; capabilities (acme, check, smtpd, ca, dane) do not import each other; there is
no import cycle anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "certkit"

# Lowest first. A module is placed by its first dotted component below certkit.
LAYERS: list[tuple[str, set[str]]] = [
    ("core", {"__init__", "errors", "callbacks", "clock", "envvars", "homedir", "hostport", "names", "keys", "x509",
              "fsguard", "atomicfile", "statelock", "journal", "secretfile", "polling", "runner", "settings", "export",
              "store", "storeaccounts", "csrfile", "trust", "progress", "promtext", "endpoints", "tlsa", "dnshook"}),
    ("capabilities", {"acme", "check", "smtpd", "ca", "dane"}),
    ("deploy", {"deploy"}),
    ("issuing", {"issuing"}),
    ("renew", {"renew"}),
    ("metrics", {"metrics"}),
    ("interface", {"cli", "__main__"}),
]
# Capabilities stand side by side: each is usable without the others.
CAPABILITY_GROUPS = {"acme": "acme", "check": "check", "smtpd": "smtpd", "ca": "ca", "dane": "dane"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """certkit modules ``path`` imports anywhere in its body (``from certkit.x import y`` -> ``certkit.x.y``
    when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "certkit":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "certkit")
    return found


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(module: str) -> int:
    for rank, (_, members) in enumerate(LAYERS):
        if top(module) in members:
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_no_upward_import_and_capabilities_stay_apart() -> None:
    mods = modules()
    problems = []
    for module, path in mods.items():
        for imported in imports_of(path, set(mods)):
            if imported == "certkit":
                continue
            if layer_of(imported) > layer_of(module):
                problems.append(f"{module} imports {imported} (up from {LAYERS[layer_of(module)][0]} "
                                f"to {LAYERS[layer_of(imported)][0]})")
            mine, theirs = CAPABILITY_GROUPS.get(top(module)), CAPABILITY_GROUPS.get(top(imported))
            if mine and theirs and mine != theirs:
                problems.append(f"{module} imports {imported}: capabilities do not import each other")
    assert not problems, "\n".join(problems)


def test_no_import_cycle() -> None:
    mods = modules()
    graph = {m: {i for i in imports_of(p, set(mods)) if i in mods and i != m} for m, p in mods.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def test_modules_and_functions_stay_readable() -> None:
    """No module over 500 lines, no function over 60 (docs/architecture.md): split by job instead."""
    problems = []
    for module, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            problems.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    problems.append(f"{module}.{node.name}: {size} lines")
    assert not problems, "\n".join(problems)
