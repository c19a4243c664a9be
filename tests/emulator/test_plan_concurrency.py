"""The emulator's concurrent-run limit (Skyvern Cloud plans: Free 1, Hobby 10, Pro 25): runs beyond it wait
``queued``, first come first served, and start as earlier runs end or are canceled."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import RunResponse, TaskRunRequest
from tests.emulator.conftest import RUN_SECONDS, FakeClock


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
