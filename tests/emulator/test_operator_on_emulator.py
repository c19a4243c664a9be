"""The operator against the emulator, tries played one after another: one paid run per task instance.

Each scenario runs for both engine families (skyvern-2.0 drops the title, skyvern-1.0 keeps it) and,
where it matters, with a task state store (Airflow 3.3+) and without one (Airflow < 3.3).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY
from tests.emulator.conftest import RUN_SECONDS, FakeClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("hook")
ENGINES = ["skyvern_v2", "skyvern_v1"]


def _operator(engine: str = "skyvern_v2", **kwargs: Any) -> SkyvernRunTaskOperator:
    kwargs.setdefault("prompt", "Extract the top 3 products")
    kwargs.setdefault("url", "https://example.com/products")
    kwargs.setdefault("deferrable", True)
    return SkyvernRunTaskOperator(task_id="extract", engine=engine, **kwargs)


def _runs(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return list(emulator.control.get("/_emulator/runs").json()["runs"])


def _fault(emulator: EmulatorServer, **rule: Any) -> None:
    emulator.control.post("/_emulator/faults", json=[rule]).raise_for_status()


def _deferred_run_id(operator: SkyvernRunTaskOperator, context: dict[str, Any]) -> str:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    return str(deferred.value.trigger.run_id)  # type: ignore[attr-defined]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("store", [FakeStateStore, None], ids=["airflow-3.3", "airflow-3.0"])
def test_a_lost_answer_to_the_post_makes_one_run(emulator: EmulatorServer, engine: str, store: Any) -> None:
    """The run is created, then the connection drops before the answer: the run is found, not resent."""
    _fault(emulator, method="POST", path="/v1/run/tasks", reset=True, after_create=True, times=1)
    context = make_context(store() if store else None)

    run_id = _deferred_run_id(_operator(engine), context)

    (run,) = _runs(emulator)
    assert run_id == run["run_id"] == context["ti"].xcoms["run_id"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_retry_after_the_worker_died_reattaches(
    emulator: EmulatorServer, clock: FakeClock, engine: str
) -> None:
    store = FakeStateStore()
    first = _deferred_run_id(_operator(engine), make_context(store))  # then the worker dies
    clock.advance(RUN_SECONDS / 2)

    second = _deferred_run_id(_operator(engine), make_context(store, FakeTaskInstance(try_number=2)))

    (run,) = _runs(emulator)
    assert first == second == run["run_id"]
    assert run["status"] == "running"


def test_without_a_state_store_a_v1_run_is_found_by_its_tag_and_a_v2_run_is_not(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    """Airflow < 3.3: skyvern-2.0 keeps no title to find; documented in the README."""
    for engine in ENGINES:
        _deferred_run_id(_operator(engine), make_context())
        clock.advance(RUN_SECONDS / 2)
        _deferred_run_id(_operator(engine), make_context(ti=FakeTaskInstance(try_number=2)))
    assert [run["run_type"] for run in _runs(emulator)] == ["task_v2", "task_v2", "task_v1"]


def test_a_retry_takes_the_result_of_a_completed_run(emulator: EmulatorServer, clock: FakeClock) -> None:
    store = FakeStateStore()
    _deferred_run_id(_operator(), make_context(store))
    clock.advance(RUN_SECONDS)

    context = make_context(store)
    output = _operator().execute(context)

    (run,) = _runs(emulator)
    body = emulator.control.get(f"/v1/runs/{run['run_id']}", headers={"x-api-key": emulator.api_key}).json()
    assert output == body["output"]
    assert context["ti"].xcoms["status"] == "completed"
    assert (store.values[STATE_KEY]["phase"], store.values[STATE_KEY]["ended_status"]) == (
        "ended",
        "completed",
    )


def test_a_retry_after_a_failed_run_starts_a_fresh_one(emulator: EmulatorServer, clock: FakeClock) -> None:
    store = FakeStateStore()
    failing = _operator(prompt="Buy [emulator outcome=failed]", url=None)
    _deferred_run_id(failing, make_context(store))
    clock.advance(RUN_SECONDS)
    _deferred_run_id(failing, make_context(store))
    assert [run["status"] for run in _runs(emulator)] == ["failed", "queued"]


@pytest.mark.parametrize("engine", ENGINES)
def test_an_unreadable_remembered_run_fails_the_try_and_starts_nothing(
    emulator: EmulatorServer, engine: str
) -> None:
    store = FakeStateStore()
    first = _deferred_run_id(_operator(engine), make_context(store, FakeTaskInstance(max_tries=3)))
    _fault(emulator, method="GET", path=f"/v1/runs/{first}", status=503)

    with pytest.raises(SkyvernError, match=rf"^Could not read Skyvern run {first} started by an earlier try"):
        _operator(engine).execute(make_context(store, FakeTaskInstance(try_number=2, max_tries=3)))

    assert len(_runs(emulator)) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_a_clear_while_deferred_cancels_the_old_run_and_starts_a_new_one(
    emulator: EmulatorServer, clock: FakeClock, engine: str
) -> None:
    store = FakeStateStore()
    first = _deferred_run_id(_operator(engine), make_context(store))
    clock.advance(RUN_SECONDS / 2)

    cleared = make_context(store, FakeTaskInstance(try_number=2, max_tries=1))  # a clear raises max_tries
    second = _deferred_run_id(_operator(engine), cleared)

    old, new = _runs(emulator)
    assert (old["run_id"], new["run_id"]) == (first, second)
    assert (old["status"], old["cancel_requests"]) == ("canceled", 1)
    assert new["status"] in ("created", "queued")


@pytest.mark.parametrize("engine", ENGINES)
def test_an_edited_prompt_then_a_clear_never_adopts_the_old_run(
    emulator: EmulatorServer, clock: FakeClock, engine: str
) -> None:
    store = FakeStateStore()
    _deferred_run_id(_operator(engine), make_context(store))
    clock.advance(RUN_SECONDS / 2)

    _deferred_run_id(_operator(engine, prompt="Extract the top 5 products"), make_context(store))

    old, new = _runs(emulator)
    assert old["status"] == "canceled"
    assert new["request"]["prompt"] == "Extract the top 5 products"


@pytest.mark.parametrize("engine", ENGINES)
def test_fire_and_forget_then_a_clear_starts_a_new_run_and_leaves_the_old_one(
    emulator: EmulatorServer, engine: str
) -> None:
    store = FakeStateStore()
    first = _operator(engine, wait_for_completion=False).execute(make_context(store))
    cleared = make_context(store, FakeTaskInstance(try_number=2, max_tries=1))
    second = _operator(engine, wait_for_completion=False).execute(cleared)

    old, new = _runs(emulator)
    assert (old["run_id"], new["run_id"]) == (first, second)
    assert old["cancel_requests"] == 0


def test_a_permanent_poll_error_with_retries_left_keeps_the_run_for_the_next_try(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    """403 mid-run (a rotated key): the next try, with the key fixed, reattaches."""
    store = FakeStateStore()
    ti = FakeTaskInstance(max_tries=2)
    _fault(emulator, method="GET", path="/v1/runs/tsk_*", status=403, times=1)
    with pytest.raises(SkyvernRunFailedError, match=r"the next try reattaches to it$"):
        _operator(deferrable=False, poll_interval=0.01).execute(make_context(store, ti))

    clock.advance(RUN_SECONDS)
    output = _operator(deferrable=False, poll_interval=0.01).execute(
        make_context(store, FakeTaskInstance(max_tries=2, try_number=2))
    )

    (run,) = _runs(emulator)
    assert (run["status"], run["cancel_requests"]) == ("completed", 0)
    assert output is not None


def test_a_run_that_appears_late_is_adopted_by_a_later_try(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A v1 run without url: Skyvern asks the LLM inside the POST, so the row exists after the client gave up."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SKYVERN_DEFAULT",
        f'{{"conn_type": "skyvern", "host": "{emulator.base_url}", "password": "{emulator.api_key}", '
        '"extra": {"request_timeout": 0.5, "max_retries": 0}}',
    )
    store = FakeStateStore()
    slow = _operator(
        "skyvern_v1",
        prompt="Find the price at https://shop.example.com [emulator create_seconds=1.5]",
        url=None,
    )

    with pytest.raises(SkyvernError, match="could not tell whether a Skyvern run was created"):
        slow.execute(make_context(store, FakeTaskInstance(max_tries=3)))
    assert store.values[STATE_KEY]["run_id"] is None
    _wait_for_runs(emulator, 1)

    adopted = _deferred_run_id(slow, make_context(store, FakeTaskInstance(try_number=2, max_tries=3)))

    (run,) = _runs(emulator)
    assert adopted == run["run_id"]


def _wait_for_runs(emulator: EmulatorServer, count: int) -> None:
    for _ in range(100):
        if len(_runs(emulator)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the emulator never listed {count} run(s)")


def test_blocking_timeout_cancels_the_run_on_the_emulator(emulator: EmulatorServer) -> None:
    operator = _operator(
        prompt="Forever [emulator outcome=slow]", deferrable=False, timeout=0.3, poll_interval=0.1
    )
    with pytest.raises(
        SkyvernRunFailedError, match=r"did not finish within timeout=0\.3s .*; it was canceled$"
    ):
        operator.execute(make_context())

    (run,) = _runs(emulator)
    assert (run["status"], run["cancel_requests"]) == ("canceled", 1)


# ---- Airflow < 3.3: no task state store, so later tries know only what Skyvern lists -----------------


@pytest.mark.parametrize("engine", ENGINES)
def test_without_a_store_a_clear_while_deferred_starts_a_new_run_and_adopts_nothing(
    emulator: EmulatorServer, clock: FakeClock, engine: str
) -> None:
    """The old run is the cancelled trigger's to cancel (tests/test_trigger.py); the new try's tag differs."""
    first = _deferred_run_id(_operator(engine), make_context())
    clock.advance(RUN_SECONDS / 2)

    second = _deferred_run_id(_operator(engine), make_context(ti=FakeTaskInstance(try_number=2, max_tries=1)))

    assert first != second
    assert [run["run_id"] for run in _runs(emulator)] == [first, second]


@pytest.mark.parametrize("engine", ENGINES)
def test_without_a_store_fire_and_forget_then_a_clear_starts_a_new_run(
    emulator: EmulatorServer, engine: str
) -> None:
    first = _operator(engine, wait_for_completion=False).execute(make_context())
    second = _operator(engine, wait_for_completion=False).execute(
        make_context(ti=FakeTaskInstance(try_number=2, max_tries=1))
    )
    old, new = _runs(emulator)
    assert (old["run_id"], new["run_id"]) == (first, second)
    assert old["cancel_requests"] == 0


def test_without_a_store_an_edited_request_cancels_the_old_v1_run(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    _deferred_run_id(_operator("skyvern_v1"), make_context())
    clock.advance(RUN_SECONDS / 2)

    _deferred_run_id(_operator("skyvern_v1", prompt="Extract the top 5 products"), make_context())

    old, new = _runs(emulator)
    assert (old["status"], old["cancel_requests"]) == ("canceled", 1)
    assert new["request"]["prompt"] == "Extract the top 5 products"


@pytest.mark.parametrize(
    ("engine", "message", "runs", "cancels"),
    [
        ("skyvern_v1", "the next try reattaches to it", 1, [0]),
        ("skyvern_v2", "it was canceled", 2, [1, 0]),  # no title to find it by: not left going for nobody
    ],
)
def test_without_a_store_a_permanent_poll_error_then_a_retry(
    emulator: EmulatorServer, clock: FakeClock, engine: str, message: str, runs: int, cancels: list[int]
) -> None:
    """skyvern-1.0 is found again by its tag; skyvern-2.0 cannot be, so it is canceled, not orphaned."""
    _fault(emulator, method="GET", path="/v1/runs/tsk_*", status=403, times=1)
    with pytest.raises(SkyvernRunFailedError, match=rf"{message}$"):
        _operator(engine, deferrable=False, poll_interval=0.01).execute(
            make_context(ti=FakeTaskInstance(max_tries=2))
        )

    clock.advance(RUN_SECONDS / 2)
    _deferred_run_id(_operator(engine), make_context(ti=FakeTaskInstance(max_tries=2, try_number=2)))

    assert len(_runs(emulator)) == runs
    assert [run["cancel_requests"] for run in _runs(emulator)] == cancels
