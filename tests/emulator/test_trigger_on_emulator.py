"""The deferred wait stopped the way the installed Airflow's triggerer stops it, against the emulator.

Airflow 3.3+ cancels ``run()`` and then awaits ``on_kill()`` when a user acts on the task instance (and on
a reassignment); Airflow < 3.3 only cancels ``run()``. Either way the Skyvern run is canceled exactly once
when its task instance no longer waits for it, and left going when the task is still deferred (the trigger
moved to another triggerer). No version flag is patched here: each Airflow of the CI matrix runs its path.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_3_PLUS
from tests.operator_support import make_context

pytestmark = pytest.mark.usefixtures("hook")


@pytest.fixture
def task_state(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the API server answers for the task instance's state (the triggerer asks its supervisor)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    state = ["deferred"]

    def get_task_states(**kwargs: Any) -> dict[str, Any]:
        return {kwargs["run_ids"][0]: {kwargs["task_ids"][0]: state[0]}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
    return state


def _deferred_trigger() -> SkyvernRunTrigger:
    operator = SkyvernRunTaskOperator(
        task_id="extract", prompt="Forever [emulator outcome=slow]", deferrable=True, poll_interval=0.05
    )
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, SkyvernRunTrigger)
    trigger.task_instance = context["ti"]  # what the triggerer hands every trigger
    return trigger


async def _run_then_stop(trigger: SkyvernRunTrigger, emulator: EmulatorServer) -> None:
    """The installed triggerer's handling of one trigger: started, then stopped once it polled twice."""

    async def runner() -> None:
        try:
            async for _ in trigger.run():
                pytest.fail("the run is slow: the trigger must not fire")
        except asyncio.CancelledError:
            if AIRFLOW_V_3_3_PLUS:
                await trigger.on_kill()
            raise

    task = asyncio.ensure_future(runner())
    path = f"/v1/runs/{trigger.run_id}"
    for _ in range(1000):
        if sum(r["method"] == "GET" and r["path"] == path for r in list(emulator.state.requests)) >= 2:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the trigger never polled the run twice")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(("state", "cancels"), [("failed", 1), ("success", 1), ("deferred", 0)])
async def test_stopping_the_wait_cancels_the_run_only_when_the_task_no_longer_waits(
    emulator: EmulatorServer, task_state: list[str], state: str, cancels: int
) -> None:
    trigger = _deferred_trigger()
    task_state[0] = state  # "deferred": the trigger merely moves to another triggerer

    await _run_then_stop(trigger, emulator)

    (run,) = emulator.control.get("/_emulator/runs").json()["runs"]
    assert run["cancel_requests"] == cancels
    assert run["status"] == ("canceled" if cancels else "queued")  # the emulator's clock stands still
