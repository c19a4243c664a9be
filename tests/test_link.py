"""SkyvernRunLink: the run's page once a run exists, read from the live operator (no XCom lookup)."""

from __future__ import annotations

from typing import Any

import pytest
import respx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.links.skyvern import SkyvernRunLink
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from tests.conftest import BASE_URL
from tests.operator_support import make_context
from tests.payloads import task_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "fast_clock")


@pytest.fixture(autouse=True)
def no_xcom_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow logs ``[error] XCom not found`` for a missing key: the link must never ask."""
    from airflow.sdk.execution_time.xcom import XCom

    def get_value(**_: Any) -> Any:
        raise AssertionError("the link read XCom")

    monkeypatch.setattr(XCom, "get_value", get_value)


def operator() -> SkyvernRunTaskOperator:
    return SkyvernRunTaskOperator(task_id="t", prompt="p", url="https://example.com", deferrable=True)


def test_no_link_and_no_lookup_before_a_run_exists() -> None:
    assert SkyvernRunLink().get_link(operator(), ti_key="KEY") == ""  # type: ignore[arg-type]


def test_a_task_that_failed_before_starting_a_run_has_an_empty_link() -> None:
    op = operator()
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as mock:
        mock.get("/v1/runs").respond(200, json=[])
        mock.post("/v1/run/tasks").respond(403, json={"detail": "Invalid credentials"})
        with pytest.raises(Exception, match="HTTP 403"):
            op.execute(make_context())
    assert SkyvernRunLink().get_link(op, ti_key="KEY") == ""  # type: ignore[arg-type]


def test_the_link_is_the_app_url_as_soon_as_the_run_started() -> None:
    op = operator()
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as mock:
        mock.get("/v1/runs").respond(200, json=[])
        mock.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(make_context())
    assert SkyvernRunLink().get_link(op, ti_key="KEY") == "https://app.skyvern.com/runs/tsk_v2_1"  # type: ignore[arg-type]

    resumed = operator()  # execute_complete runs on a fresh operator in a new process
    assert deferred.value.kwargs["run_id"] == "tsk_v2_1"
    assert deferred.value.kwargs["app_url"] == "https://app.skyvern.com/runs/tsk_v2_1"
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as mock:
        mock.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "running"))
        mock.post("/v1/runs/tsk_v2_1/cancel").respond(200)
        with pytest.raises(Exception, match="did not finish"):
            resumed.execute_complete(
                make_context(),
                {"kind": "deadline", "run_id": "tsk_v2_1", "run_status": "running"},
                **deferred.value.kwargs,
            )
    assert SkyvernRunLink().get_link(resumed, ti_key="KEY") == "https://app.skyvern.com/runs/tsk_v2_1"  # type: ignore[arg-type]


def test_operator_declares_the_link() -> None:
    (link,) = SkyvernRunTaskOperator.operator_extra_links
    assert isinstance(link, SkyvernRunLink)
    assert link.name == "Skyvern run"
