"""The shape of the package: imports point down the layer order written in docs/design.md, with no cycle
(imports inside functions included), and nothing under rag/ or app.py names a particular book."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAG = ROOT / "rag"


def _layers() -> list[list[str]]:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/design.md has no ```layers block"
    return [line.split() for line in block.group(1).splitlines() if line.strip()]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every rag module `path` imports, at any depth of its code (functions and TYPE_CHECKING blocks too)."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from rag.store import index`
    modules = {_module(p) for p in RAG.rglob("*.py")}
    return {m for m in found if m in modules and m not in (me, "rag")}  # `rag` itself is only a docstring


GRAPH = {_module(p): _imports(p) for p in RAG.rglob("*.py")}


def _layer_of(module: str, layers: list[list[str]]) -> int:
    for i, names in enumerate(layers):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{module} is in no layer of docs/design.md")


def test_every_module_has_a_layer_and_imports_point_down() -> None:
    layers = _layers()
    wrong = [f"{m} (layer {_layer_of(m, layers)}) imports {t} (layer {_layer_of(t, layers)})"
             for m, targets in sorted(GRAPH.items()) for t in sorted(targets)
             if _layer_of(t, layers) > _layer_of(m, layers)]
    assert not wrong, "imports against the layer order of docs/design.md:\n" + "\n".join(wrong)


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_graph_sees_imports_inside_functions() -> None:
    """The checker itself: rag.commands.build imports rag.build inside its run()."""
    assert "rag.build" in GRAPH["rag.commands.build"]


def test_nothing_under_rag_imports_streamlit() -> None:
    """The library renders nothing; only `rag serve`, the page's launcher, starts Streamlit's server."""
    for path in RAG.rglob("*.py"):
        if path == RAG / "commands" / "serve.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(n.split(".")[0] == "streamlit" for n in names), path


def test_no_book_is_named_in_the_code() -> None:
    """Titles, examples, placeholders, prompts and messages come from the index, not from the code."""
    shipped = "做好新形势下的群众工作"
    for path in [*RAG.rglob("*.py"), ROOT / "app.py", *(ROOT / "pages").glob("*.py")]:
        assert shipped not in path.read_text(encoding="utf-8"), path
