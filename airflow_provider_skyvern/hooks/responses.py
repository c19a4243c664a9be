"""Turning what httpx returns into a parsed model or one :class:`SkyvernError` a user can act on.

Every message is built from the response and the call's description, never from the request's headers
(the key travels there); what httpx or httpcore would quote of a refused header is hidden here too.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from airflow_provider_skyvern.exceptions import (
    SkyvernError,
    SkyvernNotFoundError,
    SkyvernRequestRefusedLocally,
    SkyvernResponseError,
    SkyvernTransportError,
    describe_error_body,
    http_error_class,
)
from airflow_provider_skyvern.hooks.calls import ApiCall
from airflow_provider_skyvern.hooks.retry import CallBudget

T = TypeVar("T")

# Errors httpx raises before any byte of the request left this machine: a retry cannot duplicate work.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class _HideRefusedHeaders(logging.Filter):
    """httpcore's DEBUG trace quotes the header h11 refused (``Illegal header value b'...'``): keep the
    line, not the value, which may be a key or a header a user templated."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Illegal header" in message:
            record.msg, record.args = message.split("Illegal header", 1)[0] + "Illegal header (not shown)", ()
        return True


for _trace_logger in ("httpcore.http11", "httpcore.http2"):  # a parent's filter skips its children's records
    logging.getLogger(_trace_logger).addFilter(_HideRefusedHeaders())


def transport_error(
    api_call: ApiCall[Any], exc: httpx.TransportError, base_url: str
) -> SkyvernTransportError | SkyvernRequestRefusedLocally:
    """httpx's failure as ours, saying whether the request may have reached the server."""
    if isinstance(exc, httpx.LocalProtocolError):  # its text quotes the offending header, key included
        return SkyvernRequestRefusedLocally(api_call.method, f"{base_url}{api_call.path}")
    return SkyvernTransportError(
        api_call.method,
        api_call.path,
        exc,
        request_sent=not isinstance(exc, NOT_SENT_ERRORS),
        base_url=base_url,
    )


def gave_up(exc: SkyvernError, statistics: dict[str, Any], budget: CallBudget) -> SkyvernError:
    """The last error, saying how long the call tried when it tried more than once or ran out of time."""
    attempts, elapsed = int(statistics.get("attempt_number", 1)), budget.elapsed()
    if attempts <= 1 and elapsed < 1.0:  # one quick answer: nothing worth adding
        return exc
    plural = "s" if attempts > 1 else ""
    return exc.reworded(f"{exc}; gave up after {attempts} attempt{plural} in {elapsed:.1f} s")


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds; None when absent or an HTTP-date (our own backoff applies)."""
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def raise_for_status(
    api_call: ApiCall[Any], response: httpx.Response, base_url: str, conn_id: str | None = None
) -> None:
    """Nothing for a 2xx; else the error class of the status, with Skyvern's own detail (and for a 403,
    the connection by name)."""
    if response.is_success:
        return
    body = json_or_none(response)
    error_class = http_error_class(response.status_code)
    error = error_class(
        api_call.method,
        api_call.path,
        response.status_code,
        describe_error_body(body, response.text),
        retry_after=retry_after(response),
        body=body,
        conn_id=conn_id,
    )
    if isinstance(error, SkyvernNotFoundError) and error.no_such_endpoint:
        raise error.reworded(
            f"{error} (no such endpoint at {base_url}: check the Skyvern connection's base URL, which is "
            "the server's root without /v1)"
        )
    raise error


def parse(api_call: ApiCall[T], response: httpx.Response) -> T:
    """The body as the call's model; a body that is not one is a :class:`SkyvernResponseError`."""
    if not response.content:
        payload: Any = None
    else:
        try:
            payload = response.json()
        except ValueError:
            raise SkyvernResponseError(
                api_call.method, api_call.path, f"not JSON: {response.text[:200]!r}"
            ) from None
    try:
        return api_call.parse(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "body"
        raise SkyvernResponseError(
            api_call.method,
            api_call.path,
            f"{exc.error_count()} field error(s), first {location}: {first['msg']}",
        ) from None
