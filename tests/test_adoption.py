"""Issue 17 rows 2 and 9: a lost POST answer never adopts what cannot be proven this task's, and one look
for it costs a bounded number of requests whatever else the organisation runs."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator, SkyvernRunWorkflowOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY, run_tag
from tests.conftest import FastClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context
from tests.payloads import run_list_item, task_run, workflow_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")
PROMPT = "Extract the top 3 products"
URL = "https://example.com/products"
WPID = "wpid_123"
PARAMETERS = {"report_date": "2026-11-30"}
FIRST, SECOND = (
    FakeTaskInstance(dag_id="first_dag", max_tries=3),
    FakeTaskInstance(dag_id="second_dag", max_tries=3),
)


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    FastClock(monkeypatch)


def skyvern_time(offset: float = 0.0) -> str:
    """Skyvern's naive UTC ``created_at``, ``offset`` seconds from now."""
    return datetime.fromtimestamp(time.time() + offset, tz=timezone.utc).replace(tzinfo=None).isoformat()


def dated(rows: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, json=rows, headers={"date": formatdate(usegmt=True)})


def task_echo(prompt: str = PROMPT) -> dict[str, Any]:
    return {"prompt": prompt, "url": URL, "engine": "skyvern-2.0", "title": None}


def v2_operator() -> SkyvernRunTaskOperator:
    return SkyvernRunTaskOperator(
        task_id="extract", prompt=PROMPT, url=URL, engine="skyvern-2.0", deferrable=True
    )


