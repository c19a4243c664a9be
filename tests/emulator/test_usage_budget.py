"""What a task instance's runs cost across its tries (XCom ``usage``), and ``max_steps_total`` (issue 20)."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY
from airflow_provider_skyvern.runs.usage import USAGE_KEY
from tests.conftest import set_connection
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("connected", "virtual_time")


@pytest.fixture
def connected(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=emulator.api_key, extra={"max_retries": 2})


def _operator(plan: str, **kwargs: Any) -> SkyvernRunTaskOperator:
    """A blocking task whose emulated run follows ``plan`` (``outcome=failed steps=45``)."""
    return SkyvernRunTaskOperator(
        task_id="extract",
        prompt=f"Extract the top 3 products [emulator {plan}]",
        url="https://example.com/",
        poll_interval=5,
        **{"deferrable": False, **kwargs},
    )


def _try(number: int, retries: int = 3) -> FakeTaskInstance:
    return FakeTaskInstance(try_number=number, max_tries=retries)


class WorkerLost(BaseException):
    """The try's process died (SIGKILL, a lost worker): nothing after this point runs."""


class DyingStore(FakeStateStore):
    """The task state store of a try whose process dies just before or just after one write: the first write
    of ``key`` with a value that ``names_run`` (the write that first records a run); later tries use the store
    as it was left."""

    def __init__(self, key: str, *, after: bool) -> None:
        super().__init__()
        self.key, self.after, self.armed = key, after, True

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        hit = self.armed and key == self.key and names_run(value)
        if hit and not self.after:
            self.armed = False
            raise WorkerLost(f"before writing {key}")
        super().set(key, value)
        if hit:
            self.armed = False
            raise WorkerLost(f"after writing {key}")


def names_run(value: Any) -> bool:
    """A submission record holding a run id, or a usage record holding a run."""
    return bool(value.get("run_id") or value.get("runs"))


def _posts(emulator: EmulatorServer) -> int:
    requests = emulator.control.get("/_emulator/requests").json()["requests"]
    return sum(1 for r in requests if r["method"] == "POST" and r["path"] == "/v1/run/tasks")


