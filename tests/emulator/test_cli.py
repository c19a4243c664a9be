"""``python -m airflow_provider_skyvern.emulator`` as a user starts it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

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
