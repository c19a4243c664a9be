"""Error mapping: one line with method, path, status and Skyvern's detail; never the key, never a page."""

from __future__ import annotations

import re

import httpx
import pytest
import respx

from airflow_provider_skyvern.exceptions import (
    SkyvernAuthError,
    SkyvernBadRequestError,
    SkyvernConflictError,
    SkyvernError,
    SkyvernHTTPError,
    SkyvernNotFoundError,
    SkyvernResponseError,
    SkyvernServerError,
    SkyvernTransportError,
)
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from tests.conftest import API_KEY, BASE_URL, InstantClock

pytestmark = pytest.mark.usefixtures("skyvern_conn")

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>" + "x" * 5000 + "</body></html>"
)

# (case, answer, exception class, exact message). Shown as the error table in the issue note.
ERROR_CASES: list[tuple[str, httpx.Response | Exception, type[SkyvernError], str]] = [
    (
        "wrong API key",
        httpx.Response(403, json={"detail": "Invalid credentials"}),
        SkyvernAuthError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 403: Invalid credentials (check the API key (password) of "
        "connection 'skyvern_default' and that its base URL is the right server)",
    ),
    (
        "unknown run",
        httpx.Response(404, json={"detail": "Task run not found tsk_1"}),
        SkyvernNotFoundError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 404: Task run not found tsk_1",
    ),
    (
        "404 with empty body",
        httpx.Response(404),
        SkyvernNotFoundError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 404: empty body",
    ),
    (
        "bad request",
        httpx.Response(400, json={"detail": "Invalid engine: skyvern-9.0"}),
        SkyvernBadRequestError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 400: Invalid engine: skyvern-9.0",
    ),
    (
        "validation errors",
        httpx.Response(
            422,
            json={
                "detail": [
                    {"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"},
                    {
                        "loc": ["body", "max_steps"],
                        "msg": "Input should be a valid integer",
                        "type": "int_parsing",
                    },
                ]
            },
        ),
        SkyvernBadRequestError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 422: prompt: Field required; max_steps: Input should be a valid integer",
    ),
    (
        "conflict",
        httpx.Response(409, json={"detail": "Workflow run is not final"}),
        SkyvernConflictError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 409: Workflow run is not final",
    ),
    (
        "server error",
        httpx.Response(500, json={"error": "Unexpected error: RuntimeError"}),
        SkyvernServerError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 500: Unexpected error: RuntimeError; gave up after 4 attempts in <s> s",
    ),
    (
        "proxy HTML page",
        httpx.Response(502, text=HTML_PAGE, headers={"content-type": "text/html"}),
        SkyvernServerError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 502: HTML page: 502 Bad Gateway; gave up after 4 attempts in <s> s",
    ),
    (
        "unexpected status",
        httpx.Response(418, text="I'm a teapot"),
        SkyvernHTTPError,
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 418: I'm a teapot",
    ),
    (
        "server unreachable",
        httpx.ConnectError("[Errno 111] Connection refused"),
        SkyvernTransportError,
        "Skyvern GET https://skyvern.test/v1/runs/tsk_1 failed before the request was sent: ConnectError: "
        "[Errno 111] Connection refused; gave up after 4 attempts in <s> s",
    ),
    (
        "read timeout",
        httpx.ReadTimeout("The read operation timed out"),
        SkyvernTransportError,
        "Skyvern GET https://skyvern.test/v1/runs/tsk_1 failed after the request was sent: ReadTimeout: "
        "The read operation timed out; gave up after 4 attempts in <s> s",
    ),
    (
        "not JSON",
        httpx.Response(200, text="OK"),
        SkyvernResponseError,
        "Skyvern GET /v1/runs/tsk_1 returned an unreadable response: not JSON: 'OK'",
    ),
    (
        "wrong shape",
        httpx.Response(200, json={"run_id": "tsk_1"}),
        SkyvernResponseError,
        "Skyvern GET /v1/runs/tsk_1 returned an unreadable response: 3 field error(s), first status: "
        "Field required",
    ),
]


@pytest.mark.parametrize(
    ("answer", "error_class", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
@respx.mock(base_url=BASE_URL)
def test_error_message(
    respx_mock: respx.MockRouter,
    answer: httpx.Response | Exception,
    error_class: type[SkyvernError],
    message: str,
) -> None:
    respx_mock.get("/v1/runs/tsk_1").mock(side_effect=lambda request: _raise_or_return(answer))
    hook = SkyvernHook(clock=InstantClock())

    with pytest.raises(error_class) as raised:
        hook.get_run("tsk_1")

    text = str(raised.value)
    assert re.fullmatch(re.escape(message).replace("<s>", r"\d+\.\d"), text), text
    assert "\n" not in text
    assert len(text) < 400
    assert API_KEY not in text
    assert API_KEY not in repr(raised.value)


def _raise_or_return(answer: httpx.Response | Exception) -> httpx.Response:
    if isinstance(answer, Exception):
        raise answer
    return answer


@respx.mock(base_url=BASE_URL)
def test_field_errors_are_exposed(respx_mock: respx.MockRouter) -> None:
    respx_mock.post("/v1/run/tasks").respond(
        422, json={"detail": [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]}
    )
    from airflow_provider_skyvern.models import TaskRunRequest

    with pytest.raises(SkyvernBadRequestError) as raised:
        SkyvernHook().run_task(TaskRunRequest(prompt="x"))
    assert raised.value.field_errors == {"prompt": "Field required"}
    assert raised.value.http_status == 422


def test_long_plain_text_is_trimmed() -> None:
    from airflow_provider_skyvern.exceptions import describe_error_body

    described = describe_error_body(None, "line one\n" + "y" * 2000)
    assert described.startswith("line one yyy")
    assert len(described) == 300
    assert described.endswith("…")


def test_hook_and_settings_reprs_hide_the_key() -> None:
    hook = SkyvernHook()
    assert API_KEY not in repr(hook)
    assert API_KEY not in repr(hook.settings)
    assert API_KEY not in repr(hook.get_conn())
    assert API_KEY not in str(vars(hook.get_conn()).get("_base_url"))
