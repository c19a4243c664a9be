"""What the hook reads from an Airflow connection: base URL, API key and time limits, checked once.

Kept apart from HTTP so a bad connection fails with one line naming it before any client exists, and so
the key is handled in one place (trimmed, checked, carried only by :class:`ApiKeyAuth`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_skyvern import DEFAULT_BASE_URL, __version__
from airflow_provider_skyvern.exceptions import SkyvernConnectionError

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_REQUEST_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_TOTAL_TIMEOUT = 180.0
USER_AGENT = f"airflow-provider-skyvern/{__version__}"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")  # noqa: S104 - a host name, not a bind
_LAN_SUFFIXES = (".local", ".internal", ".lan")


def connection_label(conn_id: str | None) -> str:
    """How a message names the connection; None while Airflow tests a form under a temporary id."""
    return f"Skyvern connection {conn_id!r}" if conn_id else "The Skyvern connection"


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook needs from an Airflow connection; ``repr`` never shows the key."""

    base_url: str
    api_key: str = field(repr=False)
    request_timeout: float
    max_retries: int
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    """Seconds one call may take, every retry and wait included."""
    conn_id: str | None = None
    """The connection's id as messages name it; None when it is not the user's (a connection test)."""

    @classmethod
    def from_connection(cls, conn: Connection, *, named: bool = True) -> ConnectionSettings:
        """``named=False``: messages say "the Skyvern connection", not the id Airflow made up for a test."""
        conn_id = conn.conn_id if named else None
        label = connection_label(conn_id)
        api_key = clean_api_key(conn.password, conn_id)
        extra = conn.extra_dejson
        base_url = base_url_of(conn.host, conn.port, conn_id)
        if base_url.endswith("/v1"):
            raise SkyvernConnectionError(
                f"{label}: base URL {base_url} ends in /v1, but the provider adds "
                f"/v1 itself; set the host to {base_url.removesuffix('/v1')}"
            )
        return cls(
            base_url=base_url,
            api_key=api_key,
            request_timeout=_extra_number(extra, "request_timeout", DEFAULT_REQUEST_TIMEOUT, label),
            max_retries=int(_extra_number(extra, "max_retries", DEFAULT_MAX_RETRIES, label)),
            total_timeout=_extra_number(extra, "total_timeout", DEFAULT_TOTAL_TIMEOUT, label),
            conn_id=conn_id,
        )


def clean_api_key(password: str | None, conn_id: str | None) -> str:
    """
    The key without the whitespace around it (a secret file written by ``echo``, a Kubernetes secret mount,
    a paste); a key still holding a character an HTTP header cannot carry fails here, before any request,
    with a line that names the connection and the kind of character, never the value.
    """
    api_key = (password or "").strip()
    if not api_key:
        raise SkyvernConnectionError(
            f"{connection_label(conn_id)} has no API key: set its password (API key) field"
        )
    odd = _odd_character(api_key)
    if odd is not None:
        raise SkyvernConnectionError(
            f"{connection_label(conn_id)}: its API key (password) holds {odd} inside, which no Skyvern API "
            "key has; set the key again (the value is not shown)"
        )
    return api_key


def _odd_character(text: str) -> str | None:
    """What kind of character makes ``text`` no API key: keys are printable ASCII without spaces."""
    for char in text:
        if "\x21" <= char <= "\x7e":
            continue
        if char in "\r\n":
            return "a line break"
        if char == "\t":
            return "a tab"
        if char == " ":
            return "a space"
        return "a non-ASCII character" if ord(char) > 0x7F else "a control character"
    return None


class ApiKeyAuth(httpx.Auth):
    """Adds ``x-api-key`` to each request as it is sent: no client or hook attribute holds the header."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-api-key"] = self._api_key
        yield request

    def __repr__(self) -> str:
        return "ApiKeyAuth(x-api-key=***)"


def client_options(settings: ConnectionSettings) -> dict[str, Any]:
    """Keyword arguments of every ``httpx`` client the hook makes for ``settings``."""
    return {
        "base_url": settings.base_url,
        "auth": ApiKeyAuth(settings.api_key),
        "headers": {"User-Agent": USER_AGENT},
        "timeout": httpx.Timeout(settings.request_timeout),
        # Not followed: the key would go to whatever host a redirect names.
        "follow_redirects": False,
    }


def base_url_of(host: str | None, port: int | None, conn_id: str | None = None) -> str:
    """
    Host may hold a full URL (``http://localhost:8000``) or a bare host; empty means Skyvern Cloud.

    A bare host is http when it is a LAN name (localhost, no dot, ``.local``/``.internal``/``.lan``) or
    has an explicit port other than 443 (self-hosted installs listen on 8000 without TLS), else https.
    The port field adds a port the host lacks; one that contradicts the host's own is refused.
    """
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        host = f"{_bare_host_scheme(host, port)}://{host}"
    parts = urlsplit(host)
    if port and parts.port is None:
        host = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
    elif port and parts.port != port:
        raise SkyvernConnectionError(
            f"{connection_label(conn_id)}: its host {host} says port {parts.port} but its port field says "
            f"{port}; keep one of them"
        )
    return host.rstrip("/")


def _bare_host_scheme(host: str, port: int | None) -> str:
    parts = urlsplit(f"//{host}")
    name = (parts.hostname or "").lower()
    explicit_port = parts.port or port
    on_the_lan = name in _LOCAL_HOSTS or "." not in name or name.endswith(_LAN_SUFFIXES)
    return "http" if on_the_lan or (explicit_port and explicit_port != 443) else "https"


def _extra_number(extra: dict[str, Any], key: str, default: float, label: str) -> float:
    value = extra.get(key)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SkyvernConnectionError(f"{label}: extra {key!r} must be a number, got {value!r}") from None
    if number < 0:
        raise SkyvernConnectionError(f"{label}: extra {key!r} must be >= 0, got {value!r}")
    return number
