"""The emulator's concurrent-run limit (Skyvern Cloud plans: Free 1, Hobby 10, Pro 25): runs beyond it wait
``queued``, first come first served, and start as earlier runs end or are canceled."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import RunResponse, TaskRunRequest
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator
from tests.conftest import set_connection
from tests.emulator.conftest import RUN_SECONDS, FakeClock
from tests.operator_support import FakeStateStore, make_context


def _limit(emulator: EmulatorServer, limit: int | None) -> None:
    emulator.control.put("/_emulator/concurrency", json={"max_concurrent_runs": limit}).raise_for_status()


def _start(hook: SkyvernHook, count: int, **fields: Any) -> list[str]:
    return [
        hook.run_task(
            TaskRunRequest(
                prompt=f"Extract product {n}", url="https://example.com/", engine="skyvern_v1", **fields
            )
        ).run_id
        for n in range(count)
    ]


def _statuses(hook: SkyvernHook, run_ids: list[str]) -> list[str]:
    return [hook.get_run(run_id).status.value for run_id in run_ids]


def _read(hook: SkyvernHook, run_ids: list[str]) -> list[RunResponse]:
    return [hook.get_run(run_id) for run_id in run_ids]


def test_runs_beyond_the_limit_wait_queued_and_start_as_slots_free(
    hook: SkyvernHook, emulator: EmulatorServer, clock: FakeClock
) -> None:
    _limit(emulator, 2)
    runs = _start(hook, 5)
    clock.advance(RUN_SECONDS / 2)
    assert _statuses(hook, runs) == ["running", "running", "queued", "queued", "queued"]
    clock.advance(RUN_SECONDS / 2 + 0.01)  # the first two end: the next two start, queued until running
    assert _statuses(hook, runs) == ["completed", "completed", "queued", "queued", "queued"]
    clock.advance(RUN_SECONDS / 2)
    assert _statuses(hook, runs) == ["completed", "completed", "running", "running", "queued"]
    clock.advance(RUN_SECONDS * 2)
    done = _read(hook, runs)
    assert [run.status.value for run in done] == ["completed"] * 5
    started = [run.started_at for run in done]
    assert started == sorted(started)  # first come, first served
    # every run took its own time once started: the wait is queued time, not a slower run
    assert {
        round((r.finished_at - r.started_at).total_seconds(), 1)
        for r in done
        if r.finished_at and r.started_at
    } == {round(RUN_SECONDS * 0.85, 1)}


def test_a_waiting_run_never_shows_created_again_once_queued(
    hook: SkyvernHook, emulator: EmulatorServer, clock: FakeClock
) -> None:
    _limit(emulator, 1)
    _, waiting = _start(hook, 2)
    seen = []
    for _ in range(40):
        clock.advance(RUN_SECONDS / 20)
        seen.append(hook.get_run(waiting).status.value)
    assert list(dict.fromkeys(seen)) == ["queued", "running", "completed"]


def test_canceling_a_running_run_frees_its_slot_at_once(
    hook: SkyvernHook, emulator: EmulatorServer, clock: FakeClock
) -> None:
    _limit(emulator, 1)
    first, second = _start(hook, 2)
    clock.advance(RUN_SECONDS / 2)
    assert _statuses(hook, [first, second]) == ["running", "queued"]
    hook.cancel_run(first)
    clock.advance(RUN_SECONDS * 0.2)
    assert _statuses(hook, [first, second]) == ["canceled", "running"]


def test_a_run_canceled_while_it_waits_never_takes_a_slot(
    hook: SkyvernHook, emulator: EmulatorServer, clock: FakeClock
) -> None:
    _limit(emulator, 1)
    first, second, third = _start(hook, 3)
    clock.advance(RUN_SECONDS / 2)
    hook.cancel_run(second)
    clock.advance(RUN_SECONDS / 2 + RUN_SECONDS * 0.2)
    assert _statuses(hook, [first, second, third]) == ["completed", "canceled", "running"]
    canceled = hook.get_run(second)
    assert canceled.started_at is None


@pytest.mark.parametrize("limit", [None, 25])
def test_without_a_limit_or_under_it_every_run_starts_at_once(
    hook: SkyvernHook, emulator: EmulatorServer, clock: FakeClock, limit: int | None
) -> None:
    _limit(emulator, limit)
    runs = _start(hook, 10)
    clock.advance(RUN_SECONDS / 2)
    assert _statuses(hook, runs) == ["running"] * 10


def test_a_limit_below_one_is_refused(emulator: EmulatorServer) -> None:
    answer = emulator.control.put("/_emulator/concurrency", json={"max_concurrent_runs": 0})
    assert answer.status_code == 422


# ---- the operator waiting behind the plan's limit -----------------------------------------------------


@pytest.fixture
def connected(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=emulator.api_key, extra={"max_retries": 2})


def _blocker(emulator: EmulatorServer, seconds: float | None) -> str:
    """A run that holds the plan's only slot for ``seconds`` (None: until canceled)."""
    plan = "outcome=slow" if seconds is None else f"seconds={seconds:g}"
    with SkyvernHook() as hook:
        return hook.run_task(
            TaskRunRequest(
                prompt=f"Hold the slot [emulator {plan}]", url="https://example.com/", engine="skyvern_v1"
            )
        ).run_id


