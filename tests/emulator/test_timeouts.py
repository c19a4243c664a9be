"""Timeouts that bind: a slow or hung Skyvern never stretches a wait past its deadline or a call past its
budget, in either mode, and the message says what really happened (issue 8, items 1-5)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import SkyvernTransportError
from airflow_provider_skyvern.hooks.skyvern import KILL_CANCEL_TIMEOUT, SkyvernHook
from airflow_provider_skyvern.models import TaskRunRequest
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from tests.conftest import set_connection
from tests.operator_support import FakeStateStore, make_context

SLACK = 1.5  # scheduling noise on a loaded 2-core machine; the old code overran by 10-16 s


def _add(emulator: EmulatorServer, *rules: dict[str, Any]) -> None:
    emulator.control.post("/_emulator/faults", json=list(rules)).raise_for_status()


def _requests(emulator: EmulatorServer, method: str, path_end: str) -> list[dict[str, Any]]:
    return [
        r
        for r in emulator.control.get("/_emulator/requests").json()["requests"]
        if r["method"] == method and r["path"].endswith(path_end)
    ]


@pytest.fixture
def connect(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The default connection on the emulator, real clock (these tests measure waits)."""

    def connect(**extra: Any) -> None:
        set_connection(monkeypatch, host=emulator.base_url, password=emulator.api_key, extra=extra)

    connect()
    return connect


def _start_run(emulator: EmulatorServer) -> str:
    with SkyvernHook() as hook:
        return hook.run_task(TaskRunRequest(prompt="Wait forever [emulator outcome=slow]")).run_id


def slow_operator(**kwargs: Any) -> SkyvernRunTaskOperator:
    """A task whose emulator run never ends on its own."""
    prompt = "Wait forever [emulator outcome=slow]"
    return SkyvernRunTaskOperator(task_id="extract", prompt=prompt, url="https://example.com", **kwargs)


