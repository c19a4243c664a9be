"""The clock the hook and the waits around it read and sleep on.

One injectable object (``SkyvernHook(clock=...)``) instead of ``time``/``asyncio`` calls scattered over
modules, so a caller or a test decides how time passes without reaching into anyone's private names.
"""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Wall-clock time for deadlines stored in Airflow, monotonic time for budgets, and the sleeps."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = Clock()
