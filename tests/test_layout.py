"""Dependencies point down: operators, sensors and triggers (what users import) sit on ``runs/``, which sits on
the hook, the models and the request bodies; nothing below imports upward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "airflow_provider_skyvern"
LAYERS = {
    "runs": ("operators", "sensors", "triggers", "links"),
    "hooks": ("operators", "sensors", "triggers", "links", "runs", "artifacts"),
    "requests": ("operators", "sensors", "triggers", "links", "runs", "hooks", "artifacts"),
}


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_nothing_below_imports_upward(layer: str) -> None:
    upward = {
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in (PACKAGE / layer).glob("*.py")
        for module in _imported(path)
        if any(module.startswith(f"airflow_provider_skyvern.{above}") for above in LAYERS[layer])
    }
    assert upward == set()


def test_the_task_operators_first_import_path_still_works() -> None:
    from airflow_provider_skyvern.operators import SkyvernRunTaskOperator as documented
    from airflow_provider_skyvern.operators.skyvern import SkyvernRunTaskOperator as first

    assert first is documented
