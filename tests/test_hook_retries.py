"""The retry policy: reads ride out transient failures; a run-creating POST is never sent twice blindly."""

from __future__ import annotations

import httpx
import pytest
import respx

from airflow_provider_skyvern.exceptions import (
    SkyvernRateLimitError,
    SkyvernServerError,
    SkyvernTransportError,
)
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import TaskRunRequest
from tests.conftest import API_KEY, BASE_URL, InstantClock, set_connection
from tests.payloads import task_run

pytestmark = pytest.mark.usefixtures("skyvern_conn")  # retry budget 3

NO_RUN_CREATED = {
    "detail": "The server is busy dispatching other runs. No run was created; retry this request."
}
REQUEST = TaskRunRequest(prompt="Get the page title", url="https://example.com")


class RecordingHook(SkyvernHook):
    """Records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.clock = InstantClock()
        super().__init__(clock=self.clock)
        self.waits = self.clock.waits


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, json={"error": "Database temporarily unavailable"}),
        httpx.Response(500, json={"error": "Unexpected error: RuntimeError"}),
        httpx.Response(502, text="<html><title>502 Bad Gateway</title></html>"),
        httpx.Response(504),
        httpx.Response(429, json={"detail": "Rate limit exceeded"}),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ConnectError("Connection refused"),
    ],
    ids=["503", "500", "502-html", "504", "429", "read-timeout", "reset", "connect-error"],
)
@respx.mock(base_url=BASE_URL)
def test_get_is_retried_on_transient_failures(
    respx_mock: respx.MockRouter, failure: httpx.Response | Exception
) -> None:
    route = respx_mock.get("/v1/runs/tsk_1").mock(
        side_effect=[failure, failure, httpx.Response(200, json=task_run("tsk_1", "running"))]
    )
    hook = RecordingHook()

    assert hook.get_run("tsk_1").run_id == "tsk_1"
    assert route.call_count == 3
    assert len(hook.waits) == 2


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
@respx.mock(base_url=BASE_URL)
def test_get_is_not_retried_on_client_errors(respx_mock: respx.MockRouter, status: int) -> None:
    route = respx_mock.get("/v1/runs/tsk_1").respond(status, json={"detail": "no"})
    with pytest.raises(Exception, match=f"HTTP {status}"):
        RecordingHook().get_run("tsk_1")
    assert route.call_count == 1


@respx.mock(base_url=BASE_URL)
def test_retry_budget_bounds_the_attempts(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get("/v1/runs/tsk_1").respond(503, json={"error": "Database temporarily unavailable"})
    hook = RecordingHook()
    with pytest.raises(SkyvernServerError, match="HTTP 503: Database temporarily unavailable"):
        hook.get_run("tsk_1")
    assert route.call_count == 4  # 1 + max_retries (3)


@respx.mock(base_url=BASE_URL)
def test_retry_after_is_honoured(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v1/runs/tsk_1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "Rate limit exceeded"}),
            httpx.Response(200, json=task_run("tsk_1", "running")),
        ]
    )
    hook = RecordingHook()
    hook.get_run("tsk_1")
    assert hook.waits == [7.0]


@respx.mock(base_url=BASE_URL)
def test_backoff_grows_and_is_capped(respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, extra={"max_retries": 12})
    respx_mock.get("/v1/runs/tsk_1").respond(502)
    hook = RecordingHook()
    with pytest.raises(SkyvernServerError):
        hook.get_run("tsk_1")
    assert len(hook.waits) == 12
    assert all(0 <= wait <= 30 for wait in hook.waits)
    assert max(hook.waits) > 1  # exponential, not a fixed short delay


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"error": "Unexpected error: RuntimeError"}),
        httpx.Response(502),
        httpx.Response(503, json={"error": "Database temporarily unavailable"}),
        httpx.Response(504),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.WriteError("broken pipe"),
    ],
    ids=["500", "502", "503-without-no-run-created", "504", "read-timeout", "reset", "write-error"],
)
@respx.mock(base_url=BASE_URL)
def test_run_creating_post_is_not_retried_when_a_run_may_exist(
    respx_mock: respx.MockRouter, failure: httpx.Response | Exception
) -> None:
    route = respx_mock.post("/v1/run/tasks").mock(
        side_effect=[failure, httpx.Response(200, json=task_run("tsk_2", "created"))]
    )
    with pytest.raises((SkyvernServerError, SkyvernTransportError)):
        RecordingHook().run_task(REQUEST)
    assert route.call_count == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("Connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.Response(429, json={"detail": "Rate limit exceeded"}),
        httpx.Response(503, headers={"Retry-After": "5"}, json=NO_RUN_CREATED),
    ],
    ids=["connect-error", "connect-timeout", "429", "503-no-run-created"],
)
@respx.mock(base_url=BASE_URL)
def test_run_creating_post_is_retried_when_no_run_was_created(
    respx_mock: respx.MockRouter, failure: httpx.Response | Exception
) -> None:
    route = respx_mock.post("/v1/run/tasks").mock(
        side_effect=[failure, httpx.Response(200, json=task_run("tsk_2", "created"))]
    )
    assert RecordingHook().run_task(REQUEST).run_id == "tsk_2"
    assert route.call_count == 2


@respx.mock(base_url=BASE_URL)
async def test_async_calls_follow_the_same_policy(respx_mock: respx.MockRouter) -> None:
    get_route = respx_mock.get("/v1/runs/tsk_1").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=task_run("tsk_1", "running"))]
    )
    post_route = respx_mock.post("/v1/run/tasks").respond(500, json={"error": "Unexpected error: KeyError"})
    hook = RecordingHook()

    assert (await hook.aget_run("tsk_1")).run_id == "tsk_1"
    with pytest.raises(SkyvernServerError):
        await hook.arun_task(REQUEST)
    await hook.aclose()

    assert get_route.call_count == 2
    assert post_route.call_count == 1


@respx.mock(base_url=BASE_URL)
def test_cancel_is_retried_like_a_read(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post("/v1/runs/tsk_1/cancel").mock(
        side_effect=[httpx.ReadTimeout("timed out"), httpx.Response(200, json=None)]
    )
    RecordingHook().cancel_run("tsk_1")
    assert route.call_count == 2


@respx.mock(base_url=BASE_URL)
def test_rate_limit_error_after_budget_says_what_to_do(respx_mock: respx.MockRouter) -> None:
    respx_mock.post("/v1/run/tasks").respond(
        429, json={"detail": "Rate limit exceeded for organization o_1."}
    )
    with pytest.raises(SkyvernRateLimitError) as raised:
        RecordingHook().run_task(REQUEST)
    assert str(raised.value).startswith(
        "Skyvern POST /v1/run/tasks -> HTTP 429: Rate limit exceeded for organization o_1. "
        "(rate limited; lower the DAG's concurrency or raise the connection's retry budget); "
        "gave up after 4 attempts in "
    )


@respx.mock(base_url=BASE_URL)
def test_retries_are_logged_without_the_key(
    respx_mock: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    respx_mock.get("/v1/runs/tsk_1").mock(
        side_effect=[
            httpx.Response(503, json={"error": "Database temporarily unavailable"}),
            httpx.Response(200, json=task_run("tsk_1", "running")),
        ]
    )
    RecordingHook().get_run("tsk_1")
    output = capsys.readouterr()
    logged = output.out + output.err
    assert "Skyvern GET /v1/runs/tsk_1 -> HTTP 503: Database temporarily unavailable; retrying in" in logged
    assert "(attempt 2 of 4)" in logged
    assert API_KEY not in logged
