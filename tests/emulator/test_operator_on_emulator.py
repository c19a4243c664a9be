"""The operator against the emulator: no second paid run on retry, nor after a 500 that created one."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_skyvern.compat import TaskDeferred
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.operators import reattach
from airflow_provider_skyvern.operators.skyvern import SkyvernRunTaskOperator
from tests.emulator.conftest import RUN_SECONDS, FakeClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("hook")


def _operator(**kwargs: Any) -> SkyvernRunTaskOperator:
    return SkyvernRunTaskOperator(
        task_id="extract", prompt="Extract the top 3 products", url="https://example.com", **kwargs
    )


def _runs(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return list(emulator.control.get("/_emulator/runs").json()["runs"])


def test_a_retry_reattaches_to_the_running_run(emulator: EmulatorServer, clock: FakeClock) -> None:
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):  # try 1 starts the run, then its worker dies
        _operator(deferrable=True).execute(make_context(store))
    clock.advance(RUN_SECONDS / 2)

    with pytest.raises(TaskDeferred) as second:  # try 2
        _operator(deferrable=True).execute(make_context(store))

    (run,) = _runs(emulator)
    assert second.value.trigger.run_id == run["run_id"]  # type: ignore[attr-defined]
    assert run["status"] == "running"


def test_a_retry_takes_the_result_of_a_completed_run(emulator: EmulatorServer, clock: FakeClock) -> None:
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        _operator(deferrable=True).execute(make_context(store))
    clock.advance(RUN_SECONDS)

    context = make_context(store)
    output = _operator(deferrable=True).execute(context)

    (run,) = _runs(emulator)
    assert (
        output
        == emulator.control.get(f"/v1/runs/{run['run_id']}", headers={"x-api-key": emulator.api_key}).json()[
            "output"
        ]
    )
    assert context["ti"].xcoms["status"] == "completed"
    assert store.values == {}


def test_a_retry_after_a_failed_run_starts_a_fresh_one(emulator: EmulatorServer, clock: FakeClock) -> None:
    store = FakeStateStore()
    failing = SkyvernRunTaskOperator(
        task_id="extract", prompt="Buy [emulator outcome=failed]", deferrable=True
    )
    with pytest.raises(TaskDeferred):
        failing.execute(make_context(store))
    clock.advance(RUN_SECONDS)

    with pytest.raises(TaskDeferred):
        failing.execute(make_context(store))

    assert [run["status"] for run in _runs(emulator)] == ["failed", "created"]


def test_without_a_state_store_the_title_tag_finds_the_running_run(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    with pytest.raises(TaskDeferred):
        _operator(deferrable=True).execute(make_context())
    clock.advance(RUN_SECONDS / 2)
    with pytest.raises(TaskDeferred):
        _operator(deferrable=True).execute(make_context())

    (run,) = _runs(emulator)
    assert run["title"] == f"nightly.extract [{reattach.run_tag(FakeTaskInstance())}]"


def test_500_after_create_adopts_the_created_run(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.control.post(
        "/_emulator/faults",
        json=[{"method": "POST", "path": "/v1/run/tasks", "status": 500, "after_create": True, "times": 1}],
    )
    monkeypatch.setattr(SkyvernHook, "_sleep", lambda self, seconds: None)
    context = make_context()

    with pytest.raises(TaskDeferred) as deferred:
        _operator(deferrable=True).execute(context)

    (run,) = _runs(emulator)
    assert deferred.value.trigger.run_id == run["run_id"] == context["ti"].xcoms["run_id"]  # type: ignore[attr-defined]


def test_blocking_timeout_cancels_the_run_on_the_emulator(emulator: EmulatorServer) -> None:
    operator = SkyvernRunTaskOperator(
        task_id="extract",
        prompt="Forever [emulator outcome=slow]",
        deferrable=False,
        timeout=0.3,
        poll_interval=0.1,
    )
    with pytest.raises(Exception, match=r"did not finish within timeout=0\.3s"):
        operator.execute(make_context())

    (run,) = _runs(emulator)
    assert (run["status"], run["cancel_requests"]) == ("canceled", 1)