def when(store: FakeStateStore) -> str:
    settles = store.values[STATE_KEY]["since"] + SkyvernHook().settings.request_timeout + 120
    return datetime.fromtimestamp(settles, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---- row 2 ---------------------------------------------------------------------------------------------


def test_a_second_dags_lost_v2_post_does_not_adopt_the_first_dags_run(skyvern: respx.MockRouter) -> None:
    """Two DAGs with the same prompt; the second's POST gets a proxy's 502 and created nothing. The first's
    run (same echoed request, created 10 s before) was adopted by the old 300 s window."""
    post = skyvern.post("/v1/run/tasks").respond(502)
    listing = skyvern.get("/v1/runs").mock(
        side_effect=lambda request: dated(
            [run_list_item("tsk_v2_first", "running", "Fake v2 task", created_at=skyvern_time(-10))]
        )
    )
    first = skyvern.get("/v1/runs/tsk_v2_first").respond(
        200, json=task_run("tsk_v2_first", "running", run_request=task_echo())
    )
    store = FakeStateStore()
    with pytest.raises(SkyvernError) as raised:
        v2_operator().execute(make_context(store, SECOND))
    assert str(raised.value) == (
        "Skyvern POST /v1/run/tasks -> HTTP 502: empty body; could not tell whether a Skyvern run was created: "
        f"none matching this request is listed yet, and one it created would be listed by {when(store)}; not "
        "starting another run before then; a try after then starts one if none is listed"
    )
    assert store.values[STATE_KEY]["run_id"] is None  # nothing adopted
    assert (post.call_count, first.call_count) == (1, 0)  # the other DAG's run is not even read
    params = listing.calls.last.request.url.params
    assert (params["run_type"], params["search_key"]) == ("task_v2", URL)  # Skyvern searches a v2 run's url


def test_a_second_dags_lost_workflow_post_does_not_adopt_the_first_dags_run(
    skyvern: respx.MockRouter,
) -> None:
    """The same for a workflow, even when both POSTs come in the same second: the first's run carries the
    first task instance's tag in ``run_metadata``, and the list is filtered by this one's."""
    first_tag = run_tag(make_context(ti=FIRST))

    def listed(request: httpx.Request) -> httpx.Response:
        wanted = request.url.params.get("tags")
        row = run_list_item(
            "wr_first", "running", "Monthly report", run_type="workflow_run", created_at=skyvern_time()
        )
        row["workflow_permanent_id"] = WPID
        return dated([row] if wanted in (None, f"airflow:{first_tag}") else [])

    post = skyvern.post("/v1/run/agents").respond(502)
    skyvern.get("/v1/runs").mock(side_effect=listed)
    skyvern.get("/v1/runs/wr_first").respond(
        200,
        json=workflow_run(
            "wr_first",
            "running",
            run_request={"workflow_id": WPID, "parameters": PARAMETERS, "title": "Monthly report"},
        ),
    )
    store = FakeStateStore()
    operator = SkyvernRunWorkflowOperator(
        task_id="report", workflow_id=WPID, parameters=PARAMETERS, deferrable=True
    )
    with pytest.raises(SkyvernError, match="could not tell whether a Skyvern run was created: none matching"):
        operator.execute(make_context(store, SECOND))
    assert store.values[STATE_KEY]["run_id"] is None
    assert post.call_count == 1


def test_the_only_v2_run_created_after_the_post_began_is_still_adopted(skyvern: respx.MockRouter) -> None:
    """The rule keeps what it must: this task's own run, created after its POST began, the only one."""
    skyvern.post("/v1/run/tasks").mock(side_effect=httpx.ReadTimeout("timed out"))
    skyvern.get("/v1/runs").mock(
        side_effect=lambda request: dated(
            [
                run_list_item("tsk_v2_mine", "queued", "New Workflow", created_at=skyvern_time()),
                run_list_item("tsk_v2_first", "running", "Fake v2 task", created_at=skyvern_time(-10)),
            ]
        )
    )
    skyvern.get("/v1/runs/tsk_v2_mine").respond(
        200, json=task_run("tsk_v2_mine", "queued", run_request=task_echo())
    )
    with pytest.raises(TaskDeferred) as deferred:
        v2_operator().execute(make_context(FakeStateStore(), SECOND))
    assert deferred.value.trigger.run_id == "tsk_v2_mine"


def test_two_runs_with_this_request_created_after_the_post_are_could_not_tell(
    skyvern: respx.MockRouter,
) -> None:
    skyvern.post("/v1/run/tasks").respond(502)
    skyvern.get("/v1/runs").mock(
        side_effect=lambda request: dated(
            [
                run_list_item("tsk_v2_a", "queued", created_at=skyvern_time()),
                run_list_item("tsk_v2_b", "queued", created_at=skyvern_time()),
            ]
        )
    )
    skyvern.get(url__regex=r"/v1/runs/tsk_v2_[ab]$").mock(
        side_effect=lambda request: httpx.Response(
            200, json=task_run(request.url.path.rsplit("/", 1)[1], "queued", run_request=task_echo())
        )
    )
    with pytest.raises(
        SkyvernError, match=r"2 Skyvern runs \(tsk_v2_a, tsk_v2_b\) match this submission's request"
    ):
        v2_operator().execute(make_context(FakeStateStore(), SECOND))


def test_without_a_date_header_an_untagged_run_is_not_adopted(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks").respond(502)
    skyvern.get("/v1/runs").mock(
        side_effect=lambda request: httpx.Response(
            200, json=[run_list_item("tsk_v2_mine", "queued", created_at=skyvern_time())]
        )
    )
    read = skyvern.get("/v1/runs/tsk_v2_mine").respond(
        200, json=task_run("tsk_v2_mine", "queued", run_request=task_echo())
    )
    with pytest.raises(SkyvernError, match="carried no Date header to compare its clock"):
        v2_operator().execute(make_context(FakeStateStore(), SECOND))
    assert read.call_count == 0


# ---- row 9 ---------------------------------------------------------------------------------------------


def test_one_look_costs_at_most_five_requests_whatever_else_the_organisation_runs(
    skyvern: respx.MockRouter,
) -> None:
    """60 other skyvern-2.0 runs created around the POST: the old lookup read every one of them on each of
    its 4 looks (244 requests); now each look sends at most 5, and 60 candidates are 'could not tell'."""
    skyvern.post("/v1/run/tasks").respond(502)
    others = [(f"tsk_v2_{n}", skyvern_time(1 + n / 100)) for n in range(60)]
    listing = skyvern.get("/v1/runs").mock(
        side_effect=lambda request: dated(
            [run_list_item(rid, "running", created_at=at) for rid, at in others]
        )
    )
    reads = skyvern.get(url__regex=r"/v1/runs/tsk_v2_\d+$").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json=task_run(
                request.url.path.rsplit("/", 1)[1], "running", run_request=task_echo("another prompt")
            ),
        )
    )
    with pytest.raises(SkyvernError) as raised:
        v2_operator().execute(make_context(FakeStateStore(), SECOND))
    sent = listing.call_count + reads.call_count
    print(f"\nrequests sent by the lookup: {sent} ({listing.call_count} lists, {reads.call_count} GETs)")
    assert sent <= 5 * 4
    assert reads.call_count == 0
    assert (
        "60 Skyvern runs that could be this submission's were created around then; not reading more than 4"
        in str(raised.value)
    )


