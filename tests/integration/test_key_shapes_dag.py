"""A key stored with a trailing newline (a secret file written by ``echo``): the integration DAG runs as with
a clean key, and no form of the key reaches a log line, an XCom, a trigger's event or the metadata DB
(rendered fields, trigger rows and their kwargs, task instances' next_kwargs and errors live there)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import DAG_FILE, DAG_ID, DagTestResult, dag_tested

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
]


@pytest.fixture(scope="module")
def newline_key_run(airflow_db: None, dags_folder: Path) -> Iterator[DagTestResult]:
    with dag_tested(dags_folder, DAG_FILE, DAG_ID, stored_key=lambda key: key + "\n") as result:
        yield result


def _metadata_db() -> bytes:
    home = Path(os.environ["AIRFLOW_HOME"])
    return b"".join(path.read_bytes() for path in sorted(home.glob("airflow.db*")))


def test_the_dag_runs_as_with_a_clean_key(newline_key_run: DagTestResult) -> None:
    states = newline_key_run.task_states
    assert (states["extract_deferred"], states["extract_blocking"], states["count_products"]) == (
        "success",
        "success",
        "success",
    )
    assert (states["extract_failing"], states["extract_too_slow"]) == ("failed", "failed")


def test_no_form_of_the_key_is_logged_pushed_or_stored(newline_key_run: DagTestResult) -> None:
    key = newline_key_run.emulator.api_key
    forms = {key, repr(key + "\n"), repr((key + "\n").encode())}
    logged = "\n".join(f"{line.message} {line.error or ''}" for line in newline_key_run.logs.lines)
    pushed = json.dumps(newline_key_run.xcoms, default=str)
    assert [form for form in forms if form in logged] == []
    assert [form for form in forms if form in pushed] == []
    assert key.encode() not in _metadata_db()
