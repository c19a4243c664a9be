"""Baseline triggers written for the benchmarks: what other providers' triggers do, in a few lines.

``PlainPollTrigger`` polls ``GET /v1/runs/{id}`` with plain httpx and a fixed interval, reading the
base URL and key once from the Airflow connection (as our trigger does), and ends at a final status.
With ``new_client_per_poll`` it opens and closes an ``httpx.AsyncClient`` around every poll, the
pattern of the dbt Cloud, BigQuery and Fivetran triggers (an aiohttp session per poll); without it, it
keeps one client for its whole wait (a fixed-interval poll done well). No retries, no models: JSON only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent

FINAL = {"completed", "failed", "terminated", "timed_out", "canceled"}


class PlainPollTrigger(BaseTrigger):
    def __init__(
        self,
        run_id: str,
        poll_interval: float,
        new_client_per_poll: bool = False,
        skyvern_conn_id: str = "skyvern_default",
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.run_id = run_id
        self.poll_interval = float(poll_interval)
        self.new_client_per_poll = bool(new_client_per_poll)
        self.skyvern_conn_id = skyvern_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "poll_interval": self.poll_interval,
                "new_client_per_poll": self.new_client_per_poll,
                "skyvern_conn_id": self.skyvern_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        conn = await BaseHook.aget_connection(self.skyvern_conn_id)
        options: dict[str, Any] = {
            "base_url": conn.host,
            "headers": {"x-api-key": conn.password or ""},
            "timeout": 60.0,
        }
        client = None if self.new_client_per_poll else httpx.AsyncClient(**options)
        try:
            while True:
                if client is None:
                    async with httpx.AsyncClient(**options) as per_poll:
                        response = await per_poll.get(f"/v1/runs/{self.run_id}")
                else:
                    response = await client.get(f"/v1/runs/{self.run_id}")
                response.raise_for_status()
                run = response.json()
                if run["status"] in FINAL:
                    yield TriggerEvent({"run_id": self.run_id, "status": run["status"]})  # type: ignore[no-untyped-call]
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            if client is not None:
                await client.aclose()
