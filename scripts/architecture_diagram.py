"""Write the package diagram of docs/architecture.md from the code: which folder imports which.

    python scripts/architecture_diagram.py          # rewrite the diagram between the markers
    python scripts/architecture_diagram.py --check  # exit 1 when out of date (tests/test_architecture.py)
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- diagram: scripts/architecture_diagram.py -->", "<!-- end of diagram -->"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, top_level_only: bool = False) -> set[str]:
    """The absolute module names ``path`` imports (relative imports resolved); module level only if asked."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if node.module:
                found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for folder in ("dovit", "app")
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


def folder_of(module: str) -> str:
    """The diagram's node of a module: a subpackage, or the commands at dovit's top level, or app's."""
    parts = module.split(".")
    if module == "dovit":
        return "dovit/__init__ (the public API)"
    if len(parts) > 1 and (ROOT / parts[0] / parts[1]).is_dir():
        return f"{parts[0]}/{parts[1]}"
    return "dovit (commands)" if parts[0] == "dovit" else "app"


def folder_edges() -> list[tuple[str, str]]:
    known = modules()
    edges = set()
    for name, path in known.items():
        for target in imports_of(path):
            if target in known and folder_of(target) != folder_of(name):
                edges.add((folder_of(name), folder_of(target)))
    return sorted(edges)


def diagram() -> str:
    ids = {}
    lines = ["```mermaid", "graph TD"]
    for source, target in folder_edges():
        for node in (source, target):
            if node not in ids:
                ids[node] = f"n{len(ids)}"
                lines.append(f'    {ids[node]}["{node}"]')
        lines.append(f"    {ids[source]} --> {ids[target]}")
    return "\n".join(lines + ["```"])


def render(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{diagram()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when docs/architecture.md is out of date"
    )
    args = parser.parse_args(argv)
    text = DOC.read_text()
    if args.check:
        return 0 if render(text) == text else 1
    DOC.write_text(render(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
