"""The windows where the task is killed or the user acts while a paid run is being started or waited for,
each against the emulator over real HTTP (issue 17 rows 5, 7 and 10).

A kill is delivered as Airflow 3 delivers it: SIGTERM to the task's process, whose handler (in the main
thread, wherever it is blocked) calls ``on_kill`` and returns; the supervisor sends SIGKILL 5 s later.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.claim import KilledWhileStarting
from airflow_provider_skyvern.runs.ledger import STATE_KEY
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("hook")


def _operator(**kwargs: Any) -> SkyvernRunTaskOperator:
    kwargs.setdefault("prompt", "Extract the top 3 products")
    kwargs.setdefault("url", "https://example.com/products")
    kwargs.setdefault("deferrable", True)
    return SkyvernRunTaskOperator(task_id="extract", **kwargs)


def _runs(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return list(emulator.control.get("/_emulator/runs").json()["runs"])


def _slow_posts(emulator: EmulatorServer, seconds: float) -> None:
    rule = {"method": "POST", "path": "/v1/run/tasks", "latency": seconds}
    emulator.control.post("/_emulator/faults", json=[rule]).raise_for_status()


@pytest.fixture
def sigterm_calls_on_kill() -> Iterator[Any]:
    """Installs Airflow's SIGTERM handler for an operator; returns ``kill_after(op, seconds)``."""
    previous = signal.getsignal(signal.SIGTERM)
    timers: list[threading.Timer] = []

    def kill_after(operator: SkyvernRunTaskOperator, seconds: float) -> None:
        signal.signal(signal.SIGTERM, lambda *_: operator.on_kill())
        timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
        timers.append(timer)
        timer.start()

    yield kill_after
    for timer in timers:
        timer.cancel()
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(
    ("post_seconds", "answered"),
    [(1.5, "within on_kill's wait"), (4.0, "after on_kill gave up waiting")],
)
def test_a_kill_while_the_post_is_in_flight_cancels_the_run_it_creates(
    emulator: EmulatorServer,
    sigterm_calls_on_kill: Any,
    capsys: pytest.CaptureFixture[str],
    post_seconds: float,
    answered: str,
) -> None:
    """Row 5: ``on_kill`` used to see no run id yet and cancel nothing; the POST then returned a run nobody
    waited for. A v1 run without url asks the LLM inside the POST, which takes seconds."""
    _slow_posts(emulator, post_seconds)
    operator = _operator()
    sigterm_calls_on_kill(operator, 0.3)
    with pytest.raises(
        KilledWhileStarting, match=r"^The task was killed while starting Skyvern run \S+, which was canceled$"
    ):
        operator.execute(make_context(FakeStateStore()))
    (run,) = _runs(emulator)
    assert run["cancel_requests"] == 1
    logged = capsys.readouterr().out
    assert f"Task killed: canceling Skyvern run {run['run_id']}" in logged
    if post_seconds > 3:
        assert "Task killed while the POST starting its Skyvern run was in flight" in logged


