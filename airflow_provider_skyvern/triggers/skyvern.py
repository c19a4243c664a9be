"""SkyvernRunTrigger: waits for one Skyvern run in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.triggers.waiting import RunWatch

ON_KILL_CANCEL_TIMEOUT = 20.0


class SkyvernRunTrigger(BaseTrigger):
    """
    Polls ``GET /v1/runs/{run_id}`` until the run is final, the deadline passes, or a permanent error.

    Its kwargs (stored in Airflow's database) are only the conn id, run id, poll interval and an absolute
    wall-clock deadline: never a key. ``run()`` only reads, so a restarted or duplicated trigger is safe.

    :param run_id: the Skyvern run to wait for.
    :param deadline: Unix time (seconds) after which the wait ends with a ``deadline`` event.
    :param poll_interval: seconds between polls.
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    """

    def __init__(
        self,
        run_id: str,
        deadline: float,
        poll_interval: float = 10.0,
        skyvern_conn_id: str = DEFAULT_CONN_ID,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.run_id = run_id
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.skyvern_conn_id = skyvern_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "skyvern_conn_id": self.skyvern_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = RunWatch(self.log, self.run_id, self.deadline)
        async with SkyvernHook(self.skyvern_conn_id) as hook:
            while True:
                try:
                    event = watch.observe(run=await hook.aget_run(self.run_id))
                except SkyvernError as exc:
                    event = watch.observe(error=exc)
                if event is not None:
                    yield TriggerEvent(event.to_payload())  # type: ignore[no-untyped-call]
                    return
                await asyncio.sleep(watch.pause(self.poll_interval))

    async def on_kill(self) -> None:
        """Airflow 3.3+ calls this only when a user marks the task failed/success or clears it."""
        self.log.info("Task killed by a user: canceling Skyvern run %s", self.run_id)
        try:
            async with SkyvernHook(self.skyvern_conn_id) as hook:
                await asyncio.wait_for(hook.acancel_run(self.run_id), ON_KILL_CANCEL_TIMEOUT)
        except (SkyvernError, asyncio.TimeoutError) as exc:
            self.log.warning("Could not cancel Skyvern run %s: %s", self.run_id, exc)
        else:
            self.log.info("Canceled Skyvern run %s", self.run_id)
