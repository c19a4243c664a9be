"""The provider on a real Airflow (scheduler, triggerer, REST API) against the Skyvern emulator."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from airflow_harness import TERMINAL_RUN_STATES, Stack, poll_until

from .scenario import (
    ABANDONED,
    CANCEL,
    CLEAR,
    EXAMPLE_DAG_IDS,
    EXTRACTION,
    FAILURE,
    FAN_OUT,
    GATE,
    LOGIN_DOWNLOAD,
    WAIT_LATER,
    WORKFLOW,
    Observed,
)

pytestmark = pytest.mark.e2e


def _xcom_run_id(stack: Stack, observed: Observed, dag_task: tuple[str, str], map_index: int = -1) -> str:
    dag_id, task_id = dag_task
    return str(stack.airflow.xcom(dag_id, observed.run_id(dag_task), task_id, "run_id", map_index))


def test_example_dags_parse_without_import_errors(stack: Stack) -> None:
    # "Healthy" does not mean parsed: on its own (-k, or first in the session) this test would race the
    # dag processor. wait_for_dag fails at once on any import error, and the assertions below still hold.
    for dag_id in sorted(EXAMPLE_DAG_IDS):
        stack.airflow.wait_for_dag(dag_id)
    body = stack.airflow.call("GET", "/importErrors")
    dag_ids = {dag["dag_id"] for dag in stack.airflow.call("GET", "/dags")["dags"]}
    assert body["total_entries"] == 0, body["import_errors"]
    assert dag_ids >= EXAMPLE_DAG_IDS


def test_extraction_waits_deferred_then_succeeds(observed: Observed) -> None:
    states = observed.states(EXTRACTION)
    assert "deferred" in states, states
    assert states[-1] == "success"
    assert states.index("deferred") < states.index("success")


def test_return_value_is_the_output_the_emulator_produced(stack: Stack, observed: Observed) -> None:
    assert stack.emulator is not None
    dag_id, task_id = EXTRACTION
    run = stack.emulator.run(_xcom_run_id(stack, observed, EXTRACTION))
    returned = stack.airflow.xcom(dag_id, observed.run_id(EXTRACTION), task_id)
    saved_rows = stack.airflow.xcom(dag_id, observed.run_id(EXTRACTION), "save_products")
    assert run["status"] == "completed"
    assert returned == run["output"]
    assert saved_rows == len(run["output"]) > 0
    assert set(run["output"][0]) >= {"name", "price"}  # shaped by the DAG's data_extraction_schema


def test_artifact_urls_in_xcom_are_the_runs(stack: Stack, observed: Observed) -> None:
    """Skyvern mints a fresh presigned URL (new ``expires``/``sig``) on every read, so the URLs in XCom
    are compared with the run's by the file they point to, and must themselves still download."""
    assert stack.emulator is not None
    emulator = stack.emulator
    dag_id, task_id = EXTRACTION
    run = emulator.run(_xcom_run_id(stack, observed, EXTRACTION))
    pushed = {
        key: stack.airflow.xcom(dag_id, observed.run_id(EXTRACTION), task_id, key)
        for key in ("recording_url", "screenshot_urls", "step_count")
    }
    assert pushed["step_count"] == run["step_count"]
    assert _unsigned(pushed["recording_url"]) == _unsigned(run["recording_url"])
    assert pushed["screenshot_urls"] == []  # skyvern-2.0 reports screenshot_urls null (Skyvern 1.0.56)
    assert run["screenshot_urls"] is None
    for url in [pushed["recording_url"]]:
        response = emulator.http.get(url)
        assert response.status_code == 200, (url, response.text)
        assert response.content


def test_trigger_progress_lines_are_in_the_task_log(stack: Stack, observed: Observed) -> None:
    dag_id, task_id = EXTRACTION
    skyvern_run_id = _xcom_run_id(stack, observed, EXTRACTION)
    log = stack.airflow.task_log(dag_id, observed.run_id(EXTRACTION), task_id)
    assert f"Skyvern run {skyvern_run_id}: running" in log
    assert f"Skyvern run {skyvern_run_id}: completed" in log


def test_extra_link_resolves_to_the_runs_app_url(stack: Stack, observed: Observed) -> None:
    assert stack.emulator is not None
    dag_id, task_id = EXTRACTION
    run = stack.emulator.run(_xcom_run_id(stack, observed, EXTRACTION))
    links = stack.airflow.extra_links(dag_id, observed.run_id(EXTRACTION), task_id)
    assert run["app_url"].startswith(stack.emulator.base_url)
    assert links == {"Skyvern run": run["app_url"]}