async def _one_event(trigger: SkyvernRunTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("no event")


def test_a_trigger_deadline_binds_while_every_poll_hangs(emulator: EmulatorServer, connect: Any) -> None:
    run_id = _start_run(emulator)
    _add(emulator, {"method": "GET", "path": "/v1/runs/*", "latency": 20})
    trigger = SkyvernRunTrigger(run_id=run_id, deadline=time.time() + 3, poll_interval=1, limit="timeout=3s")

    started = time.monotonic()
    event = asyncio.run(_one_event(trigger))
    elapsed = time.monotonic() - started

    assert elapsed < 3 + SLACK, elapsed  # one 20 s poll alone used to end the wait 17 s late
    assert event["kind"] == "deadline"
    assert event["limit"] == "timeout=3s"
    assert event["run_status"] is None
    assert event["message"].startswith(f"every poll failed, the last with: Skyvern GET {emulator.base_url}")
    assert "ReadTimeout" in event["message"]


def test_blocking_timeout_binds_and_names_the_failing_polls(emulator: EmulatorServer, connect: Any) -> None:
    connect(request_timeout=60)
    _add(emulator, {"method": "GET", "path": "/v1/runs/tsk*", "latency": 20})
    operator = slow_operator(deferrable=False, timeout=3, poll_interval=1)

    started = time.monotonic()
    with pytest.raises(SkyvernRunFailedError) as failed:
        operator.execute(make_context(FakeStateStore()))
    elapsed = time.monotonic() - started

    assert elapsed < 3 + SLACK + 1, elapsed  # + the POST and the cancel
    message = str(failed.value)
    assert message.startswith("Could not read Skyvern run tsk_v2_")
    assert " within timeout=3s: every poll failed, the last with: Skyvern GET " in message
    assert message.endswith("; it was canceled")
    assert "\n" not in message
    (run,) = emulator.control.get("/_emulator/runs").json()["runs"]
    assert run["status"] == "canceled"


def test_html_502_throughout_is_named_not_a_slow_run(emulator: EmulatorServer, connect: Any) -> None:
    run_id = _start_run(emulator)
    _add(emulator, {"method": "GET", "path": "/v1/runs/*", "status": 502})
    trigger = SkyvernRunTrigger(run_id=run_id, deadline=time.time() + 2, poll_interval=0.5)

    event = asyncio.run(_one_event(trigger))

    assert event["kind"] == "deadline"
    assert event["message"].startswith(
        f"every poll failed, the last with: Skyvern GET /v1/runs/{run_id} -> HTTP 502: HTML page: 502 Bad Gateway"
    )


def test_a_hung_server_fails_a_call_within_its_total_budget(emulator: EmulatorServer, connect: Any) -> None:
    connect(request_timeout=0.5, max_retries=5, total_timeout=2)
    _add(emulator, {"method": "GET", "path": "/v1/runs/*", "latency": 30})

    started = time.monotonic()
    with SkyvernHook() as hook, pytest.raises(SkyvernTransportError) as failed:
        hook.get_run("tsk_v2_1")
    elapsed = time.monotonic() - started

    assert elapsed < 2 + SLACK, elapsed  # 6 attempts x 0.5 s + backoff took 24.6 s before
    assert "ReadTimeout" in str(failed.value)
    assert " attempts in " in str(failed.value)
    spent = float(str(failed.value).rsplit(" in ", 1)[1].removesuffix(" s"))
    assert 1.4 <= spent <= 2 + SLACK


def test_deferrable_execution_timeout_becomes_the_trigger_deadline(
    emulator: EmulatorServer, connect: Any
) -> None:
    operator = slow_operator(deferrable=True, timeout=1800, execution_timeout=timedelta(seconds=20))
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(make_context(FakeStateStore()))
    trigger = deferred.value.trigger
    assert isinstance(trigger, SkyvernRunTrigger)
    assert time.time() + 15 < trigger.deadline <= time.time() + 20
    assert trigger.limit == "execution_timeout=0:00:20"

    event = {"kind": "deadline", "run_id": trigger.run_id, "run_status": "running", "limit": trigger.limit}
    with pytest.raises(SkyvernRunFailedError) as failed:
        operator.execute_complete(make_context(FakeStateStore()), event, **deferred.value.kwargs)
    assert str(failed.value) == (
        f"Skyvern run {trigger.run_id} did not finish within execution_timeout=0:00:20 "
        "(last status running); it was canceled"
    )
    (run,) = emulator.control.get("/_emulator/runs").json()["runs"]
    assert run["status"] == "canceled"


def test_on_kill_cancels_with_one_bounded_attempt_while_the_hook_is_mid_request(
    emulator: EmulatorServer, connect: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SIGTERM handler must not wait on the client a poll is using, nor retry past the SIGKILL."""
    connect(request_timeout=60, max_retries=5)
    operator = slow_operator(deferrable=False, timeout=6, poll_interval=0.2)

    def work() -> None:
        with pytest.raises(SkyvernRunFailedError):  # the kill cancelled the run; the GET ends unanswered
            operator.execute(make_context(FakeStateStore()))

    worker = threading.Thread(target=work, daemon=True)
    _add(emulator, {"method": "GET", "path": "/v1/runs/tsk*", "latency": 30})
    worker.start()
    deadline = time.monotonic() + 10
    while not _requests(emulator, "POST", "/v1/run/tasks") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the blocking wait is now inside a 30 s GET on the operator's client
    _add(emulator, {"method": "POST", "path": "/v1/runs/*/cancel", "latency": 30})

    started = time.monotonic()
    operator.on_kill()
    elapsed = time.monotonic() - started

    assert elapsed < KILL_CANCEL_TIMEOUT + SLACK, elapsed
    log = capsys.readouterr().out
    assert "Could not cancel Skyvern run tsk_v2_" in log
    assert "ReadTimeout" in log
    assert "retrying" not in log.split("Task killed", 1)[1]  # one attempt, never the retry policy
    emulator.control.delete("/_emulator/faults").raise_for_status()
    worker.join(timeout=15)  # its own timeout (6 s) ends the wait; nothing outlives the test
    assert not worker.is_alive()
