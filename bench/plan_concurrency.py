"""Plan concurrency: a fan-out of N deferrable tasks over Skyvern Cloud's concurrent-run limit (issue 19).

Skyvern Cloud runs at most 1/10/25 runs at once per organisation (Free/Hobby/Pro); runs beyond that wait
``queued``. The emulator (another thread, ``max_concurrent_runs``) does the same, runs lasting
``--run-seconds`` (real time: a compressed day). N ``SkyvernRunTaskOperator``s (mapped, ``deferrable=True``)
submit, their triggers all wait in one event loop as one triggerer would, and each event is handed back to
``execute_complete``. Three ways to run the same fan-out, side by side in one run:

* ``timeout only`` — the default (and the only way before ``queue_timeout``): ``timeout`` counts from the
  submission, so the runs queued behind the limit use up their timeout waiting their turn;
* ``queue_timeout`` — ``queue_timeout`` for the wait to start, ``timeout`` from the run's start;
* ``pool = limit`` — an Airflow pool of ``limit`` slots (``include_deferred=True``) in front of the default
  operator: a task only submits when a slot is free, so no run queues at Skyvern.

Per way: tasks succeeded / failed, runs canceled (paid for nothing: each had started or queued), the longest
queued wait, wall time. The timeout is ``--timeout-factor`` (2.5) x the run's length: the headroom a user
gives a run that takes R seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="skyvern_bench_home_"))
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"


from _common import table  # noqa: E402 - after the path is set


def _operator(index: int, **kwargs: Any) -> Any:
    from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

    return SkyvernRunTaskOperator(
        task_id="extract",
        prompt=f"Extract the top 3 products of page {index}",
        url="https://shop.test/",
        engine="skyvern_v1",
        deferrable=True,
        poll_interval=2,
        **kwargs,
    )


async def _one_task(index: int, make: Callable[[], Any], outcomes: list[str]) -> None:
    """One task instance: execute, the trigger in this loop, execute_complete (worker calls in threads)."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

    context = make_context(FakeStateStore(), FakeTaskInstance(map_index=index, max_tries=0))
    try:
        await asyncio.to_thread(make().execute, context)
        outcomes.append("success")
        return
    except TaskDeferred as deferred:
        trigger, kwargs = deferred.trigger, deferred.kwargs or {}
    except Exception:
        outcomes.append("failed")
        return
    payload = None
    async for event in trigger.run():
        payload = event.payload
        break
    try:
        await asyncio.to_thread(make().execute_complete, context, payload, **kwargs)
        outcomes.append("success")
    except Exception:
        outcomes.append("failed")


async def _fan_out(count: int, make: Callable[[int], Any], slots: int | None) -> list[str]:
    outcomes: list[str] = []
    pool = asyncio.Semaphore(slots) if slots else None

    async def task(index: int) -> None:
        if pool is None:
            await _one_task(index, lambda: make(index), outcomes)
            return
        async with pool:  # an Airflow pool with include_deferred: the slot is held while deferred
            await _one_task(index, lambda: make(index), outcomes)

    await asyncio.gather(*(task(index) for index in range(count)))
    return outcomes


def _way(
    name: str, count: int, make: Callable[[int], Any], slots: int | None, emulator: Any
) -> dict[str, Any]:
    emulator.control.post("/_emulator/reset").raise_for_status()
    started = time.monotonic()
    outcomes = asyncio.run(_fan_out(count, make, slots))
    wall = time.monotonic() - started
    runs = emulator.control.get("/_emulator/runs").json()["runs"]
    waited = []
    for run in runs:
        body = emulator.control.get(
            f"/v1/runs/{run['run_id']}", headers={"x-api-key": emulator.api_key}
        ).json()
        if body.get("started_at") and body.get("created_at"):
            from datetime import datetime

            waited.append(
                (
                    datetime.fromisoformat(body["started_at"]) - datetime.fromisoformat(body["created_at"])
                ).total_seconds()
            )
    return {
        "way": name,
        "tasks": count,
        "succeeded": outcomes.count("success"),
        "failed": outcomes.count("failed"),
        "runs": len(runs),
        "canceled": sum(1 for r in runs if r["status"] == "canceled"),
        "completed": sum(1 for r in runs if r["status"] == "completed"),
        "longest queued s": round(max(waited, default=0.0), 1),
        "wall s": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100, help="task instances in the fan-out (default 100)")
    parser.add_argument(
        "--limit", type=int, default=25, help="the plan's concurrent-run limit (default 25, Pro)"
    )
    parser.add_argument("--run-seconds", type=float, default=6.0, help="how long each run takes (default 6)")
    parser.add_argument(
        "--timeout-factor", type=float, default=2.5, help="timeout = factor x run (default 2.5)"
    )
    parser.add_argument("--quick", action="store_true", help="40 tasks over a limit of 10")
    args = parser.parse_args()
    count, limit = (40, 10) if args.quick else (args.count, args.limit)
    timeout = args.timeout_factor * args.run_seconds
    queue_timeout = 10 * args.run_seconds * count / limit

    from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings

    settings = EmulatorSettings(
        api_key="bench-key-0123456789", run_seconds=args.run_seconds, max_concurrent_runs=limit
    )
    rows = []
    with EmulatorServer(settings) as emulator:
        os.environ["AIRFLOW_CONN_SKYVERN_DEFAULT"] = (
            f'{{"conn_type": "skyvern", "host": "{emulator.base_url}", "password": "{emulator.api_key}"}}'
        )
        ways: list[tuple[str, Callable[[int], Any], int | None]] = [
            ("timeout only", lambda i: _operator(i, timeout=timeout), None),
            ("queue_timeout", lambda i: _operator(i, timeout=timeout, queue_timeout=queue_timeout), None),
            ("pool = limit", lambda i: _operator(i, timeout=timeout), limit),
        ]
        for name, make, slots in ways:
            rows.append(_way(name, count, make, slots, emulator))
            print(rows[-1], flush=True)
    print(
        f"\n{count} deferrable tasks, limit {limit}, runs of {args.run_seconds:g} s, timeout={timeout:g}s"
        f" (queue_timeout={queue_timeout:g}s in its row)"
    )
    columns = list(rows[0])
    print(table(columns, [[row[c] for c in columns] for row in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