def test_fan_out_starts_one_run_per_url(stack: Stack, observed: Observed) -> None:
    assert stack.emulator is not None
    mapped = [
        label for (dag_id, _, label) in observed.recorder.history if dag_id == FAN_OUT[0] and "[" in label
    ]
    run_ids = {_xcom_run_id(stack, observed, FAN_OUT, index) for index in range(len(mapped))}
    outputs = [stack.emulator.run(run_id)["output"] for run_id in run_ids]
    cheapest = stack.airflow.xcom(FAN_OUT[0], observed.run_id(FAN_OUT), "cheapest_overall")
    assert len(mapped) == 3
    assert all(observed.states(FAN_OUT, label)[-1] == "success" for label in mapped)
    assert len(run_ids) == 3
    assert cheapest == min(outputs, key=lambda product: product["price"])


def test_failed_run_fails_the_task_with_skyverns_reason(stack: Stack, observed: Observed) -> None:
    assert stack.emulator is not None
    dag_id, task_id = FAILURE
    run = stack.emulator.run(_xcom_run_id(stack, observed, FAILURE))
    log = stack.airflow.task_log(dag_id, observed.run_id(FAILURE), task_id)
    assert run["status"] == "failed"
    assert run["failure_reason"]
    assert observed.states(FAILURE)[-1] == "failed"
    assert run["failure_reason"] in log


def test_marking_a_deferred_task_failed_cancels_the_remote_run(stack: Stack, observed: Observed) -> None:
    assert stack.emulator is not None
    emulator = stack.emulator
    dag_id, task_id = CANCEL
    skyvern_run_id = _xcom_run_id(stack, observed, CANCEL)
    assert observed.states(CANCEL)[-1] == "deferred"
    assert _cancel_requests(emulator.runs(), skyvern_run_id) == 0

    stack.airflow.set_task_state(dag_id, observed.run_id(CANCEL), task_id, "failed")

    poll_until(
        lambda: True if _cancel_requests(emulator.runs(), skyvern_run_id) >= 1 else None,
        timeout=60,
        what=f"the emulator to record a cancel request for {skyvern_run_id}",
    )
    assert stack.airflow.task_instance(dag_id, observed.run_id(CANCEL), task_id)["state"] == "failed"


def _unsigned(url: str) -> str:
    """A presigned URL without its query (expiry and signature): which file it names."""
    return urlsplit(url)._replace(query="").geturl()


def _cancel_requests(runs: list[dict[str, Any]], run_id: str) -> int:
    (run,) = [run for run in runs if run["run_id"] == run_id]
    return int(run.get("cancel_requests", 0))


def test_clearing_a_deferred_task_cancels_its_run_and_the_new_try_starts_one_new_run(
    stack: Stack, observed: Observed
) -> None:
    """Issue 7, 6: the new try never reattaches to the run its old trigger is canceling."""
    assert stack.emulator is not None
    emulator = stack.emulator
    dag_id, task_id = CLEAR
    first = _xcom_run_id(stack, observed, CLEAR)
    assert observed.states(CLEAR)[-1] == "deferred"

    stack.airflow.clear_task(dag_id, observed.run_id(CLEAR), task_id)

    poll_until(
        lambda: (
            True
            if stack.airflow.dag_run_state(dag_id, observed.run_id(CLEAR)) in TERMINAL_RUN_STATES
            else None
        ),
        timeout=120,
        what=f"{dag_id} to finish after the clear",
    )
    ti = stack.airflow.task_instance(dag_id, observed.run_id(CLEAR), task_id)
    runs = [run for run in emulator.runs() if "Extract the prices again" in run["request"].get("prompt", "")]
    assert (ti["state"], ti["try_number"]) == ("success", 2)
    assert runs[0]["run_id"] == first
    assert len(runs) == 2
    assert runs[0]["status"] == "canceled"
    assert runs[0]["cancel_requests"] >= 1
    assert runs[1]["status"] == "completed"
    assert stack.airflow.xcom(dag_id, observed.run_id(CLEAR), task_id, "run_id") == runs[1]["run_id"]


