"""When a failed Skyvern request may be sent again, and how long to wait first.

Skyvern has no idempotency key on run creation, so a run-creating POST is retried only when no run can
have been created: the connection was never established, 429, or a 503 whose body says so. Reads and
cancels retry on every transient failure. All waits use exponential backoff with jitter, or the
server's ``Retry-After`` when it sends one.
"""

from __future__ import annotations

from typing import Any

from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from airflow_provider_skyvern.exceptions import SkyvernHTTPError, SkyvernResponseError, SkyvernTransportError

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 120.0
NO_RUN_CREATED_MARKER = "no run was created"

_backoff = wait_random_exponential(multiplier=0.5, max=30)


def is_retryable(exc: BaseException, *, creates: bool) -> bool:
    """True when sending the same request again is safe and may succeed."""
    if isinstance(exc, SkyvernTransportError):
        return not (creates and exc.request_sent)
    if isinstance(exc, SkyvernHTTPError):
        if creates:
            return exc.http_status == 429 or (
                exc.http_status == 503 and NO_RUN_CREATED_MARKER in exc.detail.lower()
            )
        return exc.http_status in RETRYABLE_STATUSES
    return False


def wait_seconds(retry_state: RetryCallState) -> float:
    """``Retry-After`` when the server sent one (bounded), else exponential backoff with jitter."""
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    if isinstance(exc, SkyvernHTTPError) and exc.retry_after is not None:
        return min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)
    return float(_backoff(retry_state))


def retry_arguments(*, creates: bool, max_retries: int, logger: Any) -> dict[str, Any]:
    """Keyword arguments shared by ``tenacity.Retrying`` and ``tenacity.AsyncRetrying``."""

    def log_retry(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "%s; retrying in %.1f s (attempt %d of %d)",
            exc,
            wait,
            retry_state.attempt_number + 1,
            max_retries + 1,
        )

    return {
        "retry": retry_if_exception(lambda exc: is_retryable(exc, creates=creates)),
        "stop": stop_after_attempt(max_retries + 1),
        "wait": wait_seconds,
        "before_sleep": log_retry,
        "reraise": True,
    }


def may_have_created(exc: BaseException) -> bool:
    """After a failed run-creating POST: could Skyvern have created the run anyway?"""
    if isinstance(exc, SkyvernTransportError):
        return exc.request_sent
    if isinstance(exc, SkyvernHTTPError):
        if is_retryable(exc, creates=True):  # 429 / 503 "no run was created": refused before any work
            return False
        return exc.http_status >= 500 or exc.http_status == 408
    return isinstance(exc, SkyvernResponseError)  # a 2xx we could not read: most likely created
