"""Adaptive polling and the shared connection pool (issue 9, items 1-2)."""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_skyvern.exceptions import (
    SkyvernRateLimitError,
    SkyvernServerError,
    SkyvernTransportError,
)
from airflow_provider_skyvern.hooks.clock import Clock
from airflow_provider_skyvern.hooks.pool import CONNECTIONS_PER_SHARD, SHARDS
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import TaskRunResponse
from airflow_provider_skyvern.runs.waiting import RunWatch
from tests.conftest import BASE_URL, set_connection
from tests.payloads import task_run

START = 1_900_000_000.0


class SteppedClock(Clock):
    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now


class QuietLog:
    def info(self, *args: Any) -> None: ...

    def warning(self, *args: Any) -> None: ...


def run_created_at(created: float, status: str = "running") -> TaskRunResponse:
    payload = task_run("tsk_1", status)
    payload["created_at"] = datetime.fromtimestamp(created, tz=timezone.utc).isoformat()
    return TaskRunResponse.model_validate(payload)


def watch_at_age(age: float, *, poll_interval: float = 30, deadline_in: float = 10_000) -> float:
    clock = SteppedClock()
    watch = RunWatch(QuietLog(), "tsk_1", START + deadline_in, clock=clock)
    watch.observe(run=run_created_at(START - age))
    return watch.pause(poll_interval)


@pytest.mark.parametrize(
    ("age", "low", "high"),
    [(0, 0.8, 1.0), (5, 0.8, 1.0), (60, 4.8, 6.0), (200, 16.0, 20.0), (1800, 24.0, 30.0)],
)
def test_the_gap_is_a_tenth_of_the_runs_age_between_1_s_and_poll_interval(
    age: float, low: float, high: float
) -> None:
    gaps = [watch_at_age(age) for _ in range(50)]
    assert all(low <= gap <= high for gap in gaps), (min(gaps), max(gaps))
    assert len({round(gap, 6) for gap in gaps}) > 10  # jittered: triggers do not poll in step


def test_poll_interval_below_a_second_is_honoured() -> None:
    assert watch_at_age(0, poll_interval=0.2) <= 0.2


def test_the_deadline_cuts_the_gap() -> None:
    assert watch_at_age(1800, deadline_in=3) == 3


def test_a_30_minute_run_costs_fewer_polls_than_a_fixed_10_s_poll_and_is_noticed_within_a_tenth_of_its_age() -> (
    None
):
    clock = SteppedClock()
    watch = RunWatch(QuietLog(), "tsk_1", START + 7200, clock=clock)
    polls, finished = 0, START + 1800
    while True:
        polls += 1
        done = clock.now >= finished
        watch.observe(run=run_created_at(START, "completed" if done else "running"))
        if done:
            break
        clock.now += watch.pause(30)
    assert polls < 1800 / 10
    assert clock.now - finished <= 0.1 * 1800


def test_retry_after_stretches_the_next_gap() -> None:
    clock = SteppedClock()
    watch = RunWatch(QuietLog(), "tsk_1", START + 10_000, clock=clock)
    watch.observe(run=run_created_at(START))
    error = SkyvernServerError("GET", "/v1/runs/tsk_1", 503, "busy", retry_after=45)
    watch.observe(error=error)
    assert watch.pause(30) == 45


def test_a_bare_429_waits_a_full_interval_then_the_rhythm_resumes() -> None:
    clock = SteppedClock()
    watch = RunWatch(QuietLog(), "tsk_1", START + 10_000, clock=clock)
    watch.observe(run=run_created_at(START))
    watch.observe(error=SkyvernRateLimitError("GET", "/v1/runs/tsk_1", 429, "slow down"))
    assert watch.pause(30) == 30
    watch.observe(run=run_created_at(START))
    assert watch.pause(30) <= 1.0


# ---- a few shared clients per loop and endpoint -------------------------------------------------------


