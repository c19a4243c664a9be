"""``python -m airflow_provider_skyvern.emulator`` as a user starts it."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import sys
import time

import httpx


def test_the_command_serves_until_interrupted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "airflow_provider_skyvern.emulator", "--port", str(port), "--api-key", "k1"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/run/tasks", json={"prompt": "p"}, headers={"x-api-key": "k1"}
        )
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)

    assert line.startswith(f"Skyvern emulator listening on http://127.0.0.1:{port}")
    assert "k1" not in line
    assert process.returncode == 0
    assert "Traceback" not in stderr
    assert answer.status_code == 200
    assert answer.json()["run_id"].startswith("tsk_")


def test_it_prints_the_connection_line_to_paste() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        sys.executable,
        "-m",
        "airflow_provider_skyvern.emulator",
        "--port",
        str(port),
        "--api-key",
        "k 1'x",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # listening: whatever it prints about itself is printed by now
        httpx.get(f"http://127.0.0.1:{port}/_emulator/runs").raise_for_status()  # serving: Ctrl-C stops it
    finally:
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()  # to the end: it has stopped
        process.wait(timeout=10)

    assert first.startswith(f"Skyvern emulator listening on http://127.0.0.1:{port}")
    exports = [line for line in rest.splitlines() if line.startswith("export ")]
    assert len(exports) == 1
    words = shlex.split(exports[0])  # what a shell makes of the pasted line
    assert words[0] == "export"
    name, _, value = words[1].partition("=")
    assert name == "AIRFLOW_CONN_SKYVERN_DEFAULT"
    assert json.loads(value) == {
        "conn_type": "skyvern",
        "host": f"http://127.0.0.1:{port}",
        "password": "k 1'x",
    }


def test_its_default_port_is_not_self_hosted_skyverns() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_skyvern.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "default 8731" in " ".join(result.stdout.split())


def test_a_taken_port_fails_with_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "airflow_provider_skyvern.emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Skyvern emulator: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_max_concurrent_runs_makes_runs_beyond_it_wait_queued() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "airflow_provider_skyvern.emulator", "--port", str(port), "--api-key", "k1"]
    argv += ["--run-seconds", "4", "--max-concurrent-runs", "1"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        process.stdout.readline()
        base, headers = f"http://127.0.0.1:{port}", {"x-api-key": "k1"}
        body = {"prompt": "p", "url": "https://example.com/", "engine": "skyvern-1.0"}
        ids = [
            httpx.post(f"{base}/v1/run/tasks", json=body, headers=headers).json()["run_id"] for _ in range(2)
        ]
        time.sleep(1.0)
        statuses = [httpx.get(f"{base}/v1/runs/{run_id}", headers=headers).json()["status"] for run_id in ids]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert statuses == ["running", "queued"]
