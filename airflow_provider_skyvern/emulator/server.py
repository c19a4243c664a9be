"""Running the emulator: in a background thread (tests, users' own DAG tests) or as a process (CLI)."""

from __future__ import annotations

import json
import socket
import threading
import time
from types import TracebackType

import httpx
import uvicorn

from airflow_provider_skyvern.emulator.app import create_app
from airflow_provider_skyvern.emulator.faults import ASGIApp
from airflow_provider_skyvern.emulator.state import EmulatorSettings, EmulatorState

LOOPBACK = "127.0.0.1"


class LoopbackServer:
    """Any ASGI app served by uvicorn on 127.0.0.1 in a daemon thread; use as a context manager."""

    def __init__(self, app: ASGIApp, port: int = 0, name: str = "loopback-server") -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((LOOPBACK, port))
        self.port = int(self._socket.getsockname()[1])
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        # Requests still in flight at stop (a latency fault) are dropped after 1 s, not awaited.
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
            date_header=False,  # the app's own Date (the emulator's clock; a proxy forwards its upstream's)
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=name, daemon=True
        )

    def start(self, timeout: float = 10.0) -> LoopbackServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self._thread.name} did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def connection_json(base_url: str, api_key: str) -> str:
    """An Airflow Skyvern connection in the JSON form of ``AIRFLOW_CONN_*`` variables."""
    return json.dumps({"conn_type": "skyvern", "host": base_url, "password": api_key})


class EmulatorServer(LoopbackServer):
    """
    The emulator on 127.0.0.1 in a daemon thread; use as a context manager.

    ``base_url`` and ``api_key`` are what a Skyvern connection needs; ``state`` is the live emulator
    (runs, request log, faults) for assertions; ``control`` is an HTTP client for ``/_emulator``.
    """

    def __init__(self, settings: EmulatorSettings | None = None, port: int = 0) -> None:
        self.settings = settings or EmulatorSettings()
        app, self.state = create_app(self.settings)
        super().__init__(app, port, name="skyvern-emulator")
        self.control = httpx.Client(base_url=self.base_url, timeout=10.0)

    @property
    def api_key(self) -> str:
        return self.settings.api_key

    def connection_json(self) -> str:
        """``AIRFLOW_CONN_SKYVERN_DEFAULT`` pointing at this emulator."""
        return connection_json(self.base_url, self.api_key)

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        super().start(timeout)
        return self

    def stop(self) -> None:
        self.control.close()
        super().stop()

    def __enter__(self) -> EmulatorServer:
        return self.start()


__all__ = ["EmulatorServer", "EmulatorSettings", "EmulatorState", "LoopbackServer"]