def test_a_kill_before_anything_was_posted_cancels_nothing(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _operator().on_kill()
    assert _runs(emulator) == []
    assert "canceling" not in capsys.readouterr().out


def test_a_clear_with_reattach_false_cancels_the_run_the_old_try_waited_for(emulator: EmulatorServer) -> None:
    """Row 10: on Postgres + 2 triggerers the old trigger's on_kill reads the task instance as deferred (the
    new try's deferral) and takes it for a move: both runs went on, both paid. The new try now cancels the
    run of the earlier try, which nobody waits for any more."""
    store = FakeStateStore()
    with pytest.raises(TaskDeferred) as first:
        _operator(reattach=False).execute(make_context(store))
    cleared = make_context(store, FakeTaskInstance(try_number=2, max_tries=1))
    with pytest.raises(TaskDeferred) as second:
        _operator(reattach=False).execute(cleared)
    old, new = _runs(emulator)
    assert (old["run_id"], new["run_id"]) == (first.value.trigger.run_id, second.value.trigger.run_id)
    assert (old["status"], old["cancel_requests"]) == ("canceled", 1)
    assert new["cancel_requests"] == 0


def test_reattach_false_with_cancel_on_kill_false_leaves_the_earlier_run_going(
    emulator: EmulatorServer,
) -> None:
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        _operator(reattach=False, cancel_on_kill=False).execute(make_context(store))
    with pytest.raises(TaskDeferred):
        _operator(reattach=False, cancel_on_kill=False).execute(
            make_context(store, FakeTaskInstance(try_number=2))
        )
    assert [run["cancel_requests"] for run in _runs(emulator)] == [0, 0]


def _gone_record(store: FakeStateStore) -> None:
    """A record naming a run this server does not know (another organisation, a reset database)."""
    store.values[STATE_KEY] = {**store.values[STATE_KEY], "run_id": "tsk_v2_999999999999999999"}


def test_a_recorded_run_the_server_does_not_know_fails_a_retry_saying_how_to_get_out(
    emulator: EmulatorServer,
) -> None:
    """Row 7: every try used to fail "not starting another run while that is unknown", also after a
    clear; the only way out was deleting the state-store key by hand, which no message said."""
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        _operator().execute(make_context(store, FakeTaskInstance(max_tries=2)))
    _gone_record(store)
    with pytest.raises(SkyvernError) as raised:
        _operator().execute(make_context(store, FakeTaskInstance(try_number=2, max_tries=2)))
    assert str(raised.value).startswith(
        f"Skyvern run tsk_v2_999999999999999999 started by an earlier try is not found at {emulator.base_url} ("
    )
    assert str(raised.value).endswith(
        "point the connection back to let the next try reattach, or clear the task to start a new run"
    )
    assert len(_runs(emulator)) == 1


def test_after_a_clear_a_recorded_run_the_server_does_not_know_is_forgotten(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        _operator().execute(make_context(store))
    _gone_record(store)
    with pytest.raises(TaskDeferred) as deferred:
        _operator().execute(make_context(store, FakeTaskInstance(try_number=2, max_tries=1)))
    assert len(_runs(emulator)) == 2
    assert store.values[STATE_KEY]["run_id"] == deferred.value.trigger.run_id
    assert "recorded before the task was cleared is not found" in capsys.readouterr().out


def test_the_last_try_cancels_a_recorded_run_it_cannot_read_and_says_no_retry_follows(
    emulator: EmulatorServer,
) -> None:
    """Found by the simulator's fault search: every read of the recorded run failing on the last try left the
    run going, and the message promised a next try that would never come."""
    store = FakeStateStore()
    with pytest.raises(TaskDeferred) as first:
        _operator().execute(make_context(store, FakeTaskInstance(try_number=1, max_tries=1)))
    rule = {"method": "GET", "path": "/v1/runs/*", "status": 500}
    emulator.control.post("/_emulator/faults", json=[rule]).raise_for_status()
    with pytest.raises(AirflowFailException) as raised:
        _operator().execute(make_context(store, FakeTaskInstance(try_number=2, max_tries=1)))
    emulator.control.delete("/_emulator/faults").raise_for_status()
    run_id = first.value.trigger.run_id
    message = str(raised.value)
    assert message.startswith(f"Could not read Skyvern run {run_id} started by an earlier try (")
    assert "the next try" not in message
    assert message.endswith(f"(nobody will wait for run {run_id}: it was canceled)")
    assert [(r["run_id"], r["cancel_requests"]) for r in _runs(emulator)] == [(run_id, 1)]


def test_before_airflow_3_3_the_last_try_cancels_its_tagged_run_it_cannot_read(
    emulator: EmulatorServer,
) -> None:
    """Found by the fault search: no state store, a skyvern-1.0 run found by its tag but never readable: every
    try failed "looking for it failed" and the last one left the run going."""
    with pytest.raises(TaskDeferred) as first:
        _operator(engine="skyvern_v1").execute(make_context(None, FakeTaskInstance(max_tries=1)))
    rule = {"method": "GET", "path": "/v1/runs/*", "status": 500}
    emulator.control.post("/_emulator/faults", json=[rule]).raise_for_status()
    with pytest.raises(AirflowFailException) as raised:
        _operator(engine="skyvern_v1").execute(
            make_context(None, FakeTaskInstance(try_number=2, max_tries=1))
        )
    emulator.control.delete("/_emulator/faults").raise_for_status()
    run_id = first.value.trigger.run_id
    assert str(raised.value).startswith(f"Could not read Skyvern run {run_id}, found by this task's tag (")
    assert str(raised.value).endswith(f"(nobody will wait for run {run_id}: it was canceled)")
    assert [(r["run_id"], r["cancel_requests"]) for r in _runs(emulator)] == [(run_id, 1)]
