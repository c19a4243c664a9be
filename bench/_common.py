"""Helpers shared by the benchmark scripts: stdlib only (the SDK baseline imports it from another venv).

Nothing here touches the provider: each script reaches the provider only through its public classes.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
API_KEY = "bench-key-not-a-secret"
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")


@contextlib.contextmanager
def airflow_home() -> Iterator[dict[str, str]]:
    """A throwaway AIRFLOW_HOME (as tests/conftest.py makes one) and the environment for children in it."""
    home = tempfile.mkdtemp(prefix="skyvern_bench_home_")
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=os.path.join(home, "dags"),
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",  # a benchmark prints its table, not INFO lines
        # Imports are timed with bytecode caches, as an installed provider has them; the caches go
        # to the throwaway home, so neither .venv nor the work tree gets a __pycache__.
        PYTHONPYCACHEPREFIX=os.path.join(home, "pycache"),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        yield env
    finally:
        shutil.rmtree(home, ignore_errors=True)


def connection_json(base_url: str, api_key: str = API_KEY) -> str:
    """``AIRFLOW_CONN_SKYVERN_DEFAULT`` pointing at a loopback server."""
    return json.dumps({"conn_type": "skyvern", "host": base_url, "password": api_key})


def run_python(code: str, env: dict[str, str], *args: str, options: Sequence[str] = ()) -> tuple[str, str]:
    """``python [options] -c code [args]`` in a fresh interpreter: its (stdout, stderr); a failure raises."""
    proc = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, *options, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout, proc.stderr


def last_json(text: str) -> Any:
    """The last line of a child's output that is a JSON object (children print their result last)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result in child output:\n{text[-2000:]}")


class Server:
    """A child process that prints ``listening on http://127.0.0.1:PORT`` once it accepts connections."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = LISTENING.search(line)
            if match:
                self.base_url = match.group(1)
                # Keep reading what it prints, so a chatty server never blocks on a full pipe.
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
        self.stop()
        raise RuntimeError(f"server {cmd} did not start:\n{''.join(seen)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """One blocking JSON request (setup and inspection only, never inside a measurement)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback http only
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback http only
        return json.loads(response.read() or b"null")


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (psutil when /proc is absent)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def parse_naive_utc(text: str) -> float:
    """Skyvern's timestamps (no offset, UTC) as Unix time."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "-"
    return f"{value / base:.2f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (Markdown-compatible, so it pastes into bench/README.md)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def banner(title: str, argv: Sequence[str]) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return (
        f"# {title}\n"
        f"command: python {' '.join(argv)}\n"
        f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; "
        f"load average {load[0]:.2f}; Python {platform.python_version()}; {git_describe()}"
    )


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%h %s"],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {out[:60]}"
