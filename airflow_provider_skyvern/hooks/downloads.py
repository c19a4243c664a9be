"""Streaming a run's file (a presigned URL, or the API's artifact content) into a :class:`DownloadSink`.

Resumed with ``Range`` from the bytes already received when a stream breaks; the URL is shown without
its query (presigned URLs carry their signature there), in errors and in httpx's own request log.
"""

from __future__ import annotations

import contextvars
import logging
import re
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from tenacity import Retrying

from airflow_provider_skyvern.exceptions import (
    SkyvernBadFileResponse,
    SkyvernError,
    SkyvernHTTPError,
    SkyvernRequestRefusedLocally,
    SkyvernServerError,
    SkyvernTransportError,
    describe_error_body,
    http_error_class,
    one_line,
    printable,
)
from airflow_provider_skyvern.hooks.clock import Clock
from airflow_provider_skyvern.hooks.connection import ConnectionSettings
from airflow_provider_skyvern.hooks.responses import gave_up, json_or_none, retry_after
from airflow_provider_skyvern.hooks.retry import CallBudget, retry_arguments

DOWNLOAD_TIME_BUDGET = 24 * 3600.0
"""A download's retries stop at the connection's ``max_retries``; time alone (each read has its own
``request_timeout``) stops them only after this long, or at the caller's ``deadline``."""


class DownloadSink(Protocol):
    """Where :meth:`SkyvernHook.download` puts the bytes; it asks a resumed request from ``size`` on."""

    @property
    def size(self) -> int:
        """Bytes received so far (the next attempt asks for ``Range: bytes=<size>-``)."""
        ...

    def write(self, chunk: bytes) -> None: ...

    def restart(self) -> None:
        """The server sends the whole file again (it ignored the Range): drop every byte received."""
        ...


def redacted_url(url: str) -> str:
    """``url`` without its query and fragment: presigned URLs carry their signature there."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


_DOWNLOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("skyvern_downloading", default=False)


class _RedactDownloadUrls(logging.Filter):
    """httpx logs each request's full URL at INFO (Airflow 3.0 shows it in task logs): for this hook's
    downloads, whose presigned URLs carry a signature in the query, it logs the URL without the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _DOWNLOADING.get() and isinstance(record.args, tuple):
            record.args = tuple(
                redacted_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactDownloadUrls())


def is_api_url(url: str, base_url: str) -> bool:
    """Same scheme, host and port as the connection and a path under its ``/v1``: the key may go there."""
    target, base = urlsplit(url), urlsplit(base_url)
    same_origin = (target.scheme, target.netloc.lower()) == (base.scheme, base.netloc.lower())
    return same_origin and target.path.startswith(base.path.rstrip("/") + "/v1/")


def _content_range(response: httpx.Response) -> tuple[int | None, int | None, int | None]:
    """``Content-Range: bytes a-b/n`` (or ``bytes */n``) as (a, b, n); unknown parts are None."""
    value = response.headers.get("content-range", "")
    unit, _, spec = value.partition(" ")
    if unit.strip().lower() != "bytes":
        return None, None, None
    span, _, total = spec.partition("/")
    size = int(total) if total.strip().isdigit() else None
    first, _, last = span.partition("-")
    if first.strip().isdigit() and last.strip().isdigit():
        return int(first), int(last), size
    return None, None, size


def _pour(response: httpx.Response, sink: DownloadSink, budget: CallBudget) -> None:
    """The body into ``sink`` piece by piece, as httpcore reads it (at most 64 KiB each): writing a piece
    while it is still in the CPU's cache costs less than gathering 1 MiB first (bench/README.md). httpx
    times each read, not the whole: a body that trickles stops at the budget's end (the caller's deadline)."""
    for piece in response.iter_bytes():
        sink.write(piece)
        if budget.remaining() <= 0:
            raise httpx.ReadTimeout(f"out of time at byte {sink.size}")


_XML_ERROR = re.compile(r"<Code>([^<]*)</Code>(?:.*?<Message>([^<]*)</Message>)?", re.DOTALL)


def _download_error(
    shown_url: str, response: httpx.Response, to_api: bool, conn_id: str | None
) -> SkyvernHTTPError:
    """A file server's refusal, its status and reason. Of an S3/GCS XML error only ``Code`` and ``Message``
    are kept: the rest (``SignatureProvided``, ``StringToSign``, ``AWSAccessKeyId``) echoes the URL's
    credentials."""
    xml = _XML_ERROR.search(response.text) if "<Error" in response.text[:200] else None
    if xml is not None:
        detail = one_line(": ".join(part for part in xml.groups() if part))
    else:
        detail = describe_error_body(json_or_none(response), response.text)
    if to_api:
        error_class = http_error_class(response.status_code)
    else:  # not Skyvern: its key hints would mislead
        error_class = SkyvernServerError if response.status_code >= 500 else SkyvernHTTPError
        if response.status_code in (400, 403):
            detail += " (a presigned URL expired or was refused: read the run again for fresh URLs)"
    return error_class(
        "GET",
        shown_url,
        response.status_code,
        detail,
        retry_after=retry_after(response),
        conn_id=conn_id if to_api else None,
    )


