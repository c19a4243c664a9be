"""Fault injection: rules that make the emulator answer like a struggling Skyvern.

A rule matches requests by method and path glob and fires for the next ``times`` matches (or forever),
each with probability ``rate``. A fired rule adds ``latency``, answers ``status`` with Skyvern's own
error body for it, drops the connection (``reset``), cuts a response body after ``break_after`` bytes
(a download broken mid-stream, for resume tests), or, with ``after_create``, lets the request do its
work first (a run is created) and only then answers the error: the "500 after the run was created" case.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AFTER_CREATE_SCOPE_KEY = "emulator.after_create"
NO_RUN_CREATED = "The server is busy dispatching other runs. No run was created; retry this request."


class FaultRule(BaseModel):
    """One fault; posted as JSON to ``/_emulator/faults`` or built from the command line."""

    model_config = ConfigDict(extra="forbid")

    method: str = "*"
    path: str = "/v1/*"
    status: int | None = Field(default=None, ge=400, le=599)
    reset: bool = False
    latency: float = Field(default=0.0, ge=0)
    times: int | None = Field(default=None, ge=1)
    rate: float = Field(default=1.0, ge=0, le=1)
    after_create: bool = False
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    break_after: int | None = Field(default=None, ge=0)
    """Send this many bytes of the real body, then drop the connection."""

    def matches(self, method: str, path: str) -> bool:
        return fnmatch.fnmatch(method.upper(), self.method.upper()) and fnmatch.fnmatch(path, self.path)


class Faults:
    """The active rules; thread-safe because tests change them while the server answers."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 - fault dice, not security

    def add(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def active(self) -> list[FaultRule]:
        with self._lock:
            return [rule.model_copy() for rule in self._rules]

    def fire(self, method: str, path: str) -> list[FaultRule]:
        """The rules that fire for this request (each use counted)."""
        fired = []
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(method, path) or self._random.random() >= rule.rate:
                    continue
                fired.append(rule)
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
        return fired


def error_response(rule: FaultRule, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body as the real server (or the proxy in front of it) sends them."""
    status = rule.status or 500
    headers = {"content-type": "application/json"}
    retry_after = rule.retry_after
    if rule.body is not None:
        body: Any = rule.body
    elif status == 429:
        body = {
            "detail": "Rate limit exceeded for organization o_emulator. Maximum 50 requests per 60 seconds allowed."
        }
    elif status == 503 and method == "POST" and path.startswith("/v1/run/"):
        body = {"detail": NO_RUN_CREATED}
        retry_after = 5 if retry_after is None else retry_after
    elif status == 503:
        body = {"error": "Database temporarily unavailable"}
        retry_after = 1 if retry_after is None and method == "GET" else retry_after
    elif status in (502, 504):
        title = f"{status} {'Bad Gateway' if status == 502 else 'Gateway Time-out'}"
        headers["content-type"] = "text/html"
        page = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center>"
        return status, headers, (page + "<hr><center>nginx</center>" * 40 + "</body></html>").encode()
    elif status >= 500:
        body = {"error": "Unexpected error: EmulatedFault"}
    else:
        body = {"detail": f"Emulated HTTP {status}"}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return status, headers, json.dumps(body).encode()


class ConnectionDropped(Exception):
    """Raised after the response started: uvicorn then closes the socket mid-response."""


class FaultMiddleware:
    """Outermost ASGI layer, so a reset really drops the connection instead of becoming a 500."""

    def __init__(self, app: ASGIApp, faults: Faults, on_fault: Callable[[str, str, str], None]) -> None:
        self.app = app
        self.faults = faults
        self.on_fault = on_fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        fired = self.faults.fire(method, path)
        delay = sum(rule.latency for rule in fired)
        if delay:
            await asyncio.sleep(delay)
        failing = next((rule for rule in fired if rule.status is not None or rule.reset), None)
        cut = next((rule.break_after for rule in fired if rule.break_after is not None), None)
        if failing is None and cut is not None:
            self.on_fault(method, path, f"body cut after {cut} bytes")
            await self.app(scope, receive, _cutting(send, cut, f"{method} {path}"))
            return
        if failing is None:
            await self.app(scope, receive, send)
            return
        what = "reset" if failing.reset else f"HTTP {failing.status}"
        if failing.after_create:
            scope[AFTER_CREATE_SCOPE_KEY] = True  # the app's own request log leaves this one to us
            await self.app(scope, receive, _discard)
            what += " after the request was handled"
        self.on_fault(method, path, what)
        if failing.reset:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
            )
            raise ConnectionDropped(f"emulated connection reset on {method} {path}")
        status, headers, body = error_response(failing, method, path)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _cutting(send: Send, limit: int, what: str) -> Send:
    """``send`` that passes ``limit`` body bytes, then drops the connection (the headers promised more)."""
    sent = 0

    async def cut_send(message: Message) -> None:
        nonlocal sent
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            if sent + len(body) >= limit and message.get("more_body", False):
                await send({"type": "http.response.body", "body": body[: limit - sent], "more_body": True})
                raise ConnectionDropped(f"emulated stream break after {limit} bytes of {what}")
            sent += len(body)
        await send(message)

    return cut_send


async def _discard(message: Message) -> None:
    """Swallows the real answer of an ``after_create`` request."""
