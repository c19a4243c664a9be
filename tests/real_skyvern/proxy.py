"""A forwarding proxy in front of a Skyvern, with the emulator's fault rules: a real "lost answer".

``FaultMiddleware`` with ``reset`` + ``after_create`` lets the real server create the run, then drops
the connection before the answer reaches the client, exactly what a flaky network or a load balancer does.
"""

from __future__ import annotations

from typing import Any

import httpx

from airflow_provider_skyvern.emulator.faults import FaultMiddleware, FaultRule, Faults, Receive, Scope, Send
from airflow_provider_skyvern.emulator.server import LoopbackServer


def forwarding_app(target: str) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [
            (k.decode(), v.decode())
            for k, v in scope["headers"]
            if k.lower() not in (b"host", b"content-length")
        ]
        url = f"{target}{scope['path']}" + (
            f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        )
        async with httpx.AsyncClient(timeout=120) as client:
            answer = await client.request(scope["method"], url, headers=headers, content=body)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [
                    (k.encode(), v.encode())
                    for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})

    return app


class FaultyProxy(LoopbackServer):
    def __init__(self, target: str) -> None:
        self.faults = Faults()
        self.seen: list[str] = []
        super().__init__(
            FaultMiddleware(forwarding_app(target), self.faults, lambda m, p, what: self.seen.append(what)),
            name="faulty-proxy",
        )

    def lose_next_answer(self, method: str, path: str) -> None:
        self.faults.add([FaultRule(method=method, path=path, reset=True, after_create=True, times=1)])

    def fail_next(self, method: str, path: str, status: int = 502) -> None:
        """The next matching request never reaches the server; the client gets ``status`` (a proxy's 502)."""
        self.faults.add([FaultRule(method=method, path=path, status=status, times=1)])
