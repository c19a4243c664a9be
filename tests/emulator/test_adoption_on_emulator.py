"""Issue 17 row 2 on the emulator: two DAGs with the same request, the second's POST answered 502 by a proxy
before Skyvern saw it. The second never adopts the first's run; it says it could not tell, and until when."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator, SkyvernRunWorkflowOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY
from tests.emulator.conftest import FakeClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("hook")


def _runs(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return list(emulator.control.get("/_emulator/runs").json()["runs"])


def _proxy_502_on_next(emulator: EmulatorServer, path: str) -> None:
    rule = {"method": "POST", "path": path, "status": 502, "times": 1}
    emulator.control.post("/_emulator/faults", json=[rule]).raise_for_status()


def _run_id(operator: Any, context: dict[str, Any]) -> str:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    return str(deferred.value.trigger.run_id)  # type: ignore[attr-defined]


def test_a_second_dags_lost_v2_post_does_not_adopt_the_first_dags_run(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    def operator() -> SkyvernRunTaskOperator:
        return SkyvernRunTaskOperator(
            task_id="extract",
            prompt="Extract the top 3 products",
            url="https://example.com/products",
            engine="skyvern-2.0",
            deferrable=True,
        )

    first = _run_id(
        operator(), make_context(FakeStateStore(), FakeTaskInstance(dag_id="first_dag", max_tries=3))
    )
    clock.advance(10)  # the second DAG's POST comes 10 s later (server time, the one created_at is in)
    _proxy_502_on_next(emulator, "/v1/run/tasks")
    store = FakeStateStore()
    with pytest.raises(SkyvernError) as raised:
        operator().execute(make_context(store, FakeTaskInstance(dag_id="second_dag", max_tries=3)))

    assert (
        "could not tell whether a Skyvern run was created: none matching this request is listed yet, and one "
        in str(raised.value)
    )
    assert "; not starting another run before then" in str(raised.value)
    assert store.values[STATE_KEY]["run_id"] is None
    assert [run["run_id"] for run in _runs(emulator)] == [first]


def test_a_second_dags_lost_workflow_post_does_not_adopt_the_first_dags_run_even_in_the_same_second(
    emulator: EmulatorServer,
) -> None:
    def operator() -> SkyvernRunWorkflowOperator:
        return SkyvernRunWorkflowOperator(
            task_id="report", workflow_id="wpid_42", parameters={"report_date": "2026-11-30"}, deferrable=True
        )

    first = _run_id(
        operator(), make_context(FakeStateStore(), FakeTaskInstance(dag_id="first_dag", max_tries=3))
    )
    _proxy_502_on_next(emulator, "/v1/run/agents")  # no time passes: only the tag tells them apart
    store = FakeStateStore()
    with pytest.raises(SkyvernError, match="could not tell whether a Skyvern run was created: none matching"):
        operator().execute(make_context(store, FakeTaskInstance(dag_id="second_dag", max_tries=3)))
    assert store.values[STATE_KEY]["run_id"] is None
    assert [run["run_id"] for run in _runs(emulator)] == [first]
    lists = [
        r for r in emulator.control.get("/_emulator/requests").json()["requests"] if r["path"] == "/v1/runs"
    ]
    assert len(lists) <= 4  # one request per look: the other DAG's run is never read
