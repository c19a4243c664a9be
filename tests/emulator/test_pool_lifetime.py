"""The event loop's shared clients live as long as the loop: a script or a test that calls
``asyncio.run(hook.a...())`` again and again keeps neither the loops nor their sockets."""

from __future__ import annotations

import asyncio
import gc
import os

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.hooks.pool import SHARDS
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import TaskRunRequest

RUNS = 30


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_loops() -> int:
    gc.collect()
    # type(), not isinstance(): Airflow 3.0 keeps lazy proxies that import a module on any attribute lookup
    return sum(issubclass(type(each), asyncio.AbstractEventLoop) for each in gc.get_objects())


def _measure(hook: SkyvernHook, run_id: str) -> tuple[int, int]:
    """Open fds and live loops added by RUNS ``asyncio.run`` calls, each making one request."""
    fds, loops = open_fds(), live_loops()
    for _ in range(RUNS):
        asyncio.run(hook.aget_run(run_id))
    return open_fds() - fds, live_loops() - loops


def test_thirty_asyncio_runs_of_one_hook_keep_no_loop_and_no_socket(hook: SkyvernHook) -> None:
    run_id = hook.run_task(TaskRunRequest(prompt="p", url="https://example.com")).run_id
    asyncio.run(hook.aget_run(run_id))  # warm up: imports and the first client
    more_fds, more_loops = _measure(hook, run_id)
    assert more_fds <= 2, more_fds
    assert more_loops == 0, more_loops


def test_thirty_asyncio_runs_of_new_hooks_keep_no_loop_and_no_socket(
    hook: SkyvernHook, emulator: EmulatorServer
) -> None:
    run_id = hook.run_task(TaskRunRequest(prompt="p", url="https://example.com")).run_id

    async def one_request() -> None:
        await SkyvernHook().aget_run(run_id)  # never given back: the loop's end must release it

    asyncio.run(one_request())
    fds, loops = open_fds(), live_loops()
    for _ in range(RUNS):
        asyncio.run(one_request())
    assert open_fds() - fds <= 2
    assert live_loops() - loops == 0


async def test_a_client_closed_by_a_borrower_is_replaced_for_every_hook_on_its_shard(
    hook: SkyvernHook,
) -> None:
    run_id = hook.run_task(TaskRunRequest(prompt="p", url="https://example.com")).run_id
    hooks = [SkyvernHook() for _ in range(SHARDS + 1)]  # the first and the last share a shard
    try:
        for each in hooks:
            await each.aget_run(run_id)
        await (await hooks[0].aget_conn()).aclose()  # a caller closes what it only borrowed
        assert (await hooks[0].aget_run(run_id)).run_id == run_id
        assert (await hooks[-1].aget_run(run_id)).run_id == run_id
    finally:
        for each in hooks:
            await each.aclose()