def _operator(**kwargs: Any) -> SkyvernRunTaskOperator:
    kwargs.setdefault("deferrable", False)
    return SkyvernRunTaskOperator(
        task_id="extract",
        prompt="Extract the top 3 products",
        url="https://example.com/",
        poll_interval=5,
        **kwargs,
    )


def _mine(emulator: EmulatorServer) -> dict[str, Any]:
    (run,) = [
        r
        for r in emulator.control.get("/_emulator/runs").json()["runs"]
        if "Hold" not in r["request"]["prompt"]
    ]
    return dict(run)


async def _event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("no event")


@pytest.mark.usefixtures("connected", "virtual_time")
def test_without_queue_timeout_the_queued_wait_counts_toward_timeout_and_the_log_says_why(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The "before": a run queued behind the limit for longer than ``timeout`` fails the task unstarted."""
    _limit(emulator, 1)
    _blocker(emulator, 200)
    with pytest.raises(SkyvernRunFailedError) as raised:
        _operator(timeout=60).execute(make_context(FakeStateStore()))
    assert str(raised.value).startswith("Skyvern run ")
    assert "did not finish within timeout=60s (last status queued); it was canceled" in str(raised.value)
    log = capsys.readouterr().out
    assert re.search(
        r"is still queued after \d+s: Skyvern starts runs beyond the organisation's concurrent-run", log
    )
    assert "this wait counts toward timeout=60s (queue_timeout counts it apart)" in log
    assert _mine(emulator)["cancel_requests"] == 1


@pytest.mark.usefixtures("connected", "virtual_time")
@pytest.mark.parametrize("deferrable", [False, True])
def test_with_queue_timeout_the_timeout_counts_from_when_the_run_started(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str], deferrable: bool
) -> None:
    _limit(emulator, 1)
    _blocker(emulator, 200)
    operator = _operator(timeout=60, queue_timeout=600, deferrable=deferrable)
    context = make_context(FakeStateStore())
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(context)
        trigger = deferred.value.trigger
        assert trigger.serialize()[1]["start_limit"]["queue_timeout"] == 600.0
        event = asyncio.run(_event(trigger))
        output = _operator(timeout=60, queue_timeout=600, deferrable=True).execute_complete(
            context, event, **deferred.value.kwargs
        )
    else:
        output = operator.execute(context)
    mine = _mine(emulator)
    assert mine["status"] == "completed"
    assert mine["cancel_requests"] == 0
    assert output == SkyvernHook().get_run(mine["run_id"]).output
    log = capsys.readouterr().out
    assert re.search(r"is still queued after \d+s: Skyvern starts runs beyond", log), log
    assert "it may wait until queue_timeout=600s (" in log


@pytest.mark.usefixtures("connected", "virtual_time")
def test_queue_timeout_binds_when_the_run_never_starts(emulator: EmulatorServer) -> None:
    _limit(emulator, 1)
    _blocker(emulator, None)
    with pytest.raises(SkyvernRunFailedError) as raised:
        _operator(timeout=3600, queue_timeout=90).execute(make_context(FakeStateStore()))
    assert "did not start within queue_timeout=90s (last status queued); it was canceled" in str(raised.value)
    assert _mine(emulator)["cancel_requests"] == 1


@pytest.mark.usefixtures("connected", "virtual_time")
def test_once_started_the_timeout_binds_from_the_start(emulator: EmulatorServer) -> None:
    _limit(emulator, 1)
    _blocker(emulator, 100)
    slow = _operator(timeout=40, queue_timeout=600)
    slow.prompt = "Extract the top 3 products [emulator outcome=slow]"
    started = time.time()
    with pytest.raises(SkyvernRunFailedError) as raised:
        slow.execute(make_context(FakeStateStore()))
    assert "did not finish within timeout=40s after it started (last status running" in str(raised.value)
    run = SkyvernHook().get_run(_mine(emulator)["run_id"])
    assert run.started_at is not None
    assert run.started_at.timestamp() >= started + 100  # it waited for the slot, and then had its 40 s


@pytest.mark.usefixtures("connected", "virtual_time")
def test_execution_timeout_binds_with_queue_timeout(emulator: EmulatorServer) -> None:
    from datetime import timedelta

    _limit(emulator, 1)
    _blocker(emulator, None)
    operator = _operator(timeout=3600, queue_timeout=3600, execution_timeout=timedelta(minutes=2))
    with pytest.raises(SkyvernRunFailedError, match=r"did not finish within execution_timeout=0:02:00"):
        operator.execute(make_context(FakeStateStore()))


@pytest.mark.parametrize("value", [0, -5, "soon"])
def test_a_bad_queue_timeout_fails_the_dag_parse_naming_it(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^SkyvernRunTaskOperator\(task_id='extract'\) queue_timeout: "):
        _operator(queue_timeout=value)
