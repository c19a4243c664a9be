"""The run's story in the task log (issue 10, item 3): each block's outcome when a run with a timeline
ends, the time left in progress lines, and where a person must act on a paused run."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from airflow_provider_skyvern.models import RunStatus, TimelineEntry, parse_run_response
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.story import story
from airflow_provider_skyvern.runs.waiting import RunWatch
from tests.conftest import FastClock
from tests.operator_support import FakeStateStore, make_context
from tests.payloads import task_run, workflow_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")
T0 = "2026-11-22T10:00:00"


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    FastClock(monkeypatch)


def block(label: str, block_type: str, status: str, start: str, end: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "block",
        "block": {
            "workflow_run_block_id": f"wrb_{label}",
            "label": label,
            "block_type": block_type,
            "status": status,
            **fields,
        },
        "thought": None,
        "children": fields.pop("children", []),
        "created_at": start,
        "modified_at": end,
    }


FAILING_TIMELINE = [
    # newest first, as a server may send them: the story is in time order
    block(
        "extract_report",
        "extraction",
        "failed",
        "2026-11-22T10:00:09",
        "2026-11-22T10:00:21",
        failure_reason="No table found.\nTraceback (most recent call last):\n  ...",
    ),
    block("open_portal", "goto_url", "completed", "2026-11-22T10:00:01", "2026-11-22T10:00:04", duration=3.2),
    {
        "type": "thought",
        "block": None,
        "thought": {"thought": "look for the table"},
        "created_at": "2026-11-22T10:00:05",
        "modified_at": "2026-11-22T10:00:08",
        "children": [block("login", "login", "completed", "2026-11-22T10:00:05", "2026-11-22T10:00:08")],
    },
]


def failed_workflow() -> dict[str, Any]:
    return workflow_run(
        "wr_1",
        "failed",
        started_at=T0,
        finished_at="2026-11-22T10:00:22",
        failure_reason="Block extract_report failed",
    )


def test_the_story_lists_blocks_in_order_with_the_failing_blocks_reason_on_one_line() -> None:
    run = parse_run_response(failed_workflow())
    timeline = [TimelineEntry.model_validate(entry) for entry in FAILING_TIMELINE]
    assert story(run, timeline).splitlines() == [
        "Skyvern run wr_1 failed after 22s, 3 blocks:",
        "  - open_portal (goto_url): completed, 3s",
        "  - login (login): completed, 3s",
        "  - extract_report (extraction): failed, 12s: No table found. Traceback (most recent call last): ...",
    ]


def test_a_long_loop_is_cut_short() -> None:
    run = parse_run_response(workflow_run("wr_1", "completed"))
    timeline = [
        TimelineEntry.model_validate(block(f"b{i:03d}", "task", "completed", T0, T0)) for i in range(40)
    ]
    lines = story(run, timeline).splitlines()
    assert len(lines) == 1 + 25 + 1
    assert lines[-1] == "  ... and 15 more blocks (see the run in Skyvern)"


def blocking_run(skyvern: respx.MockRouter, final: dict[str, Any], prompt: str = "Extract the table") -> Any:
    skyvern.post("/v1/run/tasks").respond(200, json=task_run(final["run_id"], "created"))
    skyvern.get(f"/v1/runs/{final['run_id']}").respond(200, json=final)
    operator = SkyvernRunTaskOperator(task_id="extract", prompt=prompt, deferrable=False, poll_interval=0.001)
    return operator.execute(make_context(FakeStateStore()))


def test_a_failed_run_logs_its_story_before_it_fails(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.routes["timeline"].respond(200, json=FAILING_TIMELINE)
    final = task_run(
        "tsk_v2_1",
        "failed",
        failure_reason="Block extract_report failed",
        started_at=T0,
        finished_at="2026-11-22T10:00:22",
    )
    with pytest.raises(SkyvernRunFailedError, match="ended failed: Block extract_report failed"):
        blocking_run(skyvern, final)
    log = capsys.readouterr().out
    assert "Skyvern run tsk_v2_1 failed after 22s, 3 blocks:" in log
    assert "- extract_report (extraction): failed, 12s: No table found." in log
    assert skyvern.routes["timeline"].call_count == 1


def test_an_unreadable_timeline_costs_a_warning_not_the_task(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.routes["timeline"].mock(return_value=httpx.Response(404, json={"detail": "Run not found"}))
    final = task_run("tsk_v2_1", "completed", output={"total": 42})
    assert blocking_run(skyvern, final) == {"total": 42}
    assert "Could not read the timeline of Skyvern run tsk_v2_1" in capsys.readouterr().out


def test_a_skyvern_1_task_has_no_timeline_to_ask_for(skyvern: respx.MockRouter) -> None:
    final = task_run("tsk_1", "completed", run_type="task_v1", output={"total": 42})
    assert blocking_run(skyvern, final) == {"total": 42}
    assert skyvern.routes["timeline"].call_count == 0  # Skyvern answers 400 for these


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args if args else message)

    def warning(self, message: str, *args: Any) -> None:
        self.lines.append(message % args if args else message)


def test_progress_lines_say_the_time_left_and_where_a_person_must_act() -> None:
    from airflow_provider_skyvern.hooks.clock import Clock

    class Fixed(Clock):
        def time(self) -> float:
            return 1_000.0

    log = Log()
    watch = RunWatch(log, "wr_1", 1_000.0 + 29 * 60 + 40, limit="timeout=1800s", clock=Fixed())
    watch.observe(run=parse_run_response(workflow_run("wr_1", "running", step_count=2)))
    watch.observe(run=parse_run_response(workflow_run("wr_1", "paused", step_count=3)))
    assert log.lines == [
        "Skyvern run wr_1: running (step 2) (29m 40s left before timeout=1800s)",
        "Skyvern run wr_1: paused (step 3) - paused at a Human Interaction block: a person must act at "
        "https://app.skyvern.com/runs/wr_1; the timeout still applies (29m 40s left before timeout=1800s)",
    ]
    assert RunStatus.paused.is_terminal is False