def test_the_scheduled_workflow_sends_its_templated_parameters_and_hands_on_its_xcoms(
    stack: Stack, observed: Observed
) -> None:
    assert stack.emulator is not None
    dag_id, task_id = WORKFLOW
    dag_run = stack.airflow.call("GET", f"/dags/{dag_id}/dagRuns/{observed.run_id(WORKFLOW)}")
    run = stack.emulator.run(_xcom_run_id(stack, observed, WORKFLOW))
    (sent,) = [r["request"] for r in stack.emulator.runs() if r["run_id"] == run["run_id"]]
    xcom = {
        key: stack.airflow.xcom(dag_id, observed.run_id(WORKFLOW), task_id, key)
        for key in ("return_value", "block_outputs", "attempt", "status", "app_url")
    }
    summary = stack.airflow.xcom(dag_id, observed.run_id(WORKFLOW), "summarize")
    print(f"\nworkflow run {run['run_id']}: request {sent}\nXCom {xcom}\nsummary {summary}")
    day = str(dag_run["logical_date"])[:10]
    assert observed.states(WORKFLOW)[-1] == "success"
    assert "deferred" in observed.states(WORKFLOW)
    assert sent["workflow_id"] == "wpid_123456789"
    assert sent["parameters"]["report_date"] == day  # templated from the logical date
    tag = sent["run_metadata"].pop("airflow")  # the task instance's tag, beside the user's keys
    assert tag.startswith("airflow-")
    assert sent["run_metadata"] == {"source": "airflow", "dag": dag_id}
    assert run["run_request"]["parameters"] == sent["parameters"]  # echoed as Skyvern does
    assert xcom["return_value"] == run["output"]
    assert xcom["block_outputs"] == {
        key.removesuffix("_output"): value for key, value in run["output"].items() if key.endswith("_output")
    }
    assert (xcom["status"], xcom["attempt"]) == ("completed", 1)
    assert xcom["app_url"] == run["app_url"]
    assert summary["blocks"] == sorted(xcom["block_outputs"])
    assert summary["extracted"] == run["output"]["extracted_information"]


def test_the_sensor_started_in_the_triggerer_hands_on_the_operators_xcoms(
    stack: Stack, observed: Observed
) -> None:
    """start_from_trigger: the scheduler hands the sensor straight to the triggerer; a worker only finishes."""
    assert stack.emulator is not None
    dag_id, task_id = WAIT_LATER
    run_id = observed.run_id(WAIT_LATER)
    skyvern_run_id = stack.airflow.xcom(dag_id, run_id, "start_price_check")  # the operator's return value
    run = stack.emulator.run(skyvern_run_id)
    states = observed.states(WAIT_LATER)
    log = stack.airflow.task_log(dag_id, run_id, task_id)
    xcom = {
        key: stack.airflow.xcom(dag_id, run_id, task_id, key)
        for key in ("return_value", "run_id", "status", "app_url", "recording_url", "step_count")
    }
    loaded = stack.airflow.xcom(dag_id, run_id, "load_prices")
    links = stack.airflow.extra_links(dag_id, run_id, task_id)
    print(f"\nsensor states {states}\nXCom {xcom}\nload_prices {loaded}\nlog:\n{log}")
    assert states[-1] == "success"
    assert "deferred" in states
    assert not {"queued", "running"} & set(states[: states.index("deferred")]), states  # no worker before
    assert [
        r["run_id"] for r in stack.emulator.runs() if "Price check" in str(r["request"].get("title"))
    ] == [skyvern_run_id]  # the sensor started nothing
    assert xcom["return_value"] == run["output"]
    assert (xcom["run_id"], xcom["status"], xcom["app_url"]) == (skyvern_run_id, "completed", run["app_url"])
    assert xcom["step_count"] == run["step_count"]
    assert links == {"Skyvern run": run["app_url"]}
    assert (loaded["run_id"], loaded["rows"]) == (skyvern_run_id, len(run["output"]))  # read as a worker does
    trigger_part = log[log.index("trigger ") : log.index("Trigger fired event")]
    assert f"Skyvern run {skyvern_run_id}: " in trigger_part  # polled by the triggerer (running or completed)
    assert f"Skyvern run {skyvern_run_id} ended completed: the sensor succeeds" in log


def test_a_gate_sensor_never_takes_a_worker_slot(stack: Stack, observed: Observed) -> None:
    """start_from_trigger + do_xcom_push=False: started and ended by the triggerer."""
    assert stack.emulator is not None
    dag_id, task_id = GATE
    run_id = observed.run_id(GATE)
    skyvern_run_id = stack.airflow.xcom(dag_id, run_id, "start_crawl")
    states = observed.states(GATE)
    ti = stack.airflow.task_instance(dag_id, run_id, task_id)
    log = stack.airflow.task_log(dag_id, run_id, task_id)
    print(f"\ngate states {states}\ntask instance {ti}\nlog:\n{log}")
    assert states[-1] == "success"
    assert "deferred" in states
    assert not {"queued", "running"} & set(states), states  # never sent to a worker
    assert not ti["hostname"], ti  # no worker process ever ran it
    assert ti["pid"] is None, ti
    assert stack.emulator.run(skyvern_run_id)["status"] == "completed"
    assert stack.airflow.extra_links(dag_id, run_id, task_id) == {
        "Skyvern run": stack.emulator.run(skyvern_run_id)["app_url"]
    }
    assert f"Skyvern run {skyvern_run_id} ended completed: the sensor succeeds" in log


