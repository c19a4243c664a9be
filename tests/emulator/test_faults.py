"""Fault injection, seen through the hook's retry policy: reads ride faults out, creates never duplicate."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_skyvern.emulator.__main__ import fault_rules, parse_args
from airflow_provider_skyvern.emulator.faults import FaultRule
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import (
    SkyvernRateLimitError,
    SkyvernServerError,
    SkyvernTransportError,
)
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import TaskRunRequest

REQUEST = TaskRunRequest(prompt="Extract the top 3 products", engine="skyvern_v2")


def _add(emulator: EmulatorServer, *rules: dict[str, Any]) -> None:
    emulator.control.post("/_emulator/faults", json=list(rules)).raise_for_status()


def _created(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return list(emulator.control.get("/_emulator/runs").json()["runs"])


def _log(emulator: EmulatorServer) -> list[tuple[str, str, Any]]:
    return [
        (r["method"], r["path"], r["status"])
        for r in emulator.control.get("/_emulator/requests").json()["requests"]
    ]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_reads_retry_through_transient_statuses(
    hook: SkyvernHook, emulator: EmulatorServer, status: int
) -> None:
    run = hook.run_task(REQUEST)
    _add(emulator, {"method": "GET", "path": "/v1/runs/*", "status": status, "times": 2})

    assert hook.get_run(run.run_id).run_id == run.run_id
    assert [entry[2] for entry in _log(emulator)[1:]] == [f"fault: HTTP {status}"] * 2 + [200]


def test_reads_retry_through_connection_resets(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    run = hook.run_task(REQUEST)
    _add(emulator, {"method": "GET", "path": "/v1/runs/*", "reset": True, "times": 1})

    assert hook.get_run(run.run_id).run_id == run.run_id
    assert [entry[2] for entry in _log(emulator)[1:]] == ["fault: reset", 200]


def test_a_bad_gateway_page_becomes_a_short_message(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    _add(emulator, {"method": "GET", "status": 502})

    with pytest.raises(SkyvernServerError) as caught:
        hook.get_run("tsk_1")

    assert str(caught.value).startswith(
        "Skyvern GET /v1/runs/tsk_1 -> HTTP 502: HTML page: 502 Bad Gateway; gave up after 4 attempts in "
    )


def test_500_after_the_run_was_created_is_not_resent(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    _add(
        emulator, {"method": "POST", "path": "/v1/run/tasks", "status": 500, "after_create": True, "times": 1}
    )

    with pytest.raises(SkyvernServerError, match="HTTP 500: Unexpected error: EmulatedFault"):
        hook.run_task(REQUEST)

    assert len(_created(emulator)) == 1  # the run exists: resending would have paid for a second one
    assert _log(emulator) == [("POST", "/v1/run/tasks", "fault: HTTP 500 after the request was handled")]


def test_a_reset_after_sending_a_create_is_not_resent(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    _add(
        emulator, {"method": "POST", "path": "/v1/run/tasks", "reset": True, "after_create": True, "times": 1}
    )

    with pytest.raises(SkyvernTransportError, match="after the request was sent") as caught:
        hook.run_task(REQUEST)

    assert caught.value.request_sent
    assert len(_created(emulator)) == 1


@pytest.mark.parametrize(
    "rule",
    [{"status": 429, "times": 2}, {"status": 503, "times": 2, "retry_after": 0}],
    ids=["rate-limited", "no-run-created"],
)
def test_creates_retry_only_when_no_run_was_created(
    hook: SkyvernHook, emulator: EmulatorServer, rule: dict[str, Any]
) -> None:
    _add(emulator, {"method": "POST", "path": "/v1/run/tasks", **rule})

    run = hook.run_task(REQUEST)

    assert [created["run_id"] for created in _created(emulator)] == [run.run_id]
    assert len(_log(emulator)) == 3


def test_a_persistent_429_exhausts_the_retry_budget(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    _add(emulator, {"method": "POST", "status": 429})

    with pytest.raises(SkyvernRateLimitError, match="Rate limit exceeded for organization"):
        hook.run_task(REQUEST)

    assert len(_log(emulator)) == 4  # 1 + max_retries (3)
    assert _created(emulator) == []


def test_rates_are_drawn_from_the_seeded_dice(emulator: EmulatorServer, hook: SkyvernHook) -> None:
    run = hook.run_task(REQUEST)
    _add(emulator, {"method": "GET", "status": 503, "rate": 0.5, "retry_after": 0})

    for _ in range(20):
        hook.get_run(run.run_id)

    faults = sum(1 for entry in _log(emulator) if entry[2] == "fault: HTTP 503")
    assert 5 <= faults <= 40  # some fired, none broke a read (each read retried until it got through)


def test_latency_delays_answers(hook: SkyvernHook, emulator: EmulatorServer) -> None:
    import time

    _add(emulator, {"latency": 0.3, "times": 1})
    started = time.monotonic()
    hook.list_runs()
    assert time.monotonic() - started >= 0.3


def test_faults_can_be_listed_and_cleared(emulator: EmulatorServer) -> None:
    _add(emulator, {"status": 500, "times": 2})
    listed = emulator.control.get("/_emulator/faults").json()["faults"]
    emulator.control.delete("/_emulator/faults")

    assert [(f["status"], f["times"]) for f in listed] == [(500, 2)]
    assert emulator.control.get("/_emulator/faults").json() == {"faults": []}
    bad = emulator.control.post("/_emulator/faults", json=[{"status": 200}])
    assert bad.status_code == 422


def test_command_line_knobs_become_rules() -> None:
    args = parse_args(
        [
            "--error-rate",
            "503=0.1",
            "--error-rate",
            "429=0.05",
            "--latency",
            "0.2",
            "--reset-rate",
            "0.01",
            "--fail-after-create",
            "2",
        ]
    )

    assert fault_rules(args) == [
        FaultRule(status=503, rate=0.1),
        FaultRule(status=429, rate=0.05),
        FaultRule(latency=0.2),
        FaultRule(reset=True, rate=0.01),
        FaultRule(method="POST", path="/v1/run/*", status=500, after_create=True, times=2),
    ]
    with pytest.raises(SystemExit):
        parse_args(["--error-rate", "oops"])
