"""The hook's async connection lookup inside a triggerer, for a connection only the API server knows.

A connection kept in the metadata DB (made in the UI or with ``airflow connections add``) is not in any
secrets backend the triggerer reads itself: the Task SDK asks the triggerer's supervisor for it, through
the comms channel the triggerer sets up on its event loop (``TriggerCommsDecoder``). Here that channel is
real (the installed Airflow's class, over a socket pair) and a thread plays the supervisor. An env-var
connection, which the rest of the suite uses, is read without it, but its key is still reported to the
supervisor through it (to be masked in the logs).
"""

from __future__ import annotations

import asyncio
import socket
import threading

import msgspec
import pytest
from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import ConnectionResult, _RequestFrame, _ResponseFrame

from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from tests.conftest import API_KEY, BASE_URL, set_connection


def _supervisor(sock: socket.socket, asked: list[dict[str, object]]) -> None:
    """Answers every request frame with the ``skyvern_default`` connection, as the triggerer's parent does."""
    decoder = msgspec.msgpack.Decoder(_RequestFrame)
    answer = ConnectionResult.model_validate(
        {"conn_id": "skyvern_default", "conn_type": "skyvern", "host": BASE_URL, "password": API_KEY}
        | {"schema": None, "login": None, "port": None, "extra": None}
    )
    with sock, sock.makefile("rb") as stream:  # closed on any error: the waiting lookup fails at once
        while size := stream.read(4):
            request = decoder.decode(stream.read(int.from_bytes(size, "big")))
            asked.append(request.body or {})
            sock.sendall(_ResponseFrame(id=request.id, body=answer.model_dump(by_alias=True)).as_bytes())


@pytest.mark.parametrize("kept_in", ["api_server", "env_var"])
async def test_the_connection_resolves_in_the_triggerer(
    monkeypatch: pytest.MonkeyPatch, kept_in: str
) -> None:
    if kept_in == "api_server":  # the metadata DB: only the supervisor can answer
        monkeypatch.delenv("AIRFLOW_CONN_SKYVERN_DEFAULT", raising=False)
    else:
        set_connection(monkeypatch)
    ours, theirs = socket.socketpair()
    asked: list[dict[str, object]] = []
    threading.Thread(target=_supervisor, args=(theirs, asked), daemon=True).start()
    reader, writer = await asyncio.open_connection(sock=ours)
    comms = TriggerCommsDecoder(socket=ours, async_writer=writer, async_reader=reader)
    if hasattr(comms, "start_reader"):  # Airflow 3.2+: responses are read by a task on the triggerer's loop
        await comms.start_reader()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    try:
        settings = await asyncio.wait_for(SkyvernHook().aget_settings(), 10)
    finally:
        writer.close()

    assert settings.base_url == BASE_URL
    assert settings.api_key == API_KEY
    if kept_in == "api_server":
        assert asked[0].get("type") == "GetConnection"
