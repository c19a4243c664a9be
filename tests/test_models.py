"""Wire models: open enums, engine names, UTC datetimes, run-type dispatch, omitted unset fields."""

from __future__ import annotations

from datetime import timezone

import pytest
from pydantic import ValidationError

from airflow_provider_skyvern.models import (
    Artifact,
    ArtifactType,
    CreateBrowserSessionRequest,
    FileInfo,
    GeoTarget,
    ProxyLocation,
    RunEngine,
    RunResponse,
    RunStatus,
    TaskRunRequest,
    TaskRunResponse,
    TimelineEntry,
    WorkflowRunRequest,
    WorkflowRunResponse,
    parse_run_response,
)
from tests.payloads import artifact, task_run, timeline_entry, workflow_run


@pytest.mark.parametrize(
    ("given", "wire"),
    [
        ("skyvern_v1", "skyvern-1.0"),
        ("skyvern_v2", "skyvern-2.0"),
        ("skyvern-2.0", "skyvern-2.0"),
        ("openai_cua", "openai-cua"),
        ("anthropic-cua", "anthropic-cua"),
        ("ui_tars", "ui-tars"),
        ("yutori_navigator", "yutori-navigator"),
    ],
)
def test_engine_accepts_sdk_names_and_sends_wire_values(given: str, wire: str) -> None:
    assert TaskRunRequest(prompt="p", engine=given).to_wire()["engine"] == wire


def test_unknown_enum_values_are_kept_not_fatal() -> None:
    engine = RunEngine("skyvern-4.0")
    assert engine.value == "skyvern-4.0"
    assert not engine.is_known
    assert RunEngine.skyvern_v2.is_known
    status = RunStatus("archived")
    assert status.value == "archived"
    assert not status.is_terminal
    assert ProxyLocation("RESIDENTIAL_XX").value == "RESIDENTIAL_XX"
    assert ArtifactType("hologram").value == "hologram"


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        ("created", False),
        ("queued", False),
        ("running", False),
        ("paused", False),
        ("completed", True),
        ("failed", True),
        ("terminated", True),
        ("canceled", True),
        ("timed_out", True),
    ],
)
def test_terminal_statuses(status: str, terminal: bool) -> None:
    assert RunStatus(status).is_terminal is terminal


def test_naive_datetimes_are_utc_and_offsets_are_kept() -> None:
    run = TaskRunResponse.model_validate(
        task_run(
            "tsk_1",
            "completed",
            created_at="2026-01-31T15:20:42.160725",
            finished_at="2026-01-31T16:20:42+01:00",
        )
    )
    assert run.created_at.tzinfo is timezone.utc
    assert run.created_at.hour == 15
    assert run.finished_at is not None
    assert run.finished_at.utcoffset() is not None
    assert run.finished_at.astimezone(timezone.utc).hour == 15


def test_run_type_selects_the_model_and_unknown_types_still_parse() -> None:
    assert type(parse_run_response(task_run("tsk_1", "running", run_type="task_v1"))) is TaskRunResponse
    assert type(parse_run_response(workflow_run("wr_1", "running"))) is WorkflowRunResponse
    other = parse_run_response(task_run("x_1", "running", run_type="browser_agent_v9"))
    assert type(other) is RunResponse
    assert other.run_type is not None
    assert other.run_type.value == "browser_agent_v9"


def test_unknown_response_fields_are_kept() -> None:
    run = parse_run_response(task_run("tsk_1", "running", brand_new_field={"x": 1}))
    assert run.model_extra == {"brand_new_field": {"x": 1}}


def test_workflow_waiting_for_an_automatic_retry_is_not_terminal() -> None:
    run = WorkflowRunResponse.model_validate(workflow_run("wr_1", "failed", retry_pending=True, attempt=1))
    assert not run.is_terminal
    assert WorkflowRunResponse.model_validate(workflow_run("wr_1", "failed")).is_terminal


def test_error_codes_come_from_errors() -> None:
    run = TaskRunResponse.model_validate(
        task_run(
            "tsk_1", "failed", errors=[{"error_code": "OUT_OF_STOCK", "reasoning": "x"}, {"message": "m"}]
        )
    )
    assert run.error_codes == ["OUT_OF_STOCK"]


