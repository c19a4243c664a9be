"""Two peers for the same scenarios: the REAL Skyvern 1.0.56 (../shared/real-skyvern) and our emulator.

The real server is started with its own ``up.sh`` (about 3 min the first time: it builds its venv) and
stopped with ``down.sh`` if this session started it. When it cannot start, every test here is skipped
with the reason printed (``-rs``); the emulator half alone proves nothing about Skyvern.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings
from airflow_provider_skyvern.models import RunStatus
from tests.conftest import REPO_ROOT, set_connection

REAL_SKYVERN = Path(os.environ.get("REAL_SKYVERN_DIR", REPO_ROOT.parent / "shared" / "real-skyvern"))
STATE_DIR = Path(os.environ.get("REALSKY_DIR", "/tmp/realsky"))
UP_TIMEOUT = 900


@dataclass
class Peer:
    """A Skyvern to talk to: its URL and key, and the shop page its browser can reach."""

    name: str
    base_url: str
    api_key: str
    products_url: str
    fake_llm_url: str | None = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"x-api-key": self.api_key}, timeout=120)

    def wait_final(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        with self.client() as client:
            deadline = time.monotonic() + timeout
            while True:
                body: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
                if RunStatus(body["status"]).is_terminal or time.monotonic() > deadline:
                    return body
                time.sleep(1)

    def settle(self, run_ids: list[str]) -> None:
        """Cancel what is still going and wait until it ends: the real server has one browser tab."""
        with self.client() as client:
            for run_id in run_ids:
                client.post(f"/v1/runs/{run_id}/cancel")
        if self.fake_llm_url:  # wake LLM calls held by [fake:slow], so canceled runs really end
            httpx.post(f"{self.fake_llm_url}/_admin/release", timeout=5)
        for run_id in run_ids:
            self.wait_final(run_id, timeout=60)


def _read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/api/v1/heartbeat", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def real_peer() -> Iterator[Peer]:
    env_file = STATE_DIR / "env.sh"
    was_up = env_file.is_file() and _healthy(_read_env(env_file).get("SKYVERN_BASE_URL", ""))
    if not (REAL_SKYVERN / "up.sh").is_file():
        pytest.skip(f"real Skyvern scripts not found at {REAL_SKYVERN} (set REAL_SKYVERN_DIR)")
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(REAL_SKYVERN / "up.sh")],
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT,
            check=False,
            env={**os.environ, "REALSKY_DIR": str(STATE_DIR)},
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"real Skyvern did not start within {UP_TIMEOUT} s")
    if done.returncode != 0 or not env_file.is_file():
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        pytest.skip(f"real Skyvern could not start (up.sh exit {done.returncode}): {tail}")
    env = _read_env(env_file)
    print(f"\nreal Skyvern 1.0.56 at {env['SKYVERN_BASE_URL']} (up.sh {time.monotonic() - started:.0f} s)")
    yield Peer(
        "real",
        env["SKYVERN_BASE_URL"],
        env["SKYVERN_API_KEY"],
        env["SITE_PRODUCTS_URL"],
        env.get("FAKE_LLM_URL"),
    )
    if not was_up:
        subprocess.run(["bash", str(REAL_SKYVERN / "down.sh")], capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def emulator_peer(real_peer: Peer) -> Iterator[Peer]:
    """Wall-clock emulator with short runs; it depends on the real peer so both are compared or neither."""
    with EmulatorServer(EmulatorSettings(api_key="emu-SECRET-key", run_seconds=4.0)) as server:
        yield Peer("emulator", server.base_url, server.api_key, real_peer.products_url)


@pytest.fixture(params=["real", "emulator"])
def peer(request: pytest.FixtureRequest) -> Peer:
    return request.getfixturevalue(f"{request.param}_peer")  # type: ignore[no-any-return]


@pytest.fixture
def connect(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> Peer:
    """``skyvern_default`` pointing at the peer (no retry waits worth noticing)."""
    set_connection(monkeypatch, host=peer.base_url, password=peer.api_key, extra={"max_retries": 2})
    return peer
