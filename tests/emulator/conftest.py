"""An in-process emulator on a fake clock, and a SkyvernHook connected to it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from tests.conftest import FastClock, set_connection

RUN_SECONDS = 10.0


class FakeClock:
    """Emulated time: runs advance only when a test says so."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now  # near the wall clock: the provider compares both

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[EmulatorServer]:
    with EmulatorServer(
        EmulatorSettings(api_key="emu-SECRET-key", run_seconds=RUN_SECONDS, clock=clock)
    ) as server:
        yield server


@pytest.fixture
def hook(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SkyvernHook]:
    set_connection(monkeypatch, host=emulator.base_url, password=emulator.api_key, extra={"max_retries": 3})
    FastClock(monkeypatch)
    with SkyvernHook() as skyvern_hook:
        yield skyvern_hook


@pytest.fixture
def virtual_time(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The provider reads and sleeps on the emulator's clock: a wait of minutes takes no time."""
    from airflow_provider_skyvern.hooks.clock import Clock

    async def asleep(_: Clock, seconds: float) -> None:
        clock.advance(max(seconds, 0.0))

    monkeypatch.setattr(Clock, "time", lambda _: clock.now)
    monkeypatch.setattr(Clock, "sleep", lambda _, seconds: clock.advance(max(seconds, 0.0)))
    monkeypatch.setattr(Clock, "asleep", asleep)
    return clock