def test_the_login_download_example_shares_one_session_and_closes_it(
    stack: Stack, observed: Observed
) -> None:
    assert stack.emulator is not None
    dag_id, task_id = LOGIN_DOWNLOAD
    run_id = observed.run_id(LOGIN_DOWNLOAD)
    session_id = stack.airflow.xcom(dag_id, run_id, "portal_session_create", "browser_session_id")
    login = stack.emulator.run(stack.airflow.xcom(dag_id, run_id, "log_in", "run_id"))
    download = stack.emulator.run(_xcom_run_id(stack, observed, LOGIN_DOWNLOAD))
    files = stack.airflow.xcom(dag_id, run_id, task_id, "downloaded_files")
    read = stack.airflow.xcom(dag_id, run_id, "read_invoices")
    manifest = stack.airflow.xcom(dag_id, run_id, task_id, "artifacts")
    session = stack.emulator.http.get(
        f"/v1/browser_sessions/{session_id}", headers={"x-api-key": stack.emulator.api_key}
    ).json()
    close_log = stack.airflow.task_log(dag_id, run_id, "portal_session_close")

    assert observed.states(LOGIN_DOWNLOAD)[-1] == "success"
    assert "deferred" in observed.states(LOGIN_DOWNLOAD)
    assert (
        login["run_request"]["browser_session_id"]
        == download["run_request"]["browser_session_id"]
        == session_id
    )
    assert [f["filename"] for f in files] == [f["filename"] for f in download["downloaded_files"]]
    copied = [entry for entry in manifest["files"] if entry["kind"] == "download"]
    assert [(e["filename"], e["sha256"], e["size"], e["verified"]) for e in copied] == [
        (f["filename"], f["checksum"], f["size"], True) for f in files
    ]
    assert read == [{"filename": e["filename"], "uri": e["uri"], "size": e["size"]} for e in copied]
    assert all(
        e["uri"].startswith("file://") and f"/{download['run_id']}/downloads/" in e["uri"] for e in copied
    )
    assert session["status"] == "completed"
    assert f"Closed Skyvern browser session {session_id} (completed)" in close_log


def test_a_dag_run_marked_failed_still_closes_its_browser_session(stack: Stack, observed: Observed) -> None:
    """Marking the run failed kills the deferred task (its Skyvern run is canceled) and leaves the
    teardown to run: the session is closed, not left billing until its timeout."""
    assert stack.emulator is not None
    emulator = stack.emulator
    dag_id, task_id = ABANDONED
    run_id = observed.run_id(ABANDONED)
    session_id = stack.airflow.xcom(dag_id, run_id, "portal_create", "browser_session_id")
    skyvern_run_id = _xcom_run_id(stack, observed, ABANDONED)
    assert observed.states(ABANDONED)[-1] == "deferred"

    stack.airflow.call("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})

    def closed() -> dict[str, Any] | None:
        if stack.airflow.task_states(dag_id, run_id).get("portal_close") not in ("success", "failed"):
            return None
        return emulator.http.get(
            f"/v1/browser_sessions/{session_id}", headers={"x-api-key": emulator.api_key}
        ).json()  # type: ignore[no-any-return]

    session = poll_until(closed, timeout=120, what="the teardown to close the session of the failed DAG run")
    states = stack.airflow.task_states(dag_id, run_id)
    close_log = stack.airflow.task_log(dag_id, run_id, "portal_close")
    print(f"\nmarked failed: task states {states}\nsession {session}\nteardown log:\n{close_log}")
    final = poll_until(  # Airflow keeps the run going until its teardown is done, then ends it
        lambda: (
            state if (state := stack.airflow.dag_run_state(dag_id, run_id)) in TERMINAL_RUN_STATES else None
        ),
        timeout=60,
        what=f"{dag_id} to end after its teardown",
    )
    assert final == "failed"
    assert states["portal_close"] == "success"
    assert states[task_id] == "failed"
    assert session["status"] == "completed"
    assert f"Closed Skyvern browser session {session_id} (completed)" in close_log
    poll_until(
        lambda: True if _cancel_requests(emulator.runs(), skyvern_run_id) >= 1 else None,
        timeout=60,
        what=f"the cancel of {skyvern_run_id}, whose task was killed by the failed DAG run",
    )
