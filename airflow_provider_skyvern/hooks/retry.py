"""When a failed Skyvern request may be sent again, how long to wait first, and when to give up.

The one place that decides retryability. Skyvern has no idempotency key on run creation, so a
run-creating POST is retried only when no run can have been created: the connection was never
established, 429, or a 503 whose body says so. Reads and cancels retry on every transient failure; a file
download is a read, so a stream that breaks mid-body (a transport error) is retried, and the hook resumes
it with ``Range`` from the bytes already received; a refused presigned URL (403) is not. All
waits use exponential backoff with jitter, or the server's ``Retry-After`` when it sends one; every wait
and every attempt is bounded by the call's :class:`CallBudget`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, retry_if_exception, wait_random_exponential

from airflow_provider_skyvern.exceptions import (
    SkyvernBadFileResponse,
    SkyvernHTTPError,
    SkyvernResponseError,
    SkyvernTransportError,
)
from airflow_provider_skyvern.hooks.clock import Clock

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 120.0
MIN_ATTEMPT_SECONDS = 0.5
"""Shortest time an attempt is given; a retry that would get less is not made."""
NO_RUN_CREATED_MARKER = "no run was created"

_backoff = wait_random_exponential(multiplier=0.5, max=30)


def is_retryable(exc: BaseException, *, creates: bool = False) -> bool:
    """True when sending the same request again is safe and may succeed."""
    if isinstance(exc, SkyvernBadFileResponse):  # a redirect loop or an undecodable body: the same again
        return False
    if isinstance(exc, SkyvernTransportError):
        return not (creates and exc.request_sent)
    if isinstance(exc, SkyvernHTTPError):
        if creates:
            return exc.http_status == 429 or (
                exc.http_status == 503 and NO_RUN_CREATED_MARKER in exc.detail.lower()
            )
        return exc.http_status in RETRYABLE_STATUSES
    return False


def may_have_created(exc: BaseException) -> bool:
    """After a failed run-creating POST: could Skyvern have created the run anyway?"""
    if isinstance(exc, SkyvernTransportError):
        return exc.request_sent
    if isinstance(exc, SkyvernHTTPError):
        if is_retryable(exc, creates=True):  # 429 / 503 "no run was created": refused before any work
            return False
        return exc.http_status >= 500 or exc.http_status == 408
    return isinstance(exc, SkyvernResponseError)  # a 2xx we could not read: most likely created


@dataclass(frozen=True)
class CallBudget:
    """The time one call may take, retries and waits included: ``total_timeout``, cut by a deadline."""

    clock: Clock
    started: float
    ends: float

    @classmethod
    def start(cls, clock: Clock, total_seconds: float, deadline: float | None = None) -> CallBudget:
        """``deadline`` is wall-clock Unix time (what Airflow stores), converted to the monotonic clock."""
        now = clock.monotonic()
        ends = now + total_seconds
        if deadline is not None:
            ends = min(ends, now + (deadline - clock.time()))
        return cls(clock, now, ends)

    def remaining(self) -> float:
        return self.ends - self.clock.monotonic()

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started

    def attempt_timeout(self, request_timeout: float) -> float:
        return max(MIN_ATTEMPT_SECONDS, min(request_timeout, self.remaining()))

    @property
    def used_up(self) -> bool:
        return self.remaining() < MIN_ATTEMPT_SECONDS


def _failure(retry_state: RetryCallState) -> BaseException | None:
    outcome = retry_state.outcome
    return outcome.exception() if outcome is not None else None


def _server_wait(exc: BaseException | None) -> float | None:
    if isinstance(exc, SkyvernHTTPError) and exc.retry_after is not None:
        return min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)
    return None


def retry_arguments(*, creates: bool, max_retries: int, budget: CallBudget, logger: Any) -> dict[str, Any]:
    """Keyword arguments shared by ``tenacity.Retrying`` and ``tenacity.AsyncRetrying``."""

    def stop(retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number > max_retries or budget.used_up:
            return True
        server_wait = _server_wait(_failure(retry_state))  # waiting less than asked would only be refused
        return server_wait is not None and server_wait > budget.remaining() - MIN_ATTEMPT_SECONDS

    def wait(retry_state: RetryCallState) -> float:
        wanted = _server_wait(_failure(retry_state))
        if wanted is None:
            wanted = float(_backoff(retry_state))
        return max(0.0, min(wanted, budget.remaining() - MIN_ATTEMPT_SECONDS))

    def log_retry(retry_state: RetryCallState) -> None:
        seconds = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "%s; retrying in %.1f s (attempt %d of %d)",
            _failure(retry_state),
            seconds,
            retry_state.attempt_number + 1,
            max_retries + 1,
        )

    return {
        "retry": retry_if_exception(lambda exc: is_retryable(exc, creates=creates)),
        "stop": stop,
        "wait": wait,
        "before_sleep": log_retry,
        "reraise": True,
    }
