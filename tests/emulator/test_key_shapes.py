"""An API key stored with whitespace around it works; one with a character no key has fails at once, naming
the connection and never the value; a header HTTP forbids is refused before anything is sent, and its text
(which quotes the header) never reaches a message or a log line.

Against the emulator over real HTTP: the check that refuses a bad header is h11's, which a mocked transport
never runs.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings
from airflow_provider_skyvern.exceptions import (
    SkyvernConnectionError,
    SkyvernRequestRefusedLocally,
)
from airflow_provider_skyvern.hooks.retry import is_retryable, may_have_created
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import TaskRunRequest
from tests.conftest import FastClock, set_connection

CORE = "sk-shape-CORE-7e21b0"
"""The key as Skyvern issued it; every stored shape below wraps or breaks it."""

TRIMMED_SHAPES = {
    "trailing newline (echo > file, a Kubernetes secret mount)": CORE + "\n",
    "trailing CRLF": CORE + "\r\n",
    "trailing space (a paste)": CORE + " ",
    "tabs and spaces around": "\t " + CORE + " \t",
}
BROKEN_SHAPES = {
    "a tab inside": ("sk-shape-CORE\t-7e21b0", "a tab"),
    "a line break inside": ("sk-shape-CORE\n-7e21b0", "a line break"),
    "a space inside": ("sk-shape CORE-7e21b0", "a space"),
    "non-ASCII": ("sk-shape-CORÉ-7e21b0", "a non-ASCII character"),
    "a control character": ("sk-shape-CORE\x00-7e21b0", "a control character"),
}


def leaks(text: str, key: str) -> list[str]:
    """Every form of ``key`` (and of the issued key) found in ``text``: as stored, trimmed, quoted."""
    forms = {key, key.strip(), repr(key), repr(key.encode()), CORE, "shape-CORE", "7e21b0"}
    return sorted(form for form in forms if form and form in text)


@pytest.fixture
def emulator() -> EmulatorServer:
    with EmulatorServer(EmulatorSettings(api_key=CORE, run_seconds=0.5)) as server:
        yield server


def _api_requests(emulator: EmulatorServer) -> list[dict[str, object]]:
    requests: list[dict[str, object]] = emulator.control.get("/_emulator/requests").json()["requests"]
    return requests


@pytest.mark.parametrize("stored", TRIMMED_SHAPES.values(), ids=TRIMMED_SHAPES.keys())
def test_a_key_stored_with_whitespace_around_it_works_sync_and_async(
    stored: str, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=stored, extra={"max_retries": 1})
    FastClock(monkeypatch)
    caplog.set_level(logging.DEBUG)
    with SkyvernHook() as hook:
        run = hook.run_task(TaskRunRequest(prompt="Read the page", url="https://example.com"))
        assert hook.get_run(run.run_id).run_id == run.run_id

    async def read_async() -> str:
        async with SkyvernHook() as async_hook:
            return (await async_hook.aget_run(run.run_id)).run_id

    assert asyncio.run(read_async()) == run.run_id
    assert [(r["method"], r["status"]) for r in _api_requests(emulator)] == [
        ("POST", 200),
        ("GET", 200),
        ("GET", 200),
    ]
    assert leaks(caplog.text, stored) == []


@pytest.mark.parametrize(("stored", "named"), BROKEN_SHAPES.values(), ids=BROKEN_SHAPES.keys())
def test_a_key_no_header_can_carry_fails_at_once_naming_the_connection_not_the_value(
    stored: str,
    named: str,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=stored, extra={"max_retries": 3})
    FastClock(monkeypatch)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SkyvernConnectionError) as raised, SkyvernHook() as hook:
        hook.run_task(TaskRunRequest(prompt="Read the page", url="https://example.com"))

    async def read_async() -> None:
        async with SkyvernHook() as async_hook:
            await async_hook.aget_run("tsk_1")

    with pytest.raises(SkyvernConnectionError) as raised_async:
        asyncio.run(read_async())
    message = str(raised.value)
    assert message == (
        f"Skyvern connection 'skyvern_default': its API key (password) holds {named} inside, which no "
        "Skyvern API key has; set the key again (the value is not shown)"
    )
    assert str(raised_async.value) == message
    assert not may_have_created(
        raised.value
    )  # nothing was sent: no "could not tell whether a run was created"
    assert _api_requests(emulator) == []
    everything = message + repr(raised.value) + caplog.text
    assert leaks(everything, stored) == []


def test_a_header_http_forbids_is_refused_unsent_unretried_and_unquoted(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A header value from elsewhere (here ``user_agent``, given to the hook directly, past the operators'
    checks): h11 refuses it and quotes it; the hook says what to check, without the quote, and sends
    nothing again."""
    set_connection(monkeypatch, host=emulator.base_url, password=CORE, extra={"max_retries": 3})
    clock = FastClock(monkeypatch)
    caplog.set_level(logging.DEBUG)
    value = "agent-7e21b0\r\nX-Injected: yes"
    with pytest.raises(SkyvernRequestRefusedLocally) as raised, SkyvernHook() as hook:
        hook.run_task(TaskRunRequest(prompt="Read the page", url="https://example.com"), user_agent=value)
    assert str(raised.value) == (
        f"Skyvern POST {emulator.base_url}/v1/run/tasks was not sent: a header value holds a character HTTP "
        "forbids (a line break or a control character); check the connection's API key and the task's "
        "user_agent and extra_http_headers"
    )
    assert not is_retryable(raised.value)
    assert not may_have_created(raised.value)
    assert clock.waits == []  # refused once, not retried
    assert _api_requests(emulator) == []
    assert "7e21b0" not in caplog.text + repr(raised.value)


def test_the_trimmed_key_is_registered_with_the_log_masker(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow masks the password as stored ("...\\n"), which does not match the key as sent."""
    from airflow.providers.common.compat.sdk import redact

    key = "sk-masked-ONLY-55aa01"  # no other test registers it
    set_connection(monkeypatch, host=emulator.base_url, password=key + "\n")
    line = f"a line that somehow holds {key} alone"
    assert key in str(redact(line))  # nothing resolved yet: the precondition of this test
    with SkyvernHook() as hook:
        assert hook.settings.api_key == key
    assert key not in str(redact(line))


def test_the_trimmed_key_is_registered_with_the_log_masker_from_the_event_loop(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import redact

    key = "sk-masked-ASYNC-66bb02"
    set_connection(monkeypatch, host=emulator.base_url, password=" " + key)
    line = f"a line that somehow holds {key} alone"
    assert key in str(redact(line))

    async def resolve() -> str:
        async with SkyvernHook() as hook:
            return (await hook.aget_settings()).api_key

    assert asyncio.run(resolve()) == key
    assert key not in str(redact(line))
