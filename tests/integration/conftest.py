"""One ``dag.test()`` of ``dags/skyvern_integration.py`` against the in-process Skyvern emulator, per session.

``dag.test()`` needs a migrated metadata DB and the DAG file in the configured dags folder (an inline DAG
fails with "dag is not serialized"), so the fixtures migrate the suite's throwaway ``AIRFLOW_HOME`` (set by
``tests/conftest.py``) and copy the DAG there. The run takes about 10 s, so it happens once; the tests only
look at what it left: the DagRun, its task instances, their XComs, the emulator's runs and the log lines.

``dag.test()`` writes no task log files (nothing appears under ``$AIRFLOW_HOME/logs``): it runs tasks and
triggers in-process and logs to stdout, the tasks and triggers through structlog, its own ``[DAG TEST]``
lines through stdlib logging. :class:`LogRecorder` records both, so each task's share of that console log
(from ``[DAG TEST] starting task_id=X`` to ``[DAG TEST] end task task_id=X``) can be asserted on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog

from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS
from tests.conftest import _home as SUITE_AIRFLOW_HOME

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

ANY_START = "[DAG TEST] starting task_id="
TRIGGER_FIRED = "[DAG TEST] Trigger completed"
DAG_FILE = Path(__file__).parent / "dags" / "skyvern_integration.py"
DAG_ID = "skyvern_integration"
EMULATOR_RUN_SECONDS = 2.0
MIGRATE_TIMEOUT = 180


@dataclass(frozen=True)
class LogLine:
    logger: str
    message: str
    error: str | None = None
    """``"ExceptionType: message"`` when the line was logged with an exception."""


class LogRecorder(logging.Handler):
    """Every log line, in order: a stdlib handler and a structlog processor (placed before the renderer)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[LogLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        self.lines.append(LogLine(record.name, record.getMessage(), _describe(error)))

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        exc_info = event_dict.get("exc_info")
        if exc_info is True:
            error: BaseException | None = sys.exc_info()[1]
        elif isinstance(exc_info, tuple):
            error = exc_info[1]
        else:
            error = exc_info if isinstance(exc_info, BaseException) else None
        name = event_dict.get("logger") or getattr(logger, "name", None) or ""
        self.lines.append(LogLine(str(name), str(event_dict.get("event", "")), _describe(error)))
        return event_dict

    @contextmanager
    def recording(self) -> Iterator[LogRecorder]:
        processors = list(structlog.get_config()["processors"])
        structlog.configure(processors=[*processors[:-1], self, processors[-1]])
        root = logging.getLogger()
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)
            structlog.configure(processors=processors)

    def task_log(self, task_id: str) -> list[LogLine]:
        """The lines between dag.test()'s ``starting`` and ``end`` markers of the task (markers included).

        Airflow 3.0's dag.test() logs no ``end`` marker, and resumes a deferred task with a new ``starting``
        marker once its trigger fired (other tasks may run in between): there the task's log is each of its
        stretches from a ``starting`` marker to the next task's, and every stretch but the last must end
        with its trigger having fired.
        """
        start = f"[DAG TEST] starting task_id={task_id} "
        end = f"[DAG TEST] end task task_id={task_id} "
        starts = [i for i, line in enumerate(self.lines) if line.message.startswith(start)]
        if AIRFLOW_V_3_1_PLUS:
            assert len(starts) == 1, (
                f"{len(starts)} '{start.strip()}' lines: dag.test() ran {task_id} that often"
            )
            begin = starts[0]
            stop = next(
                (i for i in range(begin, len(self.lines)) if self.lines[i].message.startswith(end)), None
            )
            assert stop is not None, f"no '{end.strip()}' line after the task started"
            return self.lines[begin : stop + 1]
        assert starts, f"no '{start.strip()}' line: dag.test() never ran {task_id}"
        stretches = []
        for begin in starts:
            stop = next(
                (i for i in range(begin + 1, len(self.lines)) if self.lines[i].message.startswith(ANY_START)),
                len(self.lines),
            )
            stretches.append(self.lines[begin:stop])
        for stretch in stretches[:-1]:
            assert TRIGGER_FIRED in [line.message for line in stretch], (
                f"dag.test() started {task_id} again although its trigger had not fired: it ran that often"
            )
        return [line for stretch in stretches for line in stretch]


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class DagTestResult:
    dag_run: DagRun
    task_states: dict[str, str]
    xcoms: dict[str, dict[str, Any]]
    """task_id -> key -> value, every XCom of the run."""
    emulator: EmulatorServer
    logs: LogRecorder

    def skyvern_run(self, run_id: str) -> dict[str, Any]:
        """The run as Skyvern's API returns it now."""
        response = self.emulator.control.get(
            f"/v1/runs/{run_id}", headers={"x-api-key": self.emulator.api_key}
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def emulator_runs(self) -> list[dict[str, Any]]:
        """Every run the emulator created, oldest first, with its cancel-request count."""
        response = self.emulator.control.get("/_emulator/runs")
        response.raise_for_status()
        return response.json()["runs"]  # type: ignore[no-any-return]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadgroup`` (scripts/test.sh) the tests of one module here run on one
    worker: its module-scoped ``dag.test()`` runs happen once (a worker migrates its own DB once)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group(f"integration:{item.path.name}"))


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    """The suite's dags folder, holding only the integration DAG; refuses any AIRFLOW_HOME but the suite's."""
    home = Path(os.environ["AIRFLOW_HOME"]).resolve()
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).resolve()
    if home != Path(SUITE_AIRFLOW_HOME).resolve() or not folder.is_relative_to(home):
        pytest.skip(
            f"AIRFLOW_HOME={home} / DAGS_FOLDER={folder} come from the environment, not the suite's throwaway "
            "home: the dag.test() tests would migrate that DB and write into that dags folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DAG_FILE, folder / DAG_FILE.name)
    return folder


@pytest.fixture(scope="session")
def airflow_db(dags_folder: Path) -> None:
    """``airflow db migrate`` on the throwaway home's SQLite DB, in a subprocess with this process's env."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


@contextmanager
def dag_tested(
    dags_folder: Path, dag_file: Path, dag_id: str, *, stored_key: Callable[[str], str] = str
) -> Iterator[DagTestResult]:
    """Copies ``dag_file`` into the dags folder and runs its DAG once with ``dag.test()`` against a fresh
    emulator, which stays up (with the results) until the context ends. ``stored_key`` makes the API key as
    the connection stores it from the emulator's key (a trailing newline, say)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2: DagBag lived in airflow.models
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    shutil.copy(dag_file, dags_folder / dag_file.name)
    bag = DagBag(dag_folder=dags_folder / dag_file.name)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]

    with EmulatorServer(EmulatorSettings(run_seconds=EMULATOR_RUN_SECONDS)) as emulator:
        recorder = LogRecorder()
        # The connection only while the DAG runs: later unit tests expect skyvern_default to be theirs.
        with pytest.MonkeyPatch.context() as patch, recorder.recording():
            connection = {
                "conn_type": "skyvern",
                "host": emulator.base_url,
                "password": stored_key(emulator.api_key),
            }
            patch.setenv("AIRFLOW_CONN_SKYVERN_DEFAULT", json.dumps(connection))
            dag_run = dag.test()

        task_states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        xcoms: dict[str, dict[str, Any]] = {}
        with create_session() as session:
            rows = session.scalars(
                select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == dag_run.run_id)
            )
            for row in rows:
                xcoms.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
        yield DagTestResult(dag_run, task_states, xcoms, emulator, recorder)


@pytest.fixture(scope="session")
def dag_test(airflow_db: None, dags_folder: Path) -> Iterator[DagTestResult]:
    """Runs the whole integration DAG once with ``dag.test()``; the emulator stays up for the assertions."""
    with dag_tested(dags_folder, DAG_FILE, DAG_ID) as result:
        yield result
