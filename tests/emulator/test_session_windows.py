"""A browser session is opened once per setup task instance, whatever dies when (issue 17 row 6): the
create's answer lost, the try dying after it, a retry. Against the emulator over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.browser_session import (
    SkyvernCloseBrowserSessionOperator,
    SkyvernCreateBrowserSessionOperator,
)
from tests.emulator.conftest import FakeClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("hook")


def _sessions(emulator: EmulatorServer) -> list[dict[str, Any]]:
    """Every session opened, closed or not (Skyvern's own list shows the open ones only)."""
    return list(emulator.control.get("/_emulator/sessions").json()["sessions"])


def _lose_the_next_create_answer(emulator: EmulatorServer) -> None:
    rule = {"method": "POST", "path": "/v1/browser_sessions", "reset": True, "after_create": True, "times": 1}
    emulator.control.post("/_emulator/faults", json=[rule]).raise_for_status()


def _open(store: FakeStateStore, try_number: int) -> str:
    operator = SkyvernCreateBrowserSessionOperator(task_id="open", session_timeout=30)
    return str(operator.execute(make_context(store, FakeTaskInstance(try_number=try_number))))


def test_a_retry_after_a_lost_create_answer_reuses_the_session_and_the_teardown_closes_it(
    emulator: EmulatorServer,
) -> None:
    """Row 6: the retry opened a second session and the teardown closed only that one; the first billed until
    its timeout (up to 240 minutes)."""
    store = FakeStateStore()
    _lose_the_next_create_answer(emulator)
    with pytest.raises(SkyvernError, match="could not tell whether a Skyvern browser session was created"):
        _open(store, 1)
    reused = _open(store, 2)
    (opened,) = _sessions(emulator)
    assert opened["browser_session_id"] == reused
    SkyvernCloseBrowserSessionOperator(task_id="close", browser_session_id=reused).execute(make_context())
    assert [s["status"] for s in _sessions(emulator)] == ["completed"]


@pytest.mark.parametrize("server_behind", [60.0, -300.0])
def test_a_retry_after_a_lost_create_answer_reuses_the_session_whatever_skyverns_clock_says(
    emulator: EmulatorServer, clock: FakeClock, server_behind: float
) -> None:
    """Skyvern's ``created_at`` was compared with this worker's clock give or take 5 s: with the server's clock
    minutes off, the retry saw no candidate and said "could not tell" until the window passed, then opened a
    second session. The difference is measured from the ``Date`` header, as for runs."""
    clock.now -= server_behind
    store = FakeStateStore()
    _lose_the_next_create_answer(emulator)
    with pytest.raises(SkyvernError, match="could not tell whether a Skyvern browser session was created"):
        _open(store, 1)
    reused = _open(store, 2)
    (opened,) = _sessions(emulator)
    assert opened["browser_session_id"] == reused


def test_a_retry_after_the_try_died_with_the_session_open_reuses_it(emulator: EmulatorServer) -> None:
    """The answer came, then the try died (its XCom push failed, the worker was lost): same session."""
    store = FakeStateStore()
    first = _open(store, 1)
    assert _open(store, 2) == first
    assert len(_sessions(emulator)) == 1


def test_a_retry_opens_no_second_session_when_it_cannot_tell_which_is_its_own(
    emulator: EmulatorServer,
) -> None:
    store = FakeStateStore()
    _lose_the_next_create_answer(emulator)
    with pytest.raises(SkyvernError):
        _open(store, 1)
    other = SkyvernCreateBrowserSessionOperator(task_id="someone_else", session_timeout=30)
    other.execute(make_context())  # another task opened one meanwhile, with the same timeout
    with pytest.raises(
        SkyvernError, match=r"2 sessions were opened while it was in flight .*not opening another"
    ):
        _open(store, 2)
    assert len(_sessions(emulator)) == 2


def test_a_session_of_an_earlier_try_that_was_closed_is_not_reused(emulator: EmulatorServer) -> None:
    store = FakeStateStore()
    first = _open(store, 1)
    SkyvernCloseBrowserSessionOperator(task_id="close", browser_session_id=first).execute(make_context())
    second = _open(store, 2)
    assert second != first
    assert len(_sessions(emulator)) == 2