def test_usage_adds_up_every_run_of_every_try(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FakeStateStore()
    first = make_context(store, _try(1))
    with pytest.raises(SkyvernRunFailedError):
        _operator("outcome=failed steps=10").execute(first)
    assert first["ti"].xcoms["usage"] == {"steps": 10, "runs": 1, "tries": 1, "replayed_as_code": 0}

    second = make_context(store, _try(2))
    _operator("steps=12").execute(second)
    runs = emulator.control.get("/_emulator/runs").json()["runs"]
    assert len(runs) == _posts(emulator) == 2
    assert second["ti"].xcoms["usage"] == {"steps": 22, "runs": 2, "tries": 2, "replayed_as_code": 0}
    log = capsys.readouterr().out
    assert f"Skyvern cost: run {runs[0]['run_id']} took 10 steps" in log
    assert (
        f"Skyvern cost: run {runs[1]['run_id']} took 12 steps; this task instance: 22 steps over 2 runs in 2 tries"
        in log
    )


def test_a_retry_refuses_a_run_that_would_pass_max_steps_total(emulator: EmulatorServer) -> None:
    store = FakeStateStore()
    with pytest.raises(SkyvernRunFailedError):
        _operator("outcome=failed steps=45", max_steps_total=50).execute(make_context(store, _try(1)))
    (run,) = emulator.control.get("/_emulator/runs").json()["runs"]

    retry = make_context(store, _try(2))
    with pytest.raises(AirflowFailException) as raised:
        _operator("outcome=failed steps=45", max_steps_total=50).execute(retry)
    assert str(raised.value) == (
        f"max_steps_total=50: this task instance's runs already spent 45 steps ({run['run_id']}: 45), and another "
        "run may take 45 (the largest run of this task so far); not starting one. Raise max_steps_total, or "
        "clear the task to count afresh"
    )
    assert _posts(emulator) == 1


def test_max_steps_bounds_what_the_next_run_may_take(emulator: EmulatorServer) -> None:
    store = FakeStateStore()
    with pytest.raises(SkyvernRunFailedError):
        _operator("outcome=failed steps=20", max_steps=25, max_steps_total=50).execute(
            make_context(store, _try(1))
        )
    with pytest.raises(
        AirflowFailException, match=r"spent 20 steps .*another run may take 31 \(its max_steps\)"
    ):
        _operator("outcome=failed steps=20", max_steps=31, max_steps_total=50).execute(
            make_context(store, _try(2))
        )
    with pytest.raises(SkyvernRunFailedError):  # 20 + 30 fit in 50: it runs (and fails again)
        _operator("outcome=failed steps=20", max_steps=30, max_steps_total=50).execute(
            make_context(store, _try(3))
        )
    assert _posts(emulator) == 2


def test_under_the_budget_the_retry_runs(emulator: EmulatorServer) -> None:
    store = FakeStateStore()
    with pytest.raises(SkyvernRunFailedError):
        _operator("outcome=failed steps=20", max_steps_total=50).execute(make_context(store, _try(1)))
    _operator("steps=20", max_steps_total=50).execute(make_context(store, _try(2)))
    assert _posts(emulator) == 2


def test_a_run_whose_try_died_before_it_ended_is_counted_by_reading_it(
    emulator: EmulatorServer, virtual_time: Any
) -> None:
    """Try 1 deferred and its worker was lost; its run went on and failed. Try 2 reads what it spent."""
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        _operator("outcome=failed steps=45", max_steps_total=50, deferrable=True).execute(
            make_context(store, _try(1))
        )
    (run,) = emulator.control.get("/_emulator/runs").json()["runs"]
    virtual_time.advance(60)  # the run ends, failed, with nobody waiting
    with pytest.raises(AirflowFailException, match=rf"already spent 45 steps \({run['run_id']}: 45\)"):
        _operator("outcome=failed steps=45", max_steps_total=50).execute(make_context(store, _try(2)))
    assert _posts(emulator) == 1


DEATHS = {
    "after the submission records the run": (STATE_KEY, True),
    "before the submission records the run (as if its answer was lost)": (STATE_KEY, False),
    "before the usage records the run": (USAGE_KEY, False),
    "after the usage records the run": (USAGE_KEY, True),
}
"""Where try 1 dies once its POST created a run, by the task state store's writes: whichever order the
submission record and the usage record learn of the run in, a death between them must not lose it."""


@pytest.mark.parametrize("death", list(DEATHS))
def test_a_run_whose_try_died_as_it_started_is_counted_though_no_try_adopts_it(
    emulator: EmulatorServer, virtual_time: Any, death: str
) -> None:
    """Try 1 POSTs and its worker is lost as the run's id is being recorded; the run goes on and fails, so
    try 2 does not adopt it: the 45 steps it spent still count toward max_steps_total."""
    key, after = DEATHS[death]
    store = DyingStore(key, after=after)
    with pytest.raises(WorkerLost):
        _operator("outcome=failed steps=45", max_steps_total=50).execute(make_context(store, _try(1)))
    (run,) = emulator.control.get("/_emulator/runs").json()["runs"]
    virtual_time.advance(300)  # retry_delay: the run ended, failed, with nobody waiting

    with pytest.raises(AirflowFailException) as raised:
        _operator("outcome=failed steps=45", max_steps_total=50).execute(make_context(store, _try(2)))
    assert str(raised.value).startswith(
        f"max_steps_total=50: this task instance's runs already spent 45 steps ({run['run_id']}: 45), and "
        "another run may take 45"
    )
    assert _posts(emulator) == 1
    assert list(store.values[USAGE_KEY]["runs"]) == [run["run_id"]]


@pytest.mark.parametrize("death", list(DEATHS))
def test_the_usage_xcom_counts_the_run_of_a_try_that_died_as_it_started(
    emulator: EmulatorServer, virtual_time: Any, death: str
) -> None:
    key, after = DEATHS[death]
    store = DyingStore(key, after=after)
    with pytest.raises(WorkerLost):
        _operator("outcome=failed steps=45").execute(make_context(store, _try(1)))
    virtual_time.advance(300)

    second = make_context(store, _try(2))
    _operator("steps=12", max_steps_total=100).execute(second)
    first, then = emulator.control.get("/_emulator/runs").json()["runs"]
    assert (first["status"], then["status"]) == ("failed", "completed")
    assert second["ti"].xcoms["usage"] == {"steps": 57, "runs": 2, "tries": 2, "replayed_as_code": 0}
    assert store.values[USAGE_KEY]["runs"][first["run_id"]]["try_number"] == 1


def test_the_run_of_a_try_that_died_counts_when_the_dag_was_edited_before_the_retry(
    emulator: EmulatorServer, virtual_time: Any
) -> None:
    """The retry asks something else (the DAG changed), so the earlier run is not its to adopt; it is this
    task instance's (same clear generation), and what it spent counts."""
    store = DyingStore(STATE_KEY, after=True)
    with pytest.raises(WorkerLost):
        _operator("outcome=failed steps=45").execute(make_context(store, _try(1)))
    (run,) = emulator.control.get("/_emulator/runs").json()["runs"]
    virtual_time.advance(300)
    with pytest.raises(AirflowFailException, match=rf"already spent 45 steps \({run['run_id']}: 45\)"):
        _operator("outcome=failed steps=40", max_steps_total=50).execute(make_context(store, _try(2)))
    assert _posts(emulator) == 1


def test_a_clear_counts_afresh(emulator: EmulatorServer) -> None:
    store = FakeStateStore()
    with pytest.raises(SkyvernRunFailedError):
        _operator("outcome=failed steps=45", max_steps_total=50).execute(
            make_context(store, _try(1, retries=0))
        )
    cleared = make_context(store, _try(2, retries=1))  # a clear raises max_tries: a new generation
    with pytest.raises(SkyvernRunFailedError):  # not refused: the budget counts this generation's runs only
        _operator("outcome=failed steps=45", max_steps_total=50).execute(cleared)
    assert cleared["ti"].xcoms["usage"] == {"steps": 45, "runs": 1, "tries": 1, "replayed_as_code": 0}
    assert _posts(emulator) == 2


@pytest.mark.parametrize("value", [0, -1, 2.5, "many"])
def test_a_bad_max_steps_total_fails_the_dag_parse_naming_it(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^SkyvernRunTaskOperator\(task_id='extract'\) max_steps_total: "):
        _operator("steps=1", max_steps_total=value)