def test_request_omits_unset_fields_and_explicit_none_but_a_null_proxy_location() -> None:
    """Skyvern 1.0.56 answers 422 to a null engine/publish_workflow/start_fresh_browser: None is left out.

    Only ``proxy_location=None`` is sent as null: there Skyvern reads null as "not chosen" (a workflow run
    inherits the workflow's proxy), an omitted one as RESIDENTIAL.
    """
    assert TaskRunRequest(prompt="p").to_wire() == {"prompt": "p"}
    assert TaskRunRequest(
        prompt="p", url=None, engine=None, publish_workflow=None, start_fresh_browser=None
    ).to_wire() == {"prompt": "p"}
    assert WorkflowRunRequest(
        workflow_id="wpid_1", start_fresh_browser=None, title=None, parameters={"optional": None}
    ).to_wire() == {"agent_id": "wpid_1", "parameters": {"optional": None}}
    assert CreateBrowserSessionRequest(timeout=None, generate_browser_profile=None).to_wire() == {}
    assert TaskRunRequest(prompt="p", proxy_location=GeoTarget(country="US", city=None)).to_wire() == {
        "prompt": "p",
        "proxy_location": {"country": "US"},
    }
    assert WorkflowRunRequest(workflow_id="wpid_1", proxy_location=None).to_wire() == {
        "agent_id": "wpid_1",
        "proxy_location": None,
    }


def test_request_rejects_misspelled_fields() -> None:
    with pytest.raises(ValidationError, match="max_step"):
        TaskRunRequest(prompt="p", max_step=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("proxy", "wire"),
    [
        ("RESIDENTIAL_JP", "RESIDENTIAL_JP"),
        (ProxyLocation.US_CA, "US-CA"),
        (
            {"country": "US", "subdivision": "CA", "city": "San Francisco"},
            {"country": "US", "subdivision": "CA", "city": "San Francisco"},
        ),
        (GeoTarget(country="DE"), {"country": "DE"}),
        # normalised as Skyvern's GeoTarget does: upper-case, subdivision without the country prefix
        (
            {"country": "us", "subdivision": "us-ca", "city": "San Francisco", "isISP": True},
            {"country": "US", "subdivision": "CA", "city": "San Francisco", "isISP": True},
        ),
        ({"url": "http://user:pass@proxy:3128"}, {"url": "http://user:pass@proxy:3128"}),
    ],
)
def test_proxy_location_forms(proxy: object, wire: object) -> None:
    assert TaskRunRequest(prompt="p", proxy_location=proxy).to_wire()["proxy_location"] == wire  # type: ignore[arg-type]


def test_geo_target_is_normalised_as_skyvern_normalises_it() -> None:
    assert GeoTarget(country="gb", subdivision="GB-ENG").to_wire() == {"country": "GB", "subdivision": "ENG"}
    assert GeoTarget(country="US", subdivision="ca").to_wire() == {"country": "US", "subdivision": "CA"}
    assert GeoTarget(country="US", is_isp=False).to_wire() == {"country": "US", "isISP": False}
    assert GeoTarget.model_validate({"country": "us", "isISP": True}).is_isp is True
    with pytest.raises(ValidationError, match="subdivision"):
        GeoTarget(country="US", subdivision="CALIFORNIA-N")


def test_workflow_request_sends_workflow_id_as_agent_id() -> None:
    body = WorkflowRunRequest(workflow_id="wpid_1", run_metadata={"dag": "d"}).to_wire()
    assert body == {"agent_id": "wpid_1", "run_metadata": {"dag": "d"}}
    assert WorkflowRunRequest.model_validate({"agent_id": "wpid_2"}).workflow_id == "wpid_2"
    with pytest.raises(ValidationError, match="max_elapsed_time_minutes"):
        WorkflowRunRequest(workflow_id="wpid_1", max_elapsed_time_minutes=481)


def test_file_info_artifact_and_timeline_parse() -> None:
    info = FileInfo.model_validate(
        {"url": "https://f/x.pdf", "checksum": "ab", "file_size": 3, "filename": "x.pdf"}
    )
    assert info.filename == "x.pdf"
    assert Artifact.model_validate(artifact("a_1")).artifact_type is ArtifactType.recording
    entry = TimelineEntry.model_validate({**timeline_entry(), "children": [timeline_entry()]})
    assert entry.children is not None
    assert entry.children[0].block == {
        "workflow_run_block_id": "wrb_1",
        "block_type": "task",
        "label": "extract",
    }
