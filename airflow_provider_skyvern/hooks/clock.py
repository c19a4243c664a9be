"""The clock the hook and the waits around it read and sleep on.

One injectable object (``SkyvernHook(clock=...)``) instead of ``time``/``asyncio`` calls scattered over
modules, so a caller or a test decides how time passes without reaching into anyone's private names.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime


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


@dataclass(frozen=True)
class ServerClock:
    """
    How far this machine's clock is ahead of the server's, bounded by one answer's ``Date`` header.

    The server stamped ``Date`` (whole seconds, rounded down) while handling a request this machine sent at
    ``sent`` and got the answer of at ``received`` (both by this clock): the server's true time then lay in
    ``[date, date + 1)`` and this machine's in ``[sent, received]``.
    """

    ahead_at_least: float
    ahead_at_most: float

    @classmethod
    def read(cls, date_header: str | None, sent: float, received: float) -> ServerClock | None:
        if not date_header:
            return None
        try:
            date = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return None
        if date.tzinfo is None:  # RFC 9110 dates are GMT
            date = date.replace(tzinfo=timezone.utc)
        server = date.timestamp()
        return cls(ahead_at_least=sent - (server + 1.0), ahead_at_most=received - server)

    def narrowed(self, other: ServerClock) -> ServerClock:
        """Both measure the same difference: each answer narrows it (a ``Date`` is rounded to the second);
        bounds that no longer overlap mean a clock was set, so the newer measurement stands alone."""
        least, most = (
            max(self.ahead_at_least, other.ahead_at_least),
            min(self.ahead_at_most, other.ahead_at_most),
        )
        return ServerClock(least, most) if least <= most else other