def test_a_candidate_that_cannot_be_read_is_could_not_tell_not_a_failed_lookup(
    skyvern: respx.MockRouter,
) -> None:
    """Another task's run whose GET exhausts its retries: this try says it could not tell, at once, and the
    candidate read is bounded (not the hook's whole total_timeout)."""
    skyvern.post("/v1/run/tasks").respond(502)
    skyvern.get("/v1/runs").mock(
        side_effect=lambda request: dated(
            [
                run_list_item("tsk_v2_mine", "queued", created_at=skyvern_time()),
                run_list_item("tsk_v2_other", "running", created_at=skyvern_time()),
            ]
        )
    )
    skyvern.get("/v1/runs/tsk_v2_mine").respond(
        200, json=task_run("tsk_v2_mine", "queued", run_request=task_echo())
    )
    broken = skyvern.get("/v1/runs/tsk_v2_other").respond(
        503, json={"detail": "Database temporarily unavailable"}
    )
    store = FakeStateStore()
    with pytest.raises(SkyvernError) as raised:
        v2_operator().execute(make_context(store, SECOND))
    message = str(raised.value)
    assert (
        "could not tell whether a Skyvern run was created: 1 Skyvern run that could be this submission's could not be read (tsk_v2_other: "
        in message
    )
    assert "looking for it failed" not in message
    assert broken.call_count <= 4 * 3  # max_retries 2: three attempts per look
    assert store.values[STATE_KEY]["run_id"] is None


def test_a_post_that_never_left_this_machine_needs_no_settle_window(skyvern: respx.MockRouter) -> None:
    """Connection refused: nothing was sent, so nothing is recorded and the next try submits at once."""
    post = skyvern.post("/v1/run/tasks").mock(side_effect=httpx.ConnectError("connection refused"))
    store = FakeStateStore()
    with pytest.raises(SkyvernError, match="before the request was sent"):
        v2_operator().execute(make_context(store, SECOND))
    assert store.values == {}
    post.mock(side_effect=None).respond(200, json=task_run("tsk_v2_1", "queued", run_request=task_echo()))
    with pytest.raises(TaskDeferred):
        v2_operator().execute(
            make_context(store, FakeTaskInstance(dag_id="second_dag", try_number=2, max_tries=3))
        )
    assert post.call_count == 4 + 1  # try 1: 4 refused attempts (max_retries 3, never sent); try 2: one


@pytest.mark.parametrize(("keeps_title", "kept_in"), [(True, "title"), (False, None)])
def test_a_record_written_with_keeps_title_reads_as_where_its_tag_is_kept(
    keeps_title: bool, kept_in: Any
) -> None:
    from airflow_provider_skyvern.runs.ledger import Submission

    old = {"version": 2, "phase": "submitting", "tag": "airflow-0", "fingerprint": "f", "echoed": {}}
    record = Submission.model_validate({**old, "keeps_title": keeps_title, "since": 1.0})
    assert record.tag_kept_in == kept_in
    assert "keeps_title" not in record.model_dump()


def test_a_workflow_tag_joins_the_users_run_metadata_unless_it_has_no_room() -> None:
    from airflow_provider_skyvern.models import WorkflowRunRequest
    from airflow_provider_skyvern.runs.kinds import WorkflowRun

    tagged = WorkflowRun(WorkflowRunRequest(workflow_id=WPID, run_metadata={"team": "data"})).tagged(
        "x", "airflow-1"
    )
    assert tagged.request.run_metadata == {"team": "data", "airflow": "airflow-1"}
    assert (tagged.tag_kept_in, tagged.keeps_title) == ("run_metadata", False)  # no store: no reattach
    full = WorkflowRun(WorkflowRunRequest(workflow_id=WPID, run_metadata={f"k{n}": "v" for n in range(20)}))
    assert (full.tagged("x", "airflow-1"), full.tag_kept_in, full.keeps_title) == (full, None, False)
    theirs = WorkflowRun(WorkflowRunRequest(workflow_id=WPID, run_metadata={"airflow": "mine"}))
    assert theirs.tagged("x", "airflow-1").request.run_metadata == {"airflow": "mine"}
