"""The headline is "waits without holding a worker slot", but ``deferrable`` defaults to Airflow's
``[operators] default_deferrable`` (False): every example a user copies, a DAG in example_dags/ or a snippet
in the README and docs/, says ``deferrable=True`` on each Skyvern operator or sensor that waits."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

WAITING_CLASSES = {
    "SkyvernRunTaskOperator",
    "SkyvernRunWorkflowOperator",
    "SkyvernLoginOperator",
    "SkyvernDownloadFilesOperator",
    "SkyvernRunSensor",
}
EXAMPLE_DAGS = sorted((REPO_ROOT / "example_dags").glob("*.py"))
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _dag_bag(path: Path) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2: DagBag lived in airflow.models
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(dag_folder=path)


def _given(task: Any, name: str) -> Any:
    """An argument as the DAG author gave it: a mapped task keeps its arguments in ``partial_kwargs``."""
    partial = getattr(task, "partial_kwargs", None)
    return partial.get(name) if partial is not None else getattr(task, name, None)


@pytest.mark.parametrize("path", EXAMPLE_DAGS, ids=lambda path: path.name)
def test_every_skyvern_wait_in_an_example_dag_is_deferrable(path: Path) -> None:
    bag = _dag_bag(path)
    assert not bag.import_errors
    # A task with wait_for_completion=False returns the run id at once: it has nothing to wait for.
    waits = {
        f"{dag_id}.{task.task_id}": _given(task, "deferrable")
        for dag_id, dag in bag.dags.items()
        for task in dag.tasks
        if getattr(task, "operator_class", type(task)).__name__ in WAITING_CLASSES
        and _given(task, "wait_for_completion") is not False
    }
    assert waits  # every example waits for a run somewhere
    assert {task for task, deferrable in waits.items() if deferrable is not True} == set()


def _snippet_calls() -> Iterator[tuple[str, ast.Call]]:
    for document in DOCUMENTS:
        for number, block in enumerate(PYTHON_BLOCK.findall(document.read_text()), start=1):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.Call):
                    yield f"{document.relative_to(REPO_ROOT)} python block {number}", node


def _called_class(call: ast.Call) -> str | None:
    """``SkyvernRunTaskOperator(...)`` and ``SkyvernRunTaskOperator.partial(...)``."""
    function = call.func
    if isinstance(function, ast.Attribute) and function.attr == "partial":
        function = function.value
    return function.id if isinstance(function, ast.Name) else None


def _keyword(call: ast.Call, name: str) -> Any:
    for keyword in call.keywords:
        if keyword.arg == name:
            return ast.literal_eval(keyword.value) if isinstance(keyword.value, ast.Constant) else ...
    return None


def test_every_skyvern_wait_in_a_documented_snippet_is_deferrable() -> None:
    waits = [
        (where, name, _keyword(call, "deferrable"))
        for where, call in _snippet_calls()
        if (name := _called_class(call)) in WAITING_CLASSES
        and _keyword(call, "wait_for_completion") is not False
    ]
    assert waits
    assert [(where, name) for where, name, deferrable in waits if deferrable is not True] == []
