"""A minimal loopback Skyvern for load tests: ``GET /v1/runs/{id}`` answered from a fixed task-run body.

    python bench/_runserver.py [--port 0] [--api-key KEY]

Prints ``listening on http://127.0.0.1:PORT`` once it accepts connections. Stdlib only (uvloop when it is
importable), HTTP/1.1 keep-alive, no framework: the emulator spends milliseconds per request, this server
tens of microseconds, so thousands of polls per second measure the client, not the server.

Every run id is a task run that is still ``running`` (created ``--run-age`` s, default 2, before the server
started or was last reset; each ``/v1`` answer held back ``--latency`` s) unless it was
created with :meth:`RunServer.create` and its time has come (``completion.py`` runs it in-process on a
simulated clock). ``GET /_stats?prefix=P`` reports, for the run ids starting with P: GETs answered,
distinct ids seen, the monotonic time of the first and of the last "first poll", plus the connections
accepted and the server's own CPU time; ``POST /_reset`` forgets everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

# The shape the emulator (and Skyvern 1.0.56) sends for a running skyvern-2.0 task run.
RUN_TEMPLATE: dict[str, Any] = {
    "run_id": "",
    "run_type": "task_v2",
    "status": "running",
    "output": None,
    "downloaded_files": None,
    "recording_url": None,
    "recording_archived": False,
    "screenshot_urls": None,
    "failure_reason": None,
    "errors": [],
    "created_at": "",
    "modified_at": "",
    "queued_at": "",
    "started_at": "",
    "finished_at": None,
    "app_url": "",
    "browser_session_id": None,
    "browser_profile_id": None,
    "max_screenshot_scrolls": None,
    "script_run": None,
    "step_count": 1,
    "run_request": {
        "prompt": "Find the cheapest product on this page; extract its name and price in USD.",
        "url": "https://webscraper.io/test-sites/e-commerce/allinone",
        "engine": "skyvern-2.0",
        "title": None,
        "proxy_location": "RESIDENTIAL",
        "data_extraction_schema": None,
        "error_code_mapping": None,
        "max_steps": None,
        "webhook_url": None,
        "totp_identifier": None,
        "totp_url": None,
        "browser_session_id": None,
        "browser_profile_id": None,
        "start_fresh_browser": False,
        "model": None,
        "extra_http_headers": None,
        "cdp_connect_headers": None,
        "publish_workflow": False,
        "include_action_history_in_verification": False,
        "max_screenshot_scrolls": None,
        "browser_address": None,
        "run_with": None,
        "file_ids": None,
    },
}


def iso(timestamp: float) -> str:
    """Naive UTC, as Skyvern sends its timestamps."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).replace(tzinfo=None).isoformat()


@dataclass
class RunRecord:
    polls: int = 0
    first_poll: float = 0.0
    poll_times: list[float] = field(default_factory=list)
    """Wall-clock times of each GET (kept only when the server was asked to keep them)."""


@dataclass
class PlannedRun:
    created: float
    seconds: float
    steps: int = 5