def _starts_at(response: httpx.Response, offset: int) -> bool:
    return _content_range(response)[0] == offset


def _whole_after_range(response: httpx.Response, offset: int, size: int) -> bool:
    """After a 206 from ``offset``: True when the file is whole, False when the server capped the range
    (a CDN or proxy answering ``bytes a-b/total`` with ``b + 1 < total``) and the rest must be asked for.
    A body short of its own range, or a range that brought nothing, is a broken stream (retried)."""
    _, last, total = _content_range(response)
    if last is not None and size < last + 1:
        raise httpx.RemoteProtocolError(f"the body ended at byte {size}, short of its range")
    if total is None or size >= total:
        return True
    if size <= offset:
        raise httpx.RemoteProtocolError(
            f"asked for bytes {offset}-, got none, short of its total of {total} bytes"
        )
    return False


def _already_complete(response: httpx.Response, offset: int) -> bool:
    """A 416 to ``bytes=<offset>-`` whose ``Content-Range: bytes */<offset>`` says nothing is left."""
    return bool(offset) and response.status_code == 416 and _content_range(response)[2] == offset


def download(
    client: httpx.Client,
    settings: ConnectionSettings,
    url: str,
    sink: DownloadSink,
    *,
    clock: Clock,
    log: Any,
    deadline: float | None = None,
) -> None:
    """:meth:`SkyvernHook.download` on ``client``, which carries the connection's key for API URLs."""
    target = urlsplit(url)
    if target.scheme not in ("http", "https"):
        raise SkyvernError(
            f"Skyvern file {printable(redacted_url(url))} is not reachable over HTTP (a self-hosted Skyvern with "
            "local storage hands out file:// URIs): configure S3 or Azure storage on the server"
        )
    to_api = is_api_url(url, settings.base_url)
    shown = printable(redacted_url(url))  # a path from a website: no line break or escape reaches a log
    budget = CallBudget.start(clock, DOWNLOAD_TIME_BUDGET, deadline)
    retrying = Retrying(
        sleep=clock.sleep,
        **retry_arguments(creates=False, max_retries=settings.max_retries, budget=budget, logger=log),
    )

    def attempt() -> None:
        while not fetch():  # a capped range is progress, not a failure: no retry is spent on it
            if budget.used_up:
                raise SkyvernTransportError(
                    "GET", shown, httpx.ReadTimeout(f"out of time at byte {sink.size}"), request_sent=True
                )

    def fetch() -> bool:
        """One request from ``sink.size`` on; False when the server capped its range and more is left."""
        offset = sink.size
        # identity: a Range counts encoded bytes, so a compressed body could not be resumed
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            log.info("Resuming the download of %s at byte %d", shown, offset)
        try:
            with client.stream(
                "GET",
                url,
                headers=headers,
                timeout=budget.attempt_timeout(settings.request_timeout),
                auth=httpx.USE_CLIENT_DEFAULT if to_api else None,
                follow_redirects=not to_api,
            ) as response:
                if _already_complete(response, offset):
                    return True
                if not response.is_success:
                    response.read()
                    raise _download_error(shown, response, to_api, settings.conn_id)
                if response.status_code == 206 and not _starts_at(response, offset):
                    sink.restart()  # not the part asked for: the next attempt asks for the whole file
                    raise httpx.RemoteProtocolError(f"asked for bytes {offset}-, answered another range")
                if offset and response.status_code != 206:
                    sink.restart()  # the server ignored the Range and sends the whole file again
                _pour(response, sink, budget)
                return response.status_code != 206 or _whole_after_range(response, offset, sink.size)
        except httpx.LocalProtocolError:  # its text quotes the offending header
            raise SkyvernRequestRefusedLocally("GET", shown) from None
        except httpx.TransportError as exc:
            raise SkyvernTransportError("GET", shown, exc, request_sent=True) from None
        except (httpx.TooManyRedirects, httpx.DecodingError) as exc:  # not TransportErrors: named here too
            raise SkyvernBadFileResponse(shown, exc) from None

    downloading = _DOWNLOADING.set(True)
    try:
        retrying(attempt)
    except SkyvernError as exc:
        raise gave_up(exc, retrying.statistics, budget) from None
    finally:
        _DOWNLOADING.reset(downloading)
