"""SkyvernHook against respx: exact requests on the wire, connection parsing, test_connection."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_skyvern.exceptions import SkyvernConnectionError
from airflow_provider_skyvern.hooks import calls
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import (
    ArtifactType,
    CreateBrowserSessionRequest,
    RunStatus,
    TaskRunRequest,
    TaskRunResponse,
    WorkflowRunRequest,
    WorkflowRunResponse,
)
from tests.conftest import API_KEY, BASE_URL, InstantClock, set_connection
from tests.payloads import (
    artifact,
    browser_session,
    run_list_item,
    task_run,
    timeline_entry,
    webhook_replay,
    workflow_run,
)

pytestmark = pytest.mark.usefixtures("skyvern_conn")

EVERY_SEED_PARAMETER = TaskRunRequest(
    prompt="Extract the name, price, and rating of the top 3 products",
    url="https://example.com/products",
    engine="skyvern_v2",
    max_steps=10,
    data_extraction_schema={
        "type": "array",
        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
    },
    proxy_location="RESIDENTIAL_GB",
    browser_session_id="pbs_123",
    publish_workflow=False,
    webhook_url="https://hooks.example.com/skyvern",
    error_code_mapping={"OUT_OF_STOCK": "The product is out of stock"},
    totp_identifier="ops@example.com",
    totp_url="https://totp.example.com/code",
    title="airflow nightly products",
    model={"name": "gpt-4.1"},
    extra_http_headers={"Accept-Language": "en-GB"},
    include_action_history_in_verification=True,
    max_screenshot_scrolls=3,
    browser_address="http://127.0.0.1:9222",
    run_with="agent",
)


def _body(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


def _headers(route: respx.Route) -> httpx.Headers:
    return route.calls.last.request.headers


@respx.mock(base_url=BASE_URL, assert_all_called=True)
def test_run_task_sends_every_seed_parameter_once(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))

    run = SkyvernHook().run_task(EVERY_SEED_PARAMETER, user_agent="nightly-dag")

    assert isinstance(run, TaskRunResponse)
    assert run.run_id == "tsk_v2_1"
    assert route.call_count == 1
    request = route.calls.last.request
    assert (request.method, request.url.path) == ("POST", "/v1/run/tasks")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["x-user-agent"] == "nightly-dag"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("airflow-provider-skyvern/")
    assert _body(route) == {
        "prompt": "Extract the name, price, and rating of the top 3 products",
        "url": "https://example.com/products",
        "engine": "skyvern-2.0",
        "max_steps": 10,
        "data_extraction_schema": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
        "proxy_location": "RESIDENTIAL_GB",
        "browser_session_id": "pbs_123",
        "publish_workflow": False,
        "webhook_url": "https://hooks.example.com/skyvern",
        "error_code_mapping": {"OUT_OF_STOCK": "The product is out of stock"},
        "totp_identifier": "ops@example.com",
        "totp_url": "https://totp.example.com/code",
        "title": "airflow nightly products",
        "model": {"name": "gpt-4.1"},
        "extra_http_headers": {"Accept-Language": "en-GB"},
        "include_action_history_in_verification": True,
        "max_screenshot_scrolls": 3,
        "browser_address": "http://127.0.0.1:9222",
        "run_with": "agent",
    }


@respx.mock(base_url=BASE_URL)
def test_unset_fields_are_omitted_and_no_user_agent_header_by_default(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post("/v1/run/tasks").respond(
        200, json=task_run("tsk_1", "created", run_type="task_v1")
    )

    SkyvernHook().run_task(TaskRunRequest(prompt="Get the page title"))

    assert _body(route) == {"prompt": "Get the page title"}
    assert "x-user-agent" not in _headers(route)


@pytest.mark.parametrize(
    ("path", "send", "body"),
    [
        (
            "/v1/run/tasks",
            lambda h: h.run_task(TaskRunRequest(prompt="p", engine=None, publish_workflow=None, url=None)),
            {"prompt": "p"},
        ),
        (
            "/v1/run/agents",
            lambda h: h.run_workflow(WorkflowRunRequest(workflow_id="wpid_7", start_fresh_browser=None)),
            {"agent_id": "wpid_7"},
        ),
        (
            "/v1/browser_sessions",
            lambda h: h.create_browser_session(CreateBrowserSessionRequest(generate_browser_profile=None)),
            {},
        ),
    ],
    ids=["run_task", "run_workflow", "create_browser_session"],
)
def test_fields_set_to_none_are_not_sent_as_null(
    path: str, send: Callable[[SkyvernHook], Any], body: dict[str, Any]
) -> None:
    """Skyvern 1.0.56 answers ``"engine": null`` (and the other non-nullable fields) with 422."""
    answers = {
        "/v1/run/tasks": task_run("tsk_1", "created", run_type="task_v1"),
        "/v1/run/agents": workflow_run("wr_1", "created"),
        "/v1/browser_sessions": browser_session("pbs_1"),
    }
    with respx.mock(base_url=BASE_URL) as mock:
        route = mock.post(path).respond(200, json=answers[path])
        send(SkyvernHook())
    assert _body(route) == body


# Each case: the sync call, the async call, the expected method/path/query/body, the mocked answer.
CallCase = tuple[
    Callable[[SkyvernHook], Any],
    Callable[[SkyvernHook], Awaitable[Any]],
    str,
    str,
    list[tuple[str, str]],
    Any,
    Any,
]

CASES: dict[str, CallCase] = {
    "run_workflow": (
        lambda h: h.run_workflow(
            WorkflowRunRequest(workflow_id="wpid_7", parameters={"q": 1}), max_steps_override=5
        ),
        lambda h: h.arun_workflow(
            WorkflowRunRequest(workflow_id="wpid_7", parameters={"q": 1}), max_steps_override=5
        ),
        "POST",
        "/v1/run/agents",
        [],
        {"agent_id": "wpid_7", "parameters": {"q": 1}},
        workflow_run("wr_1", "created"),
    ),
    "get_run": (
        lambda h: h.get_run("tsk_v2_1"),
        lambda h: h.aget_run("tsk_v2_1"),
        "GET",
        "/v1/runs/tsk_v2_1",
        [],
        None,
        task_run("tsk_v2_1", "running"),
    ),
    "cancel_run": (
        lambda h: h.cancel_run("tsk_v2_1"),
        lambda h: h.acancel_run("tsk_v2_1"),
        "POST",
        "/v1/runs/tsk_v2_1/cancel",
        [],
        None,
        None,
    ),
    "get_run_timeline": (
        lambda h: h.get_run_timeline("wr_1"),
        lambda h: h.aget_run_timeline("wr_1"),
        "GET",
        "/v1/runs/wr_1/timeline",
        [],
        None,
        [timeline_entry()],
    ),
    "get_run_artifacts": (
        lambda h: h.get_run_artifacts("tsk_1", ["recording", "screenshot_final"]),
        lambda h: h.aget_run_artifacts("tsk_1", ["recording", "screenshot_final"]),
        "GET",
        "/v1/runs/tsk_1/artifacts",
        [("artifact_type", "recording"), ("artifact_type", "screenshot_final")],
        None,
        [artifact("a_1")],
    ),
    "get_artifact": (
        lambda h: h.get_artifact("a_1"),
        lambda h: h.aget_artifact("a_1"),
        "GET",
        "/v1/artifacts/a_1",
        [],
        None,
        artifact("a_1"),
    ),
    "retry_run_webhook": (
        lambda h: h.retry_run_webhook("tsk_1", "https://hooks.example.com/x"),
        lambda h: h.aretry_run_webhook("tsk_1", "https://hooks.example.com/x"),
        "POST",
        "/v1/runs/tsk_1/retry_webhook",
        [],
        {"webhook_url": "https://hooks.example.com/x"},
        webhook_replay("tsk_1"),
    ),
    "list_runs": (
        lambda h: h.list_runs(search_key="af-dag-task", statuses=["running", "queued"], page_size=5),
        lambda h: h.alist_runs(search_key="af-dag-task", statuses=["running", "queued"], page_size=5),
        "GET",
        "/v1/runs",
        [
            ("page", "1"),
            ("page_size", "5"),
            ("status", "running"),
            ("status", "queued"),
            ("search_key", "af-dag-task"),
        ],
        None,
        [run_list_item("tsk_1")],
    ),
    "create_browser_session": (
        lambda h: h.create_browser_session(CreateBrowserSessionRequest(timeout=30)),
        lambda h: h.acreate_browser_session(CreateBrowserSessionRequest(timeout=30)),
        "POST",
        "/v1/browser_sessions",
        [],
        {"timeout": 30},
        browser_session("pbs_1"),
    ),
    "get_browser_session": (
        lambda h: h.get_browser_session("pbs_1"),
        lambda h: h.aget_browser_session("pbs_1"),
        "GET",
        "/v1/browser_sessions/pbs_1",
        [],
        None,
        browser_session("pbs_1"),
    ),
    "close_browser_session": (
        lambda h: h.close_browser_session("pbs_1"),
        lambda h: h.aclose_browser_session("pbs_1"),
        "POST",
        "/v1/browser_sessions/pbs_1/close",
        [],
        None,
        {"message": "Browser session closed"},
    ),
}


def test_each_endpoint_of_the_table_is_a_sync_and_an_async_method_with_one_signature() -> None:
    table = {
        name
        for name, factory in vars(calls).items()
        if not name.startswith("_")
        and inspect.isfunction(factory)
        and str(inspect.signature(factory).return_annotation).startswith("ApiCall[")
    }
    assert set(CASES) < table
    hook = SkyvernHook()
    for name in table:
        sync, asynchronous = getattr(hook, name), getattr(hook, f"a{name}")
        assert (
            inspect.signature(sync) == inspect.signature(asynchronous) == inspect.signature(vars(calls)[name])
        )
        assert inspect.iscoroutinefunction(asynchronous)
        assert not inspect.iscoroutinefunction(sync)


def _assert_request(
    route: respx.Route, method: str, path: str, query: list[tuple[str, str]], body: Any
) -> None:
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == method
    assert request.url.path == path
    assert list(request.url.params.multi_items()) == query
    assert request.headers["x-api-key"] == API_KEY
    if body is None:
        assert request.content in (b"", b"null")
    else:
        assert json.loads(request.content) == body


@pytest.mark.parametrize("name", list(CASES))
def test_sync_call_sends_exact_request(name: str) -> None:
    sync_call, _, method, path, query, body, answer = CASES[name]
    with respx.mock(base_url=BASE_URL) as mock:
        route = mock.request(method, path).respond(200, json=answer)
        result = sync_call(SkyvernHook())
    _assert_request(route, method, path, query, body)
    if answer is None or name == "close_browser_session":
        assert result is None
    else:
        assert result is not None


@pytest.mark.parametrize("name", list(CASES))
async def test_async_call_sends_exact_request(name: str) -> None:
    _, async_call, method, path, query, body, answer = CASES[name]
    with respx.mock(base_url=BASE_URL) as mock:
        route = mock.request(method, path).respond(200, json=answer)
        hook = SkyvernHook()
        result = await async_call(hook)
        await hook.aclose()
    _assert_request(route, method, path, query, body)
    if answer is not None and name != "close_browser_session":
        assert result is not None


@pytest.mark.parametrize(
    ("template", "query"),
    [(None, []), (False, []), (True, [("template", "true")])],
)
async def test_run_workflow_posts_to_run_agents_with_the_template_query_of_the_sdk(
    template: bool | None, query: list[tuple[str, str]]
) -> None:
    """SDK 1.0.56: ``POST /v1/run/agents``, body key ``agent_id``; a given template is always in the query."""
    request = WorkflowRunRequest(workflow_id="wpid_7")
    with respx.mock(base_url=BASE_URL) as mock:
        route = mock.post("/v1/run/agents").respond(200, json=workflow_run("wr_1", "created"))
        hook = SkyvernHook()
        hook.run_workflow(request, template=template)
        await hook.arun_workflow(request, template=template)
        await hook.aclose()
    assert route.call_count == 2
    for call in route.calls:
        assert list(call.request.url.params.multi_items()) == query
        assert json.loads(call.request.content) == {"agent_id": "wpid_7"}


@pytest.mark.parametrize("one_type", ["recording", ArtifactType.recording])
async def test_one_bare_artifact_type_is_one_filter_sync_and_async(one_type: ArtifactType | str) -> None:
    """A str is iterable: a bare type must not go out as one ``artifact_type`` per letter."""
    with respx.mock(base_url=BASE_URL) as mock:
        route = mock.get("/v1/runs/tsk_1/artifacts").respond(200, json=[artifact("a_1")])
        hook = SkyvernHook()
        hook.get_run_artifacts("tsk_1", one_type)
        await hook.aget_run_artifacts("tsk_1", one_type)
        await hook.aclose()
    assert route.call_count == 2
    for call in route.calls:
        assert list(call.request.url.params.multi_items()) == [("artifact_type", "recording")]


@respx.mock(base_url=BASE_URL)
def test_get_run_parses_task_and_workflow_runs(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "completed", output={"a": 1}))
    respx_mock.get("/v1/runs/wr_1").respond(200, json=workflow_run("wr_1", "running"))
    hook = SkyvernHook()

    task = hook.get_run("tsk_v2_1")
    workflow = hook.get_run("wr_1")

    assert isinstance(task, TaskRunResponse)
    assert task.status is RunStatus.completed
    assert task.output == {"a": 1}
    assert isinstance(workflow, WorkflowRunResponse)


@respx.mock(base_url=BASE_URL)
def test_path_ids_are_escaped(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get(url__regex=r".*/v1/runs/.*").respond(200, json=task_run("x", "running"))

    SkyvernHook().get_run("../admin?x=1")

    assert route.calls.last.request.url.raw_path == b"/v1/runs/..%2Fadmin%3Fx%3D1"


def test_empty_run_id_is_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="run_id must be a non-empty string"):
        SkyvernHook().get_run(" ")


@respx.mock(base_url=BASE_URL)
def test_one_client_is_reused_across_calls(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v1/runs/tsk_1").respond(200, json=task_run("tsk_1", "running"))
    hook = SkyvernHook()
    hook.get_run("tsk_1")
    first = hook.get_conn()
    hook.get_run("tsk_1")
    assert hook.get_conn() is first
    hook.close()
    assert first.is_closed


@respx.mock(base_url=BASE_URL)
async def test_one_async_client_is_reused_across_calls(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v1/runs/tsk_1").respond(200, json=task_run("tsk_1", "running"))
    async with SkyvernHook() as hook:
        await hook.aget_run("tsk_1")
        first = await hook.aget_conn()
        await hook.aget_run("tsk_1")
        assert await hook.aget_conn() is first
    assert first.is_closed


# ---- connection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "https://api.skyvern.com"),
        ("", "https://api.skyvern.com"),
        ("https://api.skyvern.com/", "https://api.skyvern.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("localhost:8000", "http://localhost:8000"),
        ("skyvern.internal.example.com", "https://skyvern.internal.example.com"),
        ("skyvern.internal:8000", "http://skyvern.internal:8000"),  # a LAN install: http
        ("skyvern.example.com:8000", "http://skyvern.example.com:8000"),  # a port other than 443
        ("skyvern.example.com:443", "https://skyvern.example.com:443"),
        ("skyvern", "http://skyvern"),  # no dot: a LAN or container name
        ("skyvern.lan", "http://skyvern.lan"),
        ("box.local/skyvern", "http://box.local/skyvern"),
        ("http://10.0.0.5:8000/skyvern", "http://10.0.0.5:8000/skyvern"),
    ],
)
def test_base_url_from_host(monkeypatch: pytest.MonkeyPatch, host: str | None, expected: str) -> None:
    set_connection(monkeypatch, host=host)
    assert SkyvernHook().settings.base_url == expected


def test_uri_form_connection_with_port_and_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SKYVERN_SELF", f"skyvern://:{API_KEY}@localhost:8000?request_timeout=12.5&max_retries=2"
    )
    settings = SkyvernHook("skyvern_self").settings
    assert settings.base_url == "http://localhost:8000"
    assert settings.api_key == API_KEY
    assert settings.request_timeout == 12.5
    assert settings.max_retries == 2


def _connection_with_port(monkeypatch: pytest.MonkeyPatch, host: str, port: int) -> None:
    conn = {"conn_type": "skyvern", "host": host, "port": port, "password": API_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_SKYVERN_DEFAULT", json.dumps(conn))


def test_the_port_field_is_honoured_and_a_conflicting_one_fails_naming_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _connection_with_port(monkeypatch, "skyvern.internal", 8000)
    assert SkyvernHook().settings.base_url == "http://skyvern.internal:8000"
    _connection_with_port(monkeypatch, "skyvern.example.com", 8443)  # the field's port counts as explicit
    assert SkyvernHook().settings.base_url == "http://skyvern.example.com:8443"
    _connection_with_port(monkeypatch, "https://skyvern.example.com:8443", 8443)  # the same port: fine
    assert SkyvernHook().settings.base_url == "https://skyvern.example.com:8443"
    _connection_with_port(monkeypatch, "https://skyvern.example.com:8443", 9000)
    with pytest.raises(SkyvernConnectionError) as raised:
        _ = SkyvernHook().settings
    assert str(raised.value) == (
        "Skyvern connection 'skyvern_default': its host https://skyvern.example.com:8443 says port 8443 "
        "but its port field says 9000; keep one of them"
    )


def test_defaults_when_extras_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)
    settings = SkyvernHook().settings
    assert (settings.request_timeout, settings.max_retries) == (60.0, 5)


def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, password=None)
    with pytest.raises(Exception, match=r"'skyvern_default' has no API key: set its password"):
        _ = SkyvernHook().settings


def test_bad_extra_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, extra={"request_timeout": "soon"})
    with pytest.raises(Exception, match=r"extra 'request_timeout' must be a number, got 'soon'"):
        _ = SkyvernHook().settings


async def test_async_settings_resolve_the_same_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="http://127.0.0.1:8123", extra={"max_retries": 1})
    settings = await SkyvernHook().aget_settings()
    assert (settings.base_url, settings.max_retries) == ("http://127.0.0.1:8123", 1)


def test_connection_get_hook_builds_a_skyvern_hook() -> None:
    from airflow_provider_skyvern.compat import BaseHook

    hook = BaseHook.get_hook("skyvern_default")
    assert isinstance(hook, SkyvernHook)
    assert hook.skyvern_conn_id == "skyvern_default"


# ---- test_connection ------------------------------------------------------------------------------


@respx.mock(base_url=BASE_URL)
def test_test_connection_ok(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get("/v1/runs").respond(200, json=[])
    assert SkyvernHook().test_connection() == (True, f"Connected to Skyvern at {BASE_URL}")
    assert route.calls.last.request.url.params["page_size"] == "1"


@respx.mock(base_url=BASE_URL)
def test_test_connection_reports_a_rejected_key(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v1/runs").respond(403, json={"detail": "Invalid credentials"})
    ok, message = SkyvernHook().test_connection()
    assert not ok
    assert message == (
        f"Skyvern at {BASE_URL} rejected the API key (HTTP 403): check the connection's API key and base URL"
    )


def test_airflow_s_connection_test_names_no_temporary_connection_id(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.connection import Connection

    # Airflow's API server tests a form under a random id it exports as an env var, then calls
    # Connection.test_connection(), which builds the hook from it.
    monkeypatch.setenv(
        "AIRFLOW_CONN_TMPX8Q2Z",
        json.dumps({"conn_type": "skyvern", "host": BASE_URL, "extra": {"max_retries": "x"}}),
    )
    conn = Connection(conn_id="tmpX8q2Z", conn_type="skyvern", host=BASE_URL, extra='{"max_retries": "x"}')
    ok, message = conn.test_connection()
    assert not ok
    assert message == "The Skyvern connection has no API key: set its password (API key) field"
    assert "tmpX8q2Z" not in message


@respx.mock(base_url=BASE_URL)
def test_test_connection_reports_other_failures(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v1/runs").mock(side_effect=httpx.ConnectError("Connection refused"))
    hook = SkyvernHook(clock=InstantClock())
    ok, message = hook.test_connection()
    assert not ok
    assert "ConnectError: Connection refused" in message


# ---- the key stays out of every repr; one async client per event loop (issue 8, items 12-13) ------------


@respx.mock(base_url=BASE_URL)
def test_the_key_is_sent_but_no_client_or_hook_repr_shows_it(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get("/v1/runs/tsk_1").respond(200, json=task_run("tsk_1", "running"))
    with SkyvernHook() as hook:
        hook.get_run("tsk_1")
        client = hook.get_conn()
        shown = repr(client.headers) + repr(dict(client.headers)) + repr(client.auth) + repr(hook)
        shown += repr(hook.settings)
    assert route.calls.last.request.headers["x-api-key"] == API_KEY
    assert API_KEY not in shown
    assert "x-api-key" not in client.headers


@respx.mock(base_url=BASE_URL)
def test_concurrent_first_async_calls_share_one_client(
    respx_mock: respx.MockRouter, async_clients_made: list[httpx.AsyncClient]
) -> None:
    respx_mock.get("/v1/runs/tsk_1").respond(200, json=task_run("tsk_1", "running"))
    created = async_clients_made
    hook = SkyvernHook()

    async def five_at_once() -> None:
        await asyncio.gather(*(hook.aget_run("tsk_1") for _ in range(5)))
        await hook.aclose()

    asyncio.run(five_at_once())
    assert len(created) == 1
    assert created[0].is_closed