class RunServer:
    """The request handling and bookkeeping; :func:`serve` puts it on a socket."""

    def __init__(
        self,
        api_key: str,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        keep_poll_times: bool = False,
        latency: float = 0.0,
        run_age: float = 2.0,
    ) -> None:
        self.api_key_header = f"x-api-key: {api_key}".encode().lower()
        self.wall = wall
        self.monotonic = monotonic
        self.keep_poll_times = keep_poll_times
        self.latency = latency
        """Seconds each ``/v1`` answer is held back: a remote server's round trip and work."""
        self.run_age = run_age
        self.runs: dict[str, RunRecord] = {}
        self.planned: dict[str, PlannedRun] = {}
        self.connections = 0
        self.base_url = ""
        self._running_template: dict[str, Any] = {}
        self._stamp()

    def _stamp(self) -> None:
        """Unplanned runs were created ``run_age`` s ago: each load test starts with runs of one age."""
        now = self.wall()
        self._running_template = dict(RUN_TEMPLATE)
        self._running_template.update(
            created_at=iso(now - self.run_age),
            queued_at=iso(now - self.run_age * 0.75),
            started_at=iso(now - self.run_age * 0.5),
            modified_at=iso(now - self.run_age * 0.5),
        )

    def create(self, run_id: str, seconds: float) -> None:
        """A run that completes ``seconds`` after now (else every id is a run that never ends)."""
        self.planned[run_id] = PlannedRun(self.wall(), seconds)

    def run_body(self, run_id: str) -> dict[str, Any]:
        body = dict(self._running_template)
        body["run_id"] = run_id
        body["app_url"] = f"{self.base_url}/runs/{run_id}"
        plan = self.planned.get(run_id)
        if plan is not None:
            ends = plan.created + plan.seconds
            body.update(
                created_at=iso(plan.created), queued_at=iso(plan.created), started_at=iso(plan.created)
            )
            if self.wall() >= ends:
                body.update(
                    status="completed", step_count=plan.steps, finished_at=iso(ends), modified_at=iso(ends)
                )
                body["output"] = {"answer": "done"}
        return body

    def handle(self, method: str, target: str, head: bytes) -> tuple[int, bytes]:
        url = urlsplit(target)
        if url.path.startswith("/v1/"):
            if self.api_key_header not in head.lower():
                return 403, b'{"detail":"Invalid credentials"}'
            if method == "GET" and url.path.startswith("/v1/runs/") and url.path.count("/") == 3:
                run_id = unquote(url.path.rsplit("/", 1)[1])
                record = self.runs.get(run_id)
                if record is None:
                    record = self.runs[run_id] = RunRecord(first_poll=self.monotonic())
                record.polls += 1
                if self.keep_poll_times:
                    record.poll_times.append(self.wall())
                return 200, json.dumps(self.run_body(run_id)).encode()
            return 404, b'{"detail":"Not Found"}'
        if url.path == "/_stats":
            prefix = parse_qs(url.query).get("prefix", [""])[0]
            return 200, json.dumps(self.stats(prefix)).encode()
        if url.path == "/_reset" and method == "POST":
            self.runs.clear()
            self.planned.clear()
            self.connections = 0
            self._stamp()
            return 200, b"{}"
        return 404, b'{"detail":"Not Found"}'

    def stats(self, prefix: str) -> dict[str, Any]:
        firsts = [r.first_poll for run_id, r in self.runs.items() if run_id.startswith(prefix)]
        gets = sum(r.polls for run_id, r in self.runs.items() if run_id.startswith(prefix))
        return {
            "gets": gets,
            "ids": len(firsts),
            "first_poll_first": min(firsts, default=None),
            "first_poll_last": max(firsts, default=None),
            "connections": self.connections,
            "server_cpu": time.process_time(),
            "monotonic": time.monotonic(),
        }


REASONS = {200: b"OK", 403: b"Forbidden", 404: b"Not Found"}


class _Connection(asyncio.Protocol):
    def __init__(self, server: RunServer) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self.server.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            lowered = head.lower()
            at = lowered.find(b"\r\ncontent-length:")
            if at >= 0:
                length = int(lowered[at + 17 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, body = self.server.handle(method, target, head)
            close = b"\r\nconnection: close" in lowered
            answer = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
                % (status, REASONS[status], len(body), b"connection: close\r\n" if close else b"")
                + body
            )
            if self.server.latency and target.startswith("/v1/"):
                # httpx sends one request per connection at a time, so answers keep their order
                asyncio.get_running_loop().call_later(self.server.latency, self._answer, answer, close)
            else:
                self._answer(answer, close)

    def _answer(self, answer: bytes, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(answer)
        if close:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(server: RunServer, port: int = 0) -> asyncio.base_events.Server:
    """Listen on 127.0.0.1 in the running loop; sets ``server.base_url``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    listener = await asyncio.get_running_loop().create_server(lambda: _Connection(server), sock=sock)
    server.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    return listener


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", required=True)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds each /v1 answer is held back (default 0)"
    )
    parser.add_argument(
        "--run-age", type=float, default=2.0, help="seconds since the runs were created (default 2)"
    )
    args = parser.parse_args()

    async def run() -> None:
        server = RunServer(args.api_key, latency=args.latency, run_age=args.run_age)
        listener = await serve(server, args.port)
        print(f"bench run server listening on {server.base_url}", flush=True)
        async with listener:
            await listener.serve_forever()

    try:
        import uvloop  # the server is not what is measured: the faster, the less it competes
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
