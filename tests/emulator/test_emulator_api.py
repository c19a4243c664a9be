"""The emulator through SkyvernHook: lifecycle, outcomes, errors, artifacts, sessions, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jsonschema
import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import (
    SkyvernAuthError,
    SkyvernBadRequestError,
    SkyvernNotFoundError,
)
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import (
    CreateBrowserSessionRequest,
    RunStatus,
    TaskRunRequest,
    WorkflowRunRequest,
)
from tests.conftest import set_connection
from tests.emulator.conftest import RUN_SECONDS, FakeClock

PRODUCTS = {
    "type": "array",
    "maxItems": 3,
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "price": {"type": "number"},
            "rating": {"type": "number", "minimum": 0, "maximum": 5},
            "in_stock": {"type": "boolean"},
            "url": {"type": "string", "format": "uri"},
        },
        "required": ["name", "price"],
    },
}


def _task(prompt: str = "Extract the top 3 products", **fields: Any) -> TaskRunRequest:
    fields.setdefault("engine", "skyvern_v2")
    return TaskRunRequest(prompt=prompt, url="https://example.com/products", **fields)


def test_a_run_moves_through_every_status_on_the_clock(hook: SkyvernHook, clock: FakeClock) -> None:
    assert hook.run_task(_task()).status.value == "queued"  # skyvern-2.0 answers queued (Skyvern 1.0.56)
    run = hook.run_task(_task(engine="skyvern_v1"))
    seen = [(run.status.value, run.step_count)]
    for _ in range(12):
        clock.advance(RUN_SECONDS / 10)
        current = hook.get_run(run.run_id)
        seen.append((current.status.value, current.step_count))

    statuses = list(dict.fromkeys(status for status, _ in seen))
    steps = [steps for status, steps in seen if status == "running"]
    assert run.run_id.startswith("tsk_")
    assert statuses == ["created", "queued", "running", "completed"]
    assert steps == sorted(steps)
    assert steps[-1] > steps[0] >= 1
    assert seen[-1] == ("completed", 5)


def test_output_is_shaped_after_the_schema_and_stable(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_task(_task(data_extraction_schema=PRODUCTS))
    clock.advance(RUN_SECONDS)

    first, second = hook.get_run(run.run_id), hook.get_run(run.run_id)

    jsonschema.validate(first.output, PRODUCTS)
    assert isinstance(first.output, list)
    assert len(first.output) == 3
    assert first.output == second.output
    assert len({row["price"] for row in first.output}) == 3  # rows differ


def test_a_pydantic_style_schema_with_refs_is_followed(hook: SkyvernHook, clock: FakeClock) -> None:
    schema = {
        "$defs": {
            "Item": {"type": "object", "properties": {"sku": {"type": "integer"}}, "required": ["sku"]}
        },
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
    }
    run = hook.run_task(_task(data_extraction_schema=json.dumps(schema)))
    clock.advance(RUN_SECONDS)

    output = hook.get_run(run.run_id).output

    jsonschema.validate(output, schema)
    assert isinstance(output, dict)
    assert all(isinstance(i["sku"], int) for i in output["items"])


def test_artifacts_are_real_files_behind_expiring_presigned_urls(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer
) -> None:
    run = hook.run_task(_task(prompt="Log in and download the latest invoice", engine="skyvern_v1"))
    v2_run = hook.run_task(_task())
    clock.advance(RUN_SECONDS)
    done = hook.get_run(run.run_id)
    assert done.recording_url
    assert done.screenshot_urls
    assert done.downloaded_files
    assert hook.get_run(v2_run.run_id).screenshot_urls is None  # as Skyvern 1.0.56 reports v2 runs

    recording = httpx.get(done.recording_url)
    screenshot = httpx.get(done.screenshot_urls[0])
    invoice = httpx.get(done.downloaded_files[0].url)

    assert recording.content.startswith(b"\x1a\x45\xdf\xa3")
    assert b"webm" in recording.content[:40]
    assert screenshot.headers["content-type"] == "image/png"
    assert screenshot.content.startswith(b"\x89PNG")
    assert invoice.content.startswith(b"%PDF-1.4")
    assert invoice.content.rstrip().endswith(b"%%EOF")
    assert hashlib.sha256(invoice.content).hexdigest() == done.downloaded_files[0].checksum
    assert done.downloaded_files[0].file_size == len(invoice.content)

    clock.advance(3601)  # recordings and screenshots expire after an hour, as on Skyvern
    assert httpx.get(done.recording_url).status_code == 403
    assert httpx.get(hook.get_run(run.run_id).recording_url or "").status_code == 200  # re-minted on read
    assert httpx.get(done.recording_url.replace("sig=", "sig=0")).status_code == 403


def test_artifacts_endpoint_filters_by_type_and_serves_single_artifacts(
    hook: SkyvernHook, clock: FakeClock
) -> None:
    run = hook.run_task(_task())
    assert hook.get_run_artifacts(run.run_id) == []  # nothing before the run ends
    clock.advance(RUN_SECONDS)

    every = hook.get_run_artifacts(run.run_id)
    screenshots = hook.get_run_artifacts(run.run_id, ["screenshot_final"])
    single = hook.get_artifact(screenshots[0].artifact_id)

    assert sorted(a.artifact_type.value for a in every) == [
        "download",
        "har",
        "html",
        "pdf",
        "recording",
        "screenshot_final",
        "screenshot_final",
        "skyvern_log",
    ]
    assert [a.artifact_type.value for a in screenshots] == ["screenshot_final"] * 2
    assert single.artifact_id == screenshots[0].artifact_id
    assert single.signed_url
    with pytest.raises(SkyvernNotFoundError, match="Artifact not found a_1"):
        hook.get_artifact("a_1")


@pytest.mark.parametrize(
    ("outcome", "status", "reason"),
    [
        ("failed", "failed", "Emulated failure"),
        ("terminated", "terminated", "cannot be achieved"),
        ("timed_out", "timed_out", "maximum number of steps"),
        ("canceled", "canceled", "cancellation"),
    ],
)
def test_directive_picks_the_final_status(
    hook: SkyvernHook, clock: FakeClock, outcome: str, status: str, reason: str
) -> None:
    run = hook.run_task(_task(prompt=f"Find the invoice [emulator outcome={outcome} seconds=4 steps=2]"))
    clock.advance(3.9)
    assert not hook.get_run(run.run_id).is_terminal
    clock.advance(0.1)

    done = hook.get_run(run.run_id)

    assert (done.status.value, done.step_count, done.output) == (status, 2, None)
    assert reason in (done.failure_reason or "")


@pytest.mark.parametrize(("outcome", "status"), [("paused", "paused"), ("slow", "running")])
def test_paused_and_slow_runs_never_finish(
    hook: SkyvernHook, clock: FakeClock, outcome: str, status: str
) -> None:
    run = hook.run_task(_task(prompt=f"Wait [emulator outcome={outcome} seconds=2]"))
    clock.advance(10_000)

    assert hook.get_run(run.run_id).status.value == status


@pytest.mark.parametrize("max_steps", [1, 3])
def test_a_run_given_max_steps_completes_within_them_unless_a_directive_plans_more(
    hook: SkyvernHook, clock: FakeClock, max_steps: int
) -> None:
    run = hook.run_task(_task(max_steps=max_steps))
    clock.advance(RUN_SECONDS)

    done = hook.get_run(run.run_id)

    assert (done.status, done.step_count) == (RunStatus.completed, max_steps)


def test_max_steps_below_the_plan_ends_timed_out(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_task(_task(prompt="Crawl [emulator steps=8]", max_steps=3))
    clock.advance(RUN_SECONDS)

    done = hook.get_run(run.run_id)

    assert (done.status, done.step_count) == (RunStatus.timed_out, 3)


def test_error_code_mapping_names_the_failure(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_task(
        _task(
            prompt="Buy it [emulator outcome=failed]", error_code_mapping={"OUT_OF_STOCK": "Product sold out"}
        )
    )
    clock.advance(RUN_SECONDS)

    done = hook.get_run(run.run_id)

    assert done.failure_reason == "Product sold out"
    assert done.error_codes == ["OUT_OF_STOCK"]


def test_cancel_stops_a_running_run_and_is_refused_once_final(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_task(_task(engine="skyvern_v1"))  # a finished v2 run ignores a cancel with a 200
    clock.advance(RUN_SECONDS / 2)
    hook.cancel_run(run.run_id)
    clock.advance(RUN_SECONDS)

    canceled = hook.get_run(run.run_id)
    with pytest.raises(SkyvernBadRequestError, match="from canceled to canceled"):
        hook.cancel_run(run.run_id)

    assert canceled.status is RunStatus.canceled
    assert canceled.failure_reason == "Run canceled by the user"
    assert hook.get_run(run.run_id).finished_at == canceled.finished_at


def test_unknown_ids_are_404_with_skyverns_detail(hook: SkyvernHook) -> None:
    with pytest.raises(
        SkyvernNotFoundError, match=r"GET /v1/runs/tsk_404 -> HTTP 404: Task run not found tsk_404"
    ):
        hook.get_run("tsk_404")
    with pytest.raises(SkyvernNotFoundError, match="Run not found tsk_404"):
        hook.cancel_run("tsk_404")


def test_a_wrong_key_is_a_403_whose_message_never_shows_a_key(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password="sk-wrong-KEY-0001")

    with SkyvernHook() as wrong, pytest.raises(SkyvernAuthError) as caught:
        wrong.get_run("tsk_1")

    message = str(caught.value)
    assert "HTTP 403: Could not validate credentials" in message
    assert "sk-wrong-KEY-0001" not in message
    assert emulator.api_key not in message
    assert SkyvernHook().test_connection()[0] is False


def test_the_right_key_passes_test_connection(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    assert hook.test_connection() == (True, f"Connected to Skyvern at {emulator.base_url}")


def test_server_validation_errors_come_back_per_field(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    with pytest.raises(SkyvernBadRequestError) as caught:
        hook.run_task(TaskRunRequest(prompt="p", engine="skyvern-9.0"))
    assert "engine" in caught.value.field_errors

    bad_directive = emulator.control.post(
        "/v1/run/tasks",
        json={"prompt": "p [emulator outcom=failed]"},
        headers={"x-api-key": emulator.api_key},
    )
    typo = emulator.control.post(
        "/v1/run/tasks", json={"prompt": "p", "titel": "x"}, headers={"x-api-key": emulator.api_key}
    )
    assert bad_directive.status_code == 400
    assert "'outcom=failed'" in bad_directive.json()["detail"]
    assert typo.status_code == 422
    assert typo.json()["detail"][0]["loc"] == ["body", "titel"]


def test_list_runs_searches_filters_and_pages_newest_first(hook: SkyvernHook, clock: FakeClock) -> None:
    v1 = "skyvern_v1"
    first = hook.run_task(_task(title="nightly [airflow-0123456789abcdef]", engine=v1))
    second = hook.run_task(_task(title="other", prompt="Fail [emulator outcome=failed seconds=1]", engine=v1))
    third = hook.run_task(_task(title="nightly [airflow-0123456789abcdef] again", engine=v1))
    v2 = hook.run_task(_task(title="nightly [airflow-0123456789abcdef]", prompt="Find the v2 needle"))
    clock.advance(1)

    tagged = hook.list_runs(search_key="AIRFLOW-0123456789ABCDEF")
    failed = hook.list_runs(statuses=["failed"])
    page_two = hook.list_runs(page=2, page_size=2)

    # Skyvern 1.0.56 searches title + url only, and skyvern-2.0 replaces the request's title
    assert [item.run_id for item in tagged] == [third.run_id, first.run_id]
    assert hook.list_runs(search_key="v2 needle") == []
    assert [item.title for item in hook.list_runs(search_key=v2.run_id)] == ["New Workflow"]
    assert [item.run_id for item in failed] == [second.run_id]
    assert [item.run_id for item in page_two] == [second.run_id, first.run_id]


def test_a_null_engine_is_refused_as_by_skyvern_and_the_hook_never_sends_one(
    hook: SkyvernHook, emulator: EmulatorServer
) -> None:
    emulator.control.headers["x-api-key"] = emulator.api_key
    refused = emulator.control.post("/v1/run/tasks", json={"prompt": "p", "engine": None})
    refused_flag = emulator.control.post(
        "/v1/run/agents", json={"agent_id": "wpid_1", "start_fresh_browser": None}
    )

    run = hook.run_task(TaskRunRequest(prompt="p", engine=None, publish_workflow=None))

    assert refused.status_code == refused_flag.status_code == 422
    assert [e["loc"] for e in refused.json()["detail"]] == [["body", "engine"]]
    assert [e["loc"] for e in refused_flag.json()["detail"]] == [["body", "start_fresh_browser"]]
    assert run.run_type is not None
    assert run.run_type.value == "task_v1"  # no engine sent: the server default, skyvern-1.0


def test_workflow_runs_and_their_timeline(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_workflow(
        WorkflowRunRequest(
            workflow_id="wpid_42", parameters={"query": "laptops"}, title="[emulator steps=5]"
        ),
        max_steps_override=2,
    )
    clock.advance(RUN_SECONDS)

    done = hook.get_run(run.run_id)
    timeline = hook.get_run_timeline(run.run_id)

    assert run.run_id.startswith("wr_")
    assert done.run_type is not None
    assert done.run_type.value == "workflow_run"
    assert done.status is RunStatus.timed_out
    assert done.step_count == 2
    assert [entry.type for entry in timeline] == ["block", "block"]
    assert [(e.block or {}).get("label") for e in timeline] == ["open_portal", "extract_report"]
    assert [(e.block or {}).get("status") for e in timeline] == ["completed", "timed_out"]
    assert len(timeline[-1].children or []) == 2
    with pytest.raises(SkyvernNotFoundError, match="Workflow not found w_1"):
        hook.run_workflow(WorkflowRunRequest(workflow_id="w_1"))


def test_an_unknown_workflow_is_a_404_as_on_the_real_server(
    hook: SkyvernHook, emulator: EmulatorServer
) -> None:
    with pytest.raises(
        SkyvernNotFoundError, match=r"HTTP 404: Workflow not found\. workflow_permanent_id=wpid_404"
    ):
        hook.run_workflow(WorkflowRunRequest(workflow_id="wpid_404"))
    assert emulator.control.get("/_emulator/runs").json()["runs"] == []


def test_a_workflow_created_through_the_api_can_be_run_and_its_saved_proxy_applies_to_a_null_one(
    hook: SkyvernHook, emulator: EmulatorServer
) -> None:
    emulator.control.headers["x-api-key"] = emulator.api_key
    definition = {
        "title": "Invoices",
        "proxy_location": "RESIDENTIAL_GB",
        "workflow_definition": {"blocks": []},
    }
    created = emulator.control.post("/v1/workflows", json={"json_definition": definition})
    assert created.status_code == 200
    workflow_id = created.json()["workflow_permanent_id"]
    assert workflow_id.startswith("wpid_")

    inherited = hook.run_workflow(WorkflowRunRequest(workflow_id=workflow_id, proxy_location=None))
    omitted = hook.run_workflow(WorkflowRunRequest(workflow_id=workflow_id))
    chosen = hook.run_workflow(WorkflowRunRequest(workflow_id=workflow_id, proxy_location="NONE"))

    echoed = [hook.get_run(run.run_id).run_request or {} for run in (inherited, omitted, chosen)]
    assert [echo["proxy_location"] for echo in echoed] == ["RESIDENTIAL_GB", "RESIDENTIAL", "NONE"]
    assert echoed[0]["title"] == "Invoices"


def test_a_workflow_run_goes_to_run_agents_and_skyverns_alias_keys_are_accepted(
    hook: SkyvernHook, emulator: EmulatorServer
) -> None:
    run = hook.run_workflow(WorkflowRunRequest(workflow_id="wpid_42"), template=False)
    emulator.control.headers["x-api-key"] = emulator.api_key
    both = emulator.control.post("/v1/run/agents", json={"agent_id": "wpid_42", "workflow_id": "wpid_404"})
    legacy = emulator.control.post("/v1/run/workflows", json={"workflow_id": "wpid_123456789"})

    logged = emulator.control.get("/_emulator/requests").json()["requests"]
    assert (logged[0]["method"], logged[0]["path"], logged[0]["status"]) == ("POST", "/v1/run/agents", 200)
    echoed = hook.get_run(run.run_id).run_request
    assert echoed is not None
    assert echoed["workflow_id"] == "wpid_42"  # Skyvern echoes the key under the field's name
    assert (both.status_code, legacy.status_code) == (200, 200)
    assert both.json()["run_request"]["workflow_id"] == "wpid_42"  # with both keys, agent_id wins
    assert [item.workflow_permanent_id for item in hook.list_runs()] == [
        "wpid_123456789",
        "wpid_42",
        "wpid_42",
    ]


def test_completed_workflow_output_has_skyverns_shape(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_workflow(WorkflowRunRequest(workflow_id="wpid_42"))
    clock.advance(RUN_SECONDS)

    output = hook.get_run(run.run_id).output

    assert isinstance(output, dict)
    assert set(output) == {"open_portal_output", "extract_report_output", "extracted_information"}
    assert output["open_portal_output"] is None  # a goto_url block records no value
    block = output["extract_report_output"]
    assert block["status"] == "completed"
    assert output["extracted_information"] == [block["extracted_information"]]


def test_workflow_parameters_are_echoed_and_the_title_is_the_workflows(hook: SkyvernHook) -> None:
    request = WorkflowRunRequest(
        workflow_id="wpid_42",
        parameters={"day": "2026-12-01"},
        title="mine",
        extra_http_headers={"X-A": "1"},
        run_metadata={"team": "data"},
    )
    run = hook.run_workflow(request)
    echoed = hook.get_run(run.run_id).run_request
    assert echoed is not None
    assert echoed["parameters"] == {"day": "2026-12-01"}
    assert echoed["title"] == "Emulated workflow wpid_42"  # Skyvern 1.0.56 drops the request's title
    assert echoed["extra_http_headers"] is None
    assert echoed["run_metadata"] is None
    assert [item.run_id for item in hook.list_runs(search_key="2026-12-01")] == [
        run.run_id
    ]  # inputs searched


def test_a_retry_policy_reports_a_failed_attempt_as_retry_pending_then_the_last(
    hook: SkyvernHook, clock: FakeClock
) -> None:
    run = hook.run_workflow(
        WorkflowRunRequest(workflow_id="wpid_42", title="[emulator attempts=2 retry_seconds=4]")
    )
    clock.advance(RUN_SECONDS + 1)
    pending = hook.get_run(run.run_id).model_dump()
    clock.advance(4)
    second = hook.get_run(run.run_id).model_dump()
    clock.advance(RUN_SECONDS)
    final = hook.get_run(run.run_id)

    assert (pending["status"], pending["retry_pending"], pending["attempt"]) == ("failed", True, 1)
    assert pending["next_attempt_at"] is not None
    assert "retrying" in pending["failure_reason"]
    assert [a["retry_decision"] for a in pending["attempts"]] == ["retry"]
    assert (second["status"], second["retry_pending"], second["attempt"]) in {
        ("queued", False, 2),
        ("running", False, 2),
    }
    assert (final.status, final.retry_pending, final.attempt) == (RunStatus.completed, False, 2)
    assert final.is_terminal
    assert not hook.get_run(run.run_id).failure_reason
    assert [a["status"] for a in final.model_dump()["attempts"]] == ["failed", "completed"]


def test_timeline_is_refused_for_task_v1_runs(hook: SkyvernHook) -> None:
    run = hook.run_task(TaskRunRequest(prompt="p"))  # no engine: the server default skyvern-1.0
    with pytest.raises(SkyvernBadRequestError, match="Timeline not available for run type task_v1"):
        hook.get_run_timeline(run.run_id)
    assert run.run_type is not None
    assert run.run_type.value == "task_v1"


def test_browser_sessions_open_host_runs_and_close(hook: SkyvernHook, clock: FakeClock) -> None:
    session = hook.create_browser_session(CreateBrowserSessionRequest(timeout=600))
    run = hook.run_task(_task(browser_session_id=session.browser_session_id))
    hook.close_browser_session(session.browser_session_id)
    hook.close_browser_session(session.browser_session_id)  # idempotent

    closed = hook.get_browser_session(session.browser_session_id)

    assert session.browser_session_id.startswith("pbs_")
    assert session.status == "running"
    assert (session.timeout, session.warning) == (240, "timeout capped at 240 minutes")
    assert run.browser_session_id == session.browser_session_id
    assert closed.status == "completed"
    assert closed.completed_at is not None
    with pytest.raises(SkyvernNotFoundError, match="Browser session pbs_9 not found"):
        hook.run_task(_task(browser_session_id="pbs_9"))


def test_the_session_list_shows_the_open_ones_and_the_control_endpoint_all(
    hook: SkyvernHook, emulator: EmulatorServer, clock: FakeClock
) -> None:
    """Skyvern 1.0.56 lists active sessions only; ``/_emulator/sessions`` keeps every one, with its closes."""
    closed, expiring, open_ = (
        hook.create_browser_session(CreateBrowserSessionRequest(timeout=minutes)) for minutes in (30, 5, 30)
    )
    hook.close_browser_session(closed.browser_session_id)
    clock.now += 6 * 60

    listed = [session.browser_session_id for session in hook.list_browser_sessions()]
    controls = emulator.control.get("/_emulator/sessions").json()["sessions"]

    assert listed == [open_.browser_session_id]
    assert [(s["browser_session_id"], s["status"], s["close_requests"]) for s in controls] == [
        (closed.browser_session_id, "completed", 1),
        (expiring.browser_session_id, "timeout", 0),
        (open_.browser_session_id, "running", 0),
    ]
    assert controls[0]["closed_at"] is not None
    assert controls[2]["closed_at"] is None


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_webhook_replay_delivers_a_signed_payload(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer, webhook_receiver: str
) -> None:
    run = hook.run_task(_task(webhook_url="https://not-used.example.com"))
    with pytest.raises(SkyvernBadRequestError, match="not in a terminal status"):
        hook.retry_run_webhook(run.run_id, webhook_url=webhook_receiver)
    clock.advance(RUN_SECONDS)

    replay = hook.retry_run_webhook(run.run_id, webhook_url=webhook_receiver)

    ((headers, body),) = _Receiver.received
    expected = hmac.new(emulator.api_key.encode(), body, hashlib.sha256).hexdigest()
    assert (replay.status_code, replay.target_webhook_url) == (204, webhook_receiver)
    assert replay.default_webhook_url == "https://not-used.example.com"
    assert headers["x-skyvern-signature"] == expected
    assert json.loads(body)["status"] == "completed"
    assert replay.payload == body.decode()


def test_webhook_replay_without_any_url_is_refused(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_task(_task())
    clock.advance(RUN_SECONDS)
    with pytest.raises(SkyvernBadRequestError, match="No webhook URL configured for the run"):
        hook.retry_run_webhook(run.run_id)


def test_app_url_opens_a_page_about_the_run(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_task(_task(prompt="Fail [emulator outcome=failed]"))
    clock.advance(RUN_SECONDS)
    done = hook.get_run(run.run_id)

    page = httpx.get(done.app_url or "")

    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert run.run_id in page.text
    assert "Emulated failure" in page.text


def test_inspection_lists_every_run_and_resets(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    run = hook.run_task(_task())
    hook.cancel_run(run.run_id)

    (listed,) = emulator.control.get("/_emulator/runs").json()["runs"]
    requests = emulator.control.get("/_emulator/requests").json()["requests"]
    emulator.control.post("/_emulator/reset")

    assert (listed["run_id"], listed["cancel_requests"], listed["status"]) == (run.run_id, 1, "canceled")
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [
        ("POST", "/v1/run/tasks", 200),
        ("POST", f"/v1/runs/{run.run_id}/cancel", 200),
    ]
    assert emulator.control.get("/_emulator/runs").json() == {"runs": []}


def test_one_hook_serves_two_event_loops_one_after_the_other(hook: SkyvernHook) -> None:
    """A pooled connection belongs to its loop: a second ``asyncio.run`` must not reuse the first's."""
    import asyncio

    run = hook.run_task(TaskRunRequest(prompt="Extract the top 3 products"))
    first = asyncio.run(hook.aget_run(run.run_id))  # the loop closes, its client still open
    second = asyncio.run(hook.aget_run(run.run_id))  # used to fail: RuntimeError: Event loop is closed
    assert first.run_id == second.run_id == run.run_id
