"""The layering the README draws holds in the code: each folder of ``core`` is a layer,
``core`` never imports Streamlit or the UI, imports inside ``core`` only go to the same
layer or down, and no import is hidden inside a function to get round a cycle (the CLI
alone imports a command's modules when the command runs, to start fast).

Read from the source with ``ast`` (nothing is imported), so a new folder or a new module
at the top of ``core`` has to be placed in a layer here before it can import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

# Bottom to top: a module may import modules of its own layer or of layers below it. A
# layer is a folder of core/; the entry points are the modules at core's top.
LAYERS = ["common", "store", "data", "models", "training", "evaluation", "serving", "reports"]
ENTRY_POINTS = len(LAYERS)
LEVEL = {name: level for level, name in enumerate(LAYERS)}


def _core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def _layer_of(path: Path) -> str:
    """The layer folder of a module of core, or "" for the entry points at its top."""
    parts = path.relative_to(CORE).parts
    return parts[0] if len(parts) > 1 else ""


def _level(layer: str) -> int:
    return LEVEL[layer] if layer else ENTRY_POINTS


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in ``path``; a
    ``from core.x import y`` counts as an import of ``core.x.y``."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                if child.module.startswith("core"):
                    found.extend(
                        (f"{child.module}.{a.name}", child.lineno, nested) for a in child.names
                    )
                else:
                    found.append((child.module, child.lineno, nested))
            visit(child, inner)

    visit(tree, False)
    return found


def test_every_core_folder_is_a_layer() -> None:
    folders = {p.name for p in CORE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS), f"place these in LAYERS: {sorted(folders - set(LAYERS))}"


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_only_go_down(path: Path) -> None:
    mine = _level(_layer_of(path))
    for module, line, nested in _imports(path):
        top = module.split(".")[0]
        assert top not in ("streamlit", "ui", "pages", "app"), f"{path.name}:{line} {module}"
        parts = module.split(".")
        if top != "core" or len(parts) < 2:
            continue
        target = parts[1] if (CORE / parts[1]).is_dir() else ""
        where = f"{path.relative_to(CORE)}:{line} imports {module}"
        # The CLI imports each command's modules when that command runs, so that --help
        # and a typo answer without loading torch: speed, not a cycle. Only the CLI (cli.py
        # and its printers, cli_output.py): the other entry point (core.services) imports
        # at the top like every layer.
        lazy_ok = path in (CORE / "cli.py", CORE / "cli_output.py")
        assert lazy_ok or not nested, f"{where} inside a function: import it at the top"
        assert _level(target) <= mine, f"{where}, a layer up"


def test_the_ui_is_the_only_streamlit_code() -> None:
    for path in [*_core_modules(), *sorted((ROOT / "bench").glob("*.py"))]:
        if path.parent.name == "bench" and path.stem == "load":
            continue  # drives the app in a browser; imports no Streamlit
        for module, line, _ in _imports(path):
            assert module.split(".")[0] != "streamlit", f"{path}:{line}"
