"""Test set-up: an isolated AIRFLOW_HOME (set before anything imports airflow) and Skyvern connections."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_home = ""  # the suite's own throwaway home, when it made one
_SUITE_HOME = "SKYVERN_TESTS_AIRFLOW_HOME"  # names the home the suite made, for the processes it starts
_parents = os.environ.get(_SUITE_HOME)
if _parents and os.environ.get("AIRFLOW_HOME") == _parents:
    # A pytest-xdist worker inherits the home its controller made: each process makes its own (its own SQLite
    # DB and dags folder), as a run without workers does.
    del os.environ["AIRFLOW_HOME"]
    if os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") == os.path.join(_parents, "dags"):
        del os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
if "AIRFLOW_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="skyvern_af_home_")
    os.environ["AIRFLOW_HOME"] = os.environ[_SUITE_HOME] = _home
    atexit.register(shutil.rmtree, _home, ignore_errors=True)  # the throwaway home and its SQLite DB
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(os.environ["AIRFLOW_HOME"], "dags"))

import pytest  # noqa: E402
import respx  # noqa: E402

API_KEY = "sk-test-SECRET-4f9a1c77"
BASE_URL = "https://skyvern.test"
REPO_ROOT = Path(__file__).resolve().parent.parent
OPENAPI_PATH = Path(
    os.environ.get("SKYVERN_OPENAPI_PATH", REPO_ROOT.parent / "shared" / "skyvern" / "openapi.json")
)


def set_connection(
    monkeypatch: pytest.MonkeyPatch,
    conn_id: str = "skyvern_default",
    *,
    host: str | None = BASE_URL,
    password: str | None = API_KEY,
    extra: dict[str, object] | None = None,
) -> None:
    """An env-var connection in the JSON form, as users set ``AIRFLOW_CONN_SKYVERN_DEFAULT``."""
    conn: dict[str, object] = {"conn_type": "skyvern", "host": host, "password": password}
    if extra is not None:
        conn["extra"] = extra
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def skyvern_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    """``skyvern_default`` pointing at the respx-mocked base URL, with no retry waits worth noticing."""
    set_connection(monkeypatch, extra={"max_retries": 3})


@pytest.fixture
def openapi() -> dict[str, object]:
    if not OPENAPI_PATH.is_file():
        pytest.skip(f"Skyvern's openapi.json not found at {OPENAPI_PATH} (set SKYVERN_OPENAPI_PATH)")
    return json.loads(OPENAPI_PATH.read_text())  # type: ignore[no-any-return]


class FastClock:
    """Patches the provider's :class:`Clock`: real time, but no wait lasts over 1 ms; waits are recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import asyncio
        import time

        from airflow_provider_skyvern.hooks.clock import Clock

        self.waits: list[float] = []

        def sleep(_: Clock, seconds: float) -> None:
            self.waits.append(seconds)
            time.sleep(min(max(seconds, 0.0), 0.001))

        async def asleep(_: Clock, seconds: float) -> None:
            self.waits.append(seconds)
            await asyncio.sleep(min(max(seconds, 0.0), 0.001))

        monkeypatch.setattr(Clock, "sleep", sleep)
        monkeypatch.setattr(Clock, "asleep", asleep)


@pytest.fixture
def fast_clock(monkeypatch: pytest.MonkeyPatch) -> FastClock:
    return FastClock(monkeypatch)


from airflow_provider_skyvern.hooks.clock import Clock  # noqa: E402 - after AIRFLOW_HOME is set


class InstantClock(Clock):
    """A :class:`Clock` to inject (``SkyvernHook(clock=...)``): real time, waits return at once, recorded."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def async_clients_made(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ``httpx.AsyncClient`` created while the test runs, in order."""
    import httpx

    created: list[object] = []
    original = httpx.AsyncClient.__init__

    def counting_init(self: httpx.AsyncClient, *args: object, **kwargs: object) -> None:
        created.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting_init)
    return created


@pytest.fixture
def skyvern() -> Iterator[respx.MockRouter]:
    """The mocked Skyvern at ``BASE_URL`` for operator tests; no earlier runs are listed, timelines are empty."""
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as mock:
        mock.get("/v1/runs").respond(200, json=[])
        mock.get(url__regex=r"/v1/runs/[^/]+/timeline$", name="timeline").respond(200, json=[])
        yield mock