@respx.mock(base_url=BASE_URL)
def test_many_hooks_on_one_loop_share_a_few_clients_on_one_ssl_context_closed_by_the_last(
    respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, async_clients_made: list[httpx.AsyncClient]
) -> None:
    set_connection(monkeypatch)
    respx_mock.get("/v1/runs/tsk_1").respond(200, json=task_run("tsk_1", "running"))
    ca_bundle_loads: list[object] = []
    load_verify_locations = ssl.SSLContext.load_verify_locations

    def counting_load(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        ca_bundle_loads.append(self)
        load_verify_locations(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting_load)

    async def hundred_waits() -> list[bool]:
        hooks = [SkyvernHook() for _ in range(100)]
        await asyncio.gather(*(hook.aget_run("tsk_1") for hook in hooks))
        any_closed_while_in_use = []
        for hook in hooks:
            any_closed_while_in_use.append(any(client.is_closed for client in async_clients_made))
            await hook.aclose()
        return any_closed_while_in_use

    closed = asyncio.run(hundred_waits())
    assert len(async_clients_made) == SHARDS
    assert len(ca_bundle_loads) == 1  # one SSL context (the costly part of a client) for all of them
    assert closed == [False] * 100  # open while any hook still holds one
    assert all(client.is_closed for client in async_clients_made)


@respx.mock
def test_each_loop_and_each_endpoint_gets_its_own_clients(
    respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, async_clients_made: list[httpx.AsyncClient]
) -> None:
    set_connection(monkeypatch, "sky_a", host="https://a.skyvern.test")
    set_connection(monkeypatch, "sky_b", host="https://b.skyvern.test")
    for host in ("a", "b"):
        respx_mock.get(f"https://{host}.skyvern.test/v1/runs/tsk_1").respond(
            200, json=task_run("tsk_1", "running")
        )

    async def both_endpoints() -> set[str]:
        async with SkyvernHook("sky_a") as a, SkyvernHook("sky_b") as b, SkyvernHook("sky_a") as a2:
            await asyncio.gather(a.aget_run("tsk_1"), b.aget_run("tsk_1"), a2.aget_run("tsk_1"))
            return {str((await hook.aget_conn()).base_url) for hook in (a, b)}

    assert asyncio.run(both_endpoints()) == {"https://a.skyvern.test", "https://b.skyvern.test"}
    asyncio.run(both_endpoints())  # a new loop never reuses the closed loop's clients
    assert len(async_clients_made) == 2 * 3  # per loop: two of sky_a's shards, one of sky_b's
    assert all(client.is_closed for client in async_clients_made)


@respx.mock(base_url=BASE_URL, assert_all_called=False)  # respx records no call that timed out
def test_at_most_the_pool_size_is_in_flight_and_a_wait_for_a_slot_is_not_a_sent_request(
    respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two connections to one endpoint share its clients; "holding" keeps every connection busy for 1.5 s.
    set_connection(
        monkeypatch, "holding", extra={"request_timeout": 1.5, "total_timeout": 1.5, "max_retries": 0}
    )
    set_connection(
        monkeypatch, "late", extra={"request_timeout": 0.5, "total_timeout": 0.5, "max_retries": 0}
    )
    in_flight, most = 0, 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(5)
            return httpx.Response(200, json=task_run("tsk_1", "running"))
        finally:
            in_flight -= 1

    respx_mock.get("/v1/runs/tsk_1").mock(side_effect=hang)
    pool_size = SHARDS * CONNECTIONS_PER_SHARD

    async def more_waits_than_connections() -> tuple[list[BaseException], list[BaseException]]:
        holding = [SkyvernHook("holding") for _ in range(pool_size)]
        late = [SkyvernHook("late") for _ in range(SHARDS)]  # one more per shard
        try:
            first = asyncio.gather(*(hook.aget_run("tsk_1") for hook in holding), return_exceptions=True)
            await asyncio.sleep(0.1)
            then = await asyncio.gather(*(hook.aget_run("tsk_1") for hook in late), return_exceptions=True)
            return list(await first), list(then)
        finally:
            for hook in holding + late:
                await hook.aclose()

    holding_errors, late_errors = asyncio.run(more_waits_than_connections())
    assert most == pool_size
    assert all(isinstance(e, SkyvernTransportError) and e.request_sent for e in holding_errors)
    assert len(late_errors) == SHARDS
    assert all(isinstance(e, SkyvernTransportError) and not e.request_sent for e in late_errors)
    assert "failed before the request was sent: PoolTimeout: no free connection within 0.5 s" in str(
        late_errors[0]
    )
