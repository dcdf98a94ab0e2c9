"""The layering the README draws holds in the code: ``core`` never imports Streamlit or
the UI, imports inside ``core`` only go down the layers below, and no import is hidden
inside a function to get round a cycle (the CLI alone imports a command's modules when
the command runs, to start fast).

Read from the source with ``ast`` (nothing is imported), so a new module has to be
placed in a layer here before it can import anything of ``core``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top: a module may import modules of its own layer or of layers below it.
LAYERS: list[tuple[str, set[str]]] = [
    ("helpers", {"escape", "tables"}),
    ("store", {"store"}),
    ("data", {"suggest", "ingest", "demo", "sequences", "splits", "uploads"}),
    ("models", {"model", "text", "checkpoint"}),
    ("training", {"train", "jobs"}),
    ("evaluation", {"scoring", "baselines", "evaluate"}),
    ("serving", {"recommend", "interests", "exports", "charts"}),
    ("reports", {"report", "report_html", "report_users", "report_eval"}),
    ("entry points", {"cli", "__main__", "__init__"}),
]
LEVEL = {module: level for level, (_, modules) in enumerate(LAYERS) for module in modules}


def _core_modules() -> list[Path]:
    return sorted((ROOT / "core").glob("*.py"))


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                if child.module == "core":
                    found.extend((f"core.{a.name}", child.lineno, nested) for a in child.names)
                else:
                    found.append((child.module, child.lineno, nested))
            visit(child, inner)

    visit(tree, False)
    return found


def test_every_core_module_has_a_layer() -> None:
    names = {p.stem for p in _core_modules()}
    assert names <= set(LEVEL), f"place these in LAYERS: {sorted(names - set(LEVEL))}"


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.name)
def test_core_imports_only_go_down(path: Path) -> None:
    mine = LEVEL[path.stem]
    for module, line, nested in _imports(path):
        top = module.split(".")[0]
        assert top not in ("streamlit", "ui", "pages", "app"), f"{path.name}:{line} {module}"
        if top != "core" or module == "core":
            continue
        target = module.split(".")[1]
        where = f"{path.name}:{line} imports core.{target}"
        # The CLI imports each command's modules when that command runs, so that --help
        # and a typo answer without loading torch: speed, not a cycle.
        lazy_ok = LAYERS[mine][0] == "entry points"
        assert lazy_ok or not nested, f"{where} inside a function: import it at the top"
        assert LEVEL[target] <= mine, (
            f"{where}, a layer up ({LAYERS[LEVEL[target]][0]} above {LAYERS[mine][0]})"
        )


def test_the_ui_is_the_only_streamlit_code() -> None:
    for path in [*_core_modules(), *sorted((ROOT / "bench").glob("*.py"))]:
        if path.parent.name == "bench" and path.stem == "load":
            continue  # drives the app in a browser; imports no Streamlit
        for module, line, _ in _imports(path):
            assert module.split(".")[0] != "streamlit", f"{path}:{line}"
