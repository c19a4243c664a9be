"""The simulator's emulator (on its own clock, which every wait of the provider advances instead of sleeping)
and the API server's answer to a trigger's ``on_kill`` (the simulated task instance's state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings
from airflow_provider_skyvern.hooks.clock import Clock
from tests.conftest import set_connection
from tests.simulator.schedules import RUNNING, EmulatedTime


@pytest.fixture(scope="module")
def emulated_time() -> EmulatedTime:
    return EmulatedTime()


@pytest.fixture(scope="module")
def emulator(emulated_time: EmulatedTime) -> Iterator[EmulatorServer]:
    settings = EmulatorSettings(api_key="sim-key-0123456789", run_seconds=4.0, clock=emulated_time)
    with EmulatorServer(settings) as server:
        yield server


@pytest.fixture(autouse=True)
def wired(emulator: EmulatorServer, emulated_time: EmulatedTime, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=emulator.api_key, extra={"max_retries": 2})

    def sleep(_: Clock, seconds: float) -> None:
        emulated_time.now += max(seconds, 0.0)

    async def asleep(_: Clock, seconds: float) -> None:
        emulated_time.now += max(seconds, 0.0)

    monkeypatch.setattr(Clock, "sleep", sleep)
    monkeypatch.setattr(Clock, "asleep", asleep)
    emulator.control.post("/_emulator/reset").raise_for_status()


@pytest.fixture(autouse=True)
def api_server_states(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def get_task_states(*, dag_id: str, task_ids: list[str], run_ids: list[str], **_: Any) -> dict[str, Any]:
        return {run_ids[0]: {task_ids[0]: RUNNING[-1].state}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
