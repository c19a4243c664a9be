"""Errors raised by the Skyvern hook.

Every message is one line a user can act on: method, path, status and Skyvern's own ``detail``/``error``,
trimmed. The API key never reaches a message: it travels only in a request header, and messages are
built from the response, never from the request.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow_provider_skyvern.compat import AirflowException

MAX_DETAIL_CHARS = 300


class SkyvernError(AirflowException):
    """Base class. Whether an error is worth retrying is decided in one place, ``hooks.retry``."""

    def reworded(self, message: str) -> SkyvernError:
        """The same error (same class, same fields) with a message that adds what the caller knows."""
        self.args = (message,)
        return self


class SkyvernTransportError(SkyvernError):
    """No usable HTTP answer (connect/read failure, timeout, reset); names the server it tried."""

    def __init__(
        self, method: str, path: str, cause: BaseException, *, request_sent: bool, base_url: str = ""
    ) -> None:
        self.method = method
        self.path = path
        self.request_sent = request_sent
        what = type(cause).__name__
        reason = one_line(str(cause)) or "no detail"
        stage = "after the request was sent" if request_sent else "before the request was sent"
        super().__init__(f"Skyvern {method} {base_url}{path} failed {stage}: {what}: {reason}")


class SkyvernBadFileResponse(SkyvernError):
    """A file server answered in a way the same request would get again: a redirect loop, a body that
    cannot be decoded. Names the file by its URL without the query."""

    def __init__(self, url: str, cause: BaseException) -> None:
        self.url = url
        super().__init__(f"Skyvern GET {url} failed: {type(cause).__name__}: {one_line(str(cause))}")


class SkyvernConnectionError(SkyvernError):
    """The Airflow connection cannot be used as it is (no key, a malformed key or base URL)."""


class SkyvernRequestRefusedLocally(SkyvernError):
    """
    The HTTP library refused to send the request: a header value holds a character HTTP forbids. Nothing
    left this machine and sending it again fails the same way. The library's own text quotes the header
    value (the API key, when it is the culprit), so it never reaches this message.
    """

    def __init__(self, method: str, url: str) -> None:
        self.method = method
        super().__init__(
            f"Skyvern {method} {url} was not sent: a header value holds a character HTTP forbids (a line "
            "break or a control character); check the connection's API key and the task's user_agent and "
            "extra_http_headers"
        )


class SkyvernResponseError(SkyvernError):
    """Skyvern answered 2xx with a body we cannot read (wrong JSON or shape)."""

    def __init__(self, method: str, path: str, problem: str) -> None:
        self.method = method
        self.path = path
        super().__init__(f"Skyvern {method} {path} returned an unreadable response: {one_line(problem)}")


class SkyvernHTTPError(SkyvernError):
    """Skyvern answered with an error status."""

    hint = ""

    def __init__(
        self,
        method: str,
        path: str,
        status_code: int,
        detail: str,
        *,
        retry_after: float | None = None,
        body: Any = None,
        conn_id: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.http_status = status_code
        self.detail = detail
        self.retry_after = retry_after
        self.body = body
        self.conn_id = conn_id
        hint = f" ({self.describe_hint()})" if self.hint else ""
        super().__init__(f"Skyvern {method} {path} -> HTTP {status_code}: {detail}{hint}")

    def describe_hint(self) -> str:
        """What to do about it; a subclass may name the connection (``conn_id``)."""
        return self.hint


class SkyvernAuthError(SkyvernHTTPError):
    hint = "check the API key (password) of the Skyvern connection and that the base URL is the right server"

    def describe_hint(self) -> str:
        """The connection by name: a DAG may use several, and a 403 says nothing of which."""
        if not self.conn_id:
            return self.hint
        return (
            f"check the API key (password) of connection {self.conn_id!r} and that its base URL is the right "
            "server"
        )


class SkyvernNotFoundError(SkyvernHTTPError):
    """404. FastAPI's bare ``Not Found`` means no such endpoint: the base URL is wrong, not the id."""

    @property
    def no_such_endpoint(self) -> bool:
        return self.detail == "Not Found"


class SkyvernBadRequestError(SkyvernHTTPError):
    """400 or 422; ``field_errors`` maps a dotted field path to the server's message."""

    @property
    def field_errors(self) -> dict[str, str]:
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if not isinstance(detail, list):
            return {}
        return {
            ".".join(str(part) for part in item.get("loc", []) if part != "body"): str(item.get("msg", ""))
            for item in detail
            if isinstance(item, dict)
        }


class SkyvernConflictError(SkyvernHTTPError):
    pass


class SkyvernRateLimitError(SkyvernHTTPError):
    hint = "rate limited; lower the DAG's concurrency or raise the connection's retry budget"


class SkyvernServerError(SkyvernHTTPError):
    pass


_BY_STATUS: dict[int, type[SkyvernHTTPError]] = {
    400: SkyvernBadRequestError,
    403: SkyvernAuthError,
    404: SkyvernNotFoundError,
    409: SkyvernConflictError,
    422: SkyvernBadRequestError,
    429: SkyvernRateLimitError,
}


def http_error_class(status_code: int) -> type[SkyvernHTTPError]:
    if status_code >= 500:
        return SkyvernServerError
    return _BY_STATUS.get(status_code, SkyvernHTTPError)


def describe_error_body(body: Any, text: str) -> str:
    """Skyvern's ``detail`` (string or FastAPI list), else ``error``, else the trimmed raw text."""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
                else:
                    parts.append(str(item))
            return one_line("; ".join(parts))
        if detail is not None:
            return one_line(detail if isinstance(detail, str) else json.dumps(detail))
        if body.get("error") is not None:
            return one_line(str(body["error"]))
    if _looks_like_html(text):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        return one_line(f"HTML page: {title.group(1)}" if title else "an HTML page (no detail)")
    return one_line(text) or "empty body"


def _looks_like_html(text: str) -> bool:
    head = text.lstrip()[:100].lower()
    return head.startswith("<!doctype html") or head.startswith("<html")


def one_line(text: str) -> str:
    """Whitespace collapsed, trimmed to ``MAX_DETAIL_CHARS``: a task error stays one readable line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_DETAIL_CHARS else flat[: MAX_DETAIL_CHARS - 1] + "…"


def printable(text: str) -> str:
    """``text`` with each unprintable character escaped as ``repr`` does (``\\n``, ``\\x1b``): a file
    name or URL from a website, put in a log line or a message, can forge no line nor colour a terminal."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
