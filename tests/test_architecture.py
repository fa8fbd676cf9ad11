"""docs/architecture.md's diagram matches the code; no module-level import cycle in dovit/ or app/."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import architecture_diagram  # noqa: E402


def test_the_diagram_in_docs_is_regenerated_from_the_code():
    assert architecture_diagram.main(["--check"]) == 0, "run: python scripts/architecture_diagram.py"


def test_no_module_imports_itself_through_others_at_import_time():
    known = architecture_diagram.modules()
    graph = {name: {target for target in architecture_diagram.imports_of(path, top_level_only=True)
                    if target in known and target != name} for name, path in known.items()}
    # A package's __init__ importing its own submodules is how a package is built, not a cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
