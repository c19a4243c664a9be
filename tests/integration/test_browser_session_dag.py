"""Browser sessions as setup/teardown through a real ``dag.test()`` against the emulator: a middle task fails
and the teardown still closes the session; the login/download example DAG runs end to end."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import DagTestResult, dag_tested

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
]

SESSION_DAG = Path(__file__).parent / "dags" / "skyvern_browser_session.py"
EXAMPLE_DAG = Path(__file__).parents[2] / "example_dags" / "skyvern_login_download.py"
CLOSE_LOGGER = "airflow.task.operators.airflow_provider_skyvern.operators.browser_session.SkyvernCloseBrowserSessionOperator"


@pytest.fixture(scope="module")
def failing_middle(airflow_db: None, dags_folder: Path) -> Iterator[DagTestResult]:
    with dag_tested(dags_folder, SESSION_DAG, "skyvern_browser_session") as result:
        yield result


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archive")


@pytest.fixture(scope="module")
def example(airflow_db: None, dags_folder: Path, archive: Path) -> Iterator[DagTestResult]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKYVERN_EXAMPLE_ARCHIVE", f"file://{archive}")  # read when the DAG file is parsed
        with dag_tested(dags_folder, EXAMPLE_DAG, "skyvern_login_download") as result:
            yield result


def emulated_session(result: DagTestResult, session_id: str) -> dict[str, Any]:
    response = result.emulator.control.get(
        f"/v1/browser_sessions/{session_id}", headers={"x-api-key": result.emulator.api_key}
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def test_a_failing_middle_task_still_gets_the_session_closed(failing_middle: DagTestResult) -> None:
    session_id = failing_middle.xcoms["portal_create"]["browser_session_id"]
    final = emulated_session(failing_middle, session_id)
    close_log = [line.message for line in failing_middle.logs.task_log("portal_close")]
    print(f"\nteardown log: {[m for m in close_log if 'browser session' in m]}\nfinal session: {final}")

    assert str(failing_middle.dag_run.state) == "failed"  # the teardown's success does not hide the failure
    assert failing_middle.task_states == {
        "portal_create": "success",
        "log_in": "success",
        "use_session": "failed",
        "portal_close": "success",
    }
    assert session_id.startswith("pbs_")
    assert final["status"] == "completed"
    assert final["completed_at"] is not None
    assert f"Closed Skyvern browser session {session_id} (completed)" in close_log
    closes = [
        r
        for r in failing_middle.emulator.control.get("/_emulator/requests").json()["requests"]
        if r["path"].endswith("/close")
    ]
    assert closes == [
        {**closes[0], "method": "POST", "path": f"/v1/browser_sessions/{session_id}/close", "status": 200}
    ]


def test_the_login_ran_in_the_session_and_the_failing_task_got_its_id(failing_middle: DagTestResult) -> None:
    session_id = failing_middle.xcoms["portal_create"]["browser_session_id"]
    login = failing_middle.skyvern_run(failing_middle.xcoms["log_in"]["run_id"])
    failure = [line.error for line in failing_middle.logs.task_log("use_session") if line.error]

    assert login["run_request"]["browser_session_id"] == session_id
    assert login["status"] == "completed"
    assert failing_middle.xcoms["log_in"]["browser_session_id"] == session_id
    assert any(f"the middle task fails while session {session_id} is open" in (e or "") for e in failure)


def test_the_example_dag_logs_in_downloads_and_closes_its_session(
    example: DagTestResult, archive: Path
) -> None:
    session_id = example.xcoms["portal_session_create"]["browser_session_id"]
    runs = {r["run_id"]: r for r in example.emulator_runs()}
    login = example.skyvern_run(example.xcoms["log_in"]["run_id"])
    download = example.skyvern_run(example.xcoms["download_invoices"]["run_id"])

    assert str(example.dag_run.state) == "success"
    assert set(example.task_states.values()) == {"success"}
    assert len(runs) == 2  # one login, one download: nothing started twice
    assert login["run_request"]["title"] == "Login"
    assert download["run_request"]["title"] == "File Download"
    assert (
        login["run_request"]["browser_session_id"]
        == download["run_request"]["browser_session_id"]
        == session_id
    )
    assert emulated_session(example, session_id)["status"] == "completed"

    files = example.xcoms["download_invoices"]["downloaded_files"]
    assert (
        [f["filename"] for f in files]
        == [f["filename"] for f in download["downloaded_files"]]
        == ["invoice.pdf"]
    )
    manifest = example.xcoms["download_invoices"]["artifacts"]
    print(f"\nmanifest in XCom: {manifest}\nread_invoices: {example.xcoms['read_invoices']['return_value']}")
    (invoice,) = [entry for entry in manifest["files"] if entry["kind"] == "download"]
    (sent,) = download["downloaded_files"]
    on_disk = archive / download["run_id"] / "downloads" / "invoice.pdf"
    assert invoice["uri"] == f"file://{on_disk}"
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == invoice["sha256"] == sent["checksum"]
    assert invoice["verified"] is True
    assert on_disk.read_bytes().startswith(b"%PDF")
    assert {entry["kind"] for entry in manifest["files"]} >= {"download", "recording", "screenshot"}
    assert (archive / download["run_id"] / "manifest.json").is_file()
    assert example.xcoms["read_invoices"]["return_value"] == [
        {"filename": "invoice.pdf", "uri": invoice["uri"], "size": sent["file_size"]}
    ]
