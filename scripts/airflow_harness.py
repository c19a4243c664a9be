"""Start and drive a real Airflow (``airflow standalone``) and the Skyvern emulator: the demo and e2e tests.

Everything listens on 127.0.0.1 on free ports and lives in a throwaway AIRFLOW_HOME. Each service runs in a
session of its own with SIGINT at its default: standalone only shuts its components down on SIGINT
(SIGTERM to it alone orphans them), and a session lets us find every process it left, whatever process
group it moved to. Stopping escalates: SIGINT to the leader, then SIGTERM and at last SIGKILL to every
process left in the session. Failures raise :class:`HarnessError`, whose message is one line meant for a
person.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import httpx

LOOPBACK = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent
EMULATOR_MODULE = "airflow_provider_skyvern.emulator"
EMULATOR_API_KEY = "emulator-key-not-a-secret"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
STANDALONE_COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")
STARTUP_MARKERS = {  # what each component of standalone logs once it runs (Airflow 3.3)
    "scheduler": "Starting the scheduler",
    "dag-processor": "Starting the Dag Processor Job",
    "triggerer": "Starting the triggerer",
    "api-server": "Application startup complete",
}
T = TypeVar("T")


class HarnessError(RuntimeError):
    """A step of the harness failed; the message says which, in one line."""


def poll_until(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.5) -> T:
    """Calls ``check`` until it returns something other than None; bounded, so a hang becomes an error."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def claim_port(wanted: int | None, service: str) -> int:
    """A free port, or ``wanted`` if it is free: a taken port fails here, not deep inside a service log."""
    if not wanted:
        return free_port()
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, wanted))
        except OSError:
            raise HarnessError(f"{service}: port {wanted} on {LOOPBACK} is already in use") from None
    return wanted


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of a session, read from /proc: what would be left behind."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def describe_processes(pids: list[int], limit: int = 6) -> str:
    """``airflow scheduler (123), …`` for a person: which processes a step is about."""
    names = []
    for pid in sorted(pids)[:limit]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            words = [Path(arg.decode(errors="replace")).name for arg in argv if arg][:3]
        except OSError:
            words = []
        # "python …/airflow scheduler" → "airflow scheduler"; a LocalExecutor worker keeps its title.
        if len(words) > 1 and words[0].startswith("python"):
            words = words[1:]
        names.append(f"{' '.join(words) or '?'} ({pid})")
    more = f", and {len(pids) - limit} more" if len(pids) > limit else ""
    return ", ".join(names) + more


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """A second Ctrl-C must not cut a shutdown short and leave processes behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _default_sigint() -> None:
    # A background job of a non-interactive shell inherits SIGINT ignored; standalone then cannot be stopped.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass(frozen=True)
class StopReport:
    """How a service stopped: after which signal its session was empty, and what outlived each signal."""

    seconds: float
    after_sigint: tuple[int, ...] = ()
    """Processes left when SIGINT's grace ran out; SIGTERM was sent to each."""
    after_sigterm: tuple[int, ...] = ()
    """Processes left when SIGTERM's grace ran out; SIGKILL was sent to each."""
    after_sigkill: tuple[int, ...] = ()
    """Processes still alive after SIGKILL: the only failure."""
    notes: tuple[str, ...] = ()
    """What outlived each signal, named, for a person."""

    def summary(self) -> str:
        if self.after_sigkill:
            how = "not all"
        elif self.after_sigterm:
            how = "after SIGKILL"
        elif self.after_sigint:
            how = "after SIGTERM"
        else:
            how = "after SIGINT"
        return "; ".join([f"{how} in {self.seconds:.1f}s", *self.notes])


class ManagedProcess:
    """A child process in its own session, stopped with SIGINT, then SIGTERM, then SIGKILL."""

    _live: set[ManagedProcess] = set()  # noqa: RUF012 - the atexit safety net, shared on purpose

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
        ManagedProcess._live.add(self)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise HarnessError(f"{self.name} was never started")
        return self._proc.pid

    def exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def log_tail(self, lines: int = 1) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def log_lines(self, prefix: str) -> list[str]:
        """The log's lines that standalone printed for one component (``<prefix> | …``)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in text if line.partition(" | ")[0].strip() == prefix]

    def ensure_running(self) -> None:
        if self.exited():
            raise HarnessError(
                f"{self.name} exited early; last log line: {self.log_tail()} ({self.log_path})"
            )

    def stop(self, grace: float = 20.0, term_grace: float = 15.0, kill_grace: float = 5.0) -> StopReport:
        """SIGINT to the leader and ``grace`` seconds for the whole session to end; then SIGTERM to every
        process left and ``term_grace``; then SIGKILL and ``kill_grace``. Never raises: the report says
        what needed which signal, and what (if anything) outlived SIGKILL."""
        started = time.monotonic()
        if self._proc is None:
            return StopReport(0.0)
        left: dict[signal.Signals, tuple[int, ...]] = {}
        notes = []
        with sigint_deferred():
            if self._proc.poll() is None:
                # The leader only: standalone stops its components itself (SIGTERMs them in turn).
                self._proc.send_signal(signal.SIGINT)
            for sent, wait, then in (
                (signal.SIGINT, grace, signal.SIGTERM),
                (signal.SIGTERM, term_grace, signal.SIGKILL),
                (signal.SIGKILL, kill_grace, None),
            ):
                left[sent] = tuple(self._wait_for_session_end(wait))
                if not left[sent]:
                    break
                survivors = describe_processes(list(left[sent]))
                notes.append(f"{len(left[sent])} outlived {sent.name} ({wait:g}s): {survivors}")
                if then is not None:
                    for pid in left[sent]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, then)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1.0)  # reaps the leader; returns at once unless it outlived SIGKILL
            if self._log is not None:
                self._log.close()
            ManagedProcess._live.discard(self)
        return StopReport(
            time.monotonic() - started,
            left.get(signal.SIGINT, ()),
            left.get(signal.SIGTERM, ()),
            left.get(signal.SIGKILL, ()),
            tuple(notes),
        )

    def _wait_for_session_end(self, timeout: float) -> list[int]:
        """The session's live processes once it is empty or ``timeout`` has passed."""
        deadline = time.monotonic() + timeout
        while True:
            members = session_members(self.pid)
            if not members or time.monotonic() >= deadline:
                return members
            time.sleep(0.2)

    @classmethod
    def stop_all(cls) -> None:
        for proc in list(cls._live):
            proc.stop(grace=10.0, term_grace=5.0)


atexit.register(ManagedProcess.stop_all)


def raise_for_status(response: httpx.Response) -> Any:
    """The JSON body, or a one-line HarnessError naming the call and Airflow's/Skyvern's detail."""
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text
        request = response.request
        raise HarnessError(f"{request.method} {request.url.path}: HTTP {response.status_code}: {detail}")
    return response.json() if response.content else None


class Emulator:
    """The bundled Skyvern emulator (``python -m airflow_provider_skyvern.emulator``) on a free port."""

    def __init__(self, workdir: Path, api_key: str, run_seconds: float, port: int | None = None) -> None:
        self.api_key = api_key
        self.port = claim_port(port, "Skyvern emulator")
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        argv = [sys.executable, "-m", EMULATOR_MODULE, "--port", str(self.port)]
        argv += ["--api-key", api_key, "--run-seconds", f"{run_seconds:g}"]
        self.process = ManagedProcess("Skyvern emulator", argv, os.environ, workdir / "emulator.log")
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0)

    def start(self, timeout: float = 30.0) -> None:
        self.process.start()
        poll_until(self._listening, timeout=timeout, what=f"the Skyvern emulator on {self.base_url}")

    def _listening(self) -> bool | None:
        """Its "listening" line, then an answer: the line is printed once the socket is bound, which can be
        before uvicorn calls listen() on it (connections are refused until then)."""
        self.process.ensure_running()
        if "Skyvern emulator listening on" not in self.process.log_tail(50):
            return None
        try:
            self.http.get("/_emulator/runs").raise_for_status()
        except httpx.HTTPError:
            return None
        return True

    def runs(self) -> list[dict[str, Any]]:
        """Every run the emulator created, with status and ``cancel_requests``."""
        body = raise_for_status(self.http.get("/_emulator/runs"))
        return list(body["runs"] if isinstance(body, dict) else body)

    def run(self, run_id: str) -> dict[str, Any]:
        """The run as Skyvern's API returns it to the provider."""
        response = self.http.get(f"/v1/runs/{quote(run_id, safe='')}", headers={"x-api-key": self.api_key})
        return dict(raise_for_status(response))

    def add_faults(self, rules: list[dict[str, Any]]) -> None:
        """Adds fault rules (``FaultRule`` fields: method, path, status, reset, after_create, times, ...)."""
        raise_for_status(self.http.post("/_emulator/faults", json=rules))

    def clear_faults(self) -> None:
        raise_for_status(self.http.delete("/_emulator/faults"))

    def stop(self) -> StopReport:
        self.http.close()
        return self.process.stop()


@dataclass(frozen=True)
class Skyvern:
    """Which Skyvern Airflow talks to; ``describe`` is safe to print (no key)."""

    base_url: str
    api_key: str = field(repr=False)
    emulated: bool = False

    def connection_json(self) -> str:
        return json.dumps({"conn_type": "skyvern", "host": self.base_url, "password": self.api_key})

    def describe(self) -> str:
        return f"the bundled emulator at {self.base_url}" if self.emulated else self.base_url


class AirflowApi:
    """An Airflow API server on 127.0.0.1, driven over REST API v2 with a real login: what tests call.

    ``ensure_running`` is where a subclass that owns the processes fails fast when one of them died."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.api = httpx.Client(base_url=f"{self.url}/api/v2", timeout=30.0)

    def ensure_running(self) -> None:
        """Raises HarnessError when the Airflow under test is gone; nothing to check for a bare API."""

    def login(self, password: str, username: str = "admin") -> None:
        token = raise_for_status(
            httpx.post(
                f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=30.0
            )
        )["access_token"]
        self.api.headers["Authorization"] = f"Bearer {token}"

    def health(self) -> dict[str, str | None] | None:
        """Component → status from ``/monitor/health``; None while the API server does not answer."""
        try:
            body = self.api.get("/monitor/health").json()
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        return {name: (body.get(name) or {}).get("status") for name in HEALTH_COMPONENTS}

    # ---- DAGs and runs ---------------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return raise_for_status(self.api.request(method, path, **kwargs))

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> None:
        """Until the DAG is parsed; an import error of any DAG file fails at once, with its message."""

        def parsed() -> bool | None:
            self.ensure_running()
            errors = self.call("GET", "/importErrors")["import_errors"]
            if errors:
                first = errors[0]
                last_line = first["stack_trace"].strip().splitlines()[-1]
                raise HarnessError(f"import error in {first['filename']}: {last_line}")
            return True if self.api.get(f"/dags/{dag_id}").status_code == 200 else None

        poll_until(parsed, timeout=timeout, what=f"DAG {dag_id} to be parsed", interval=1)

    def trigger(self, dag_id: str, run_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpauses and triggers the DAG with a logical date (templates may use it), returns the run id."""
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        body = {"dag_run_id": run_id, "logical_date": _utc_now(), "conf": dict(conf or {})}
        return str(self.call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def dag_run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.call("GET", f"/dags/{dag_id}/dagRuns/{_seg(run_id)}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``task_id`` (``task_id[i]`` for mapped instances) → state."""
        body = self.call("GET", f"/dags/{dag_id}/dagRuns/{_seg(run_id)}/taskInstances")
        return {_ti_label(ti): ti["state"] for ti in body["task_instances"]}

    def watch_run(
        self,
        dag_id: str,
        run_id: str,
        on_change: Callable[[str, str | None], None],
        timeout: float = 300.0,
    ) -> str:
        """Reports every task state change until the DAG run ends; returns its final state."""
        recorder = StateRecorder(self, on_change)

        def finished() -> str | None:
            state = recorder.poll(dag_id, run_id)
            return state if state in TERMINAL_RUN_STATES else None

        return poll_until(finished, timeout=timeout, what=f"DAG run {dag_id}/{run_id} to finish")

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        return dict(self.call("GET", _ti_path(dag_id, run_id, task_id, map_index)))

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """What "Mark as failed/success" in the UI does."""
        self.call("PATCH", _ti_path(dag_id, run_id, task_id), json={"new_state": state})

    def clear_task(self, dag_id: str, run_id: str, task_id: str) -> None:
        """What "Clear" on one task instance in the UI does (whatever its state)."""
        body = {"dry_run": False, "dag_run_id": run_id, "task_ids": [task_id], "only_failed": False}
        self.call("POST", f"/dags/{_seg(dag_id)}/clearTaskInstances", json=body)

    # ---- what a task left behind -------------------------------------------------------------------------

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        path = f"{_ti_path(dag_id, run_id, task_id)}/xcomEntries/{quote(key, safe='')}"
        return self.call("GET", path, params={"map_index": map_index})["value"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """The task's log (trigger lines included) as text, one event per line."""
        return "\n".join(
            _log_line(entry) for entry in self._log_entries(dag_id, run_id, task_id, try_number, map_index)
        )

    def task_errors(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[str]:
        """``ExcType: message`` of each exception in the latest try's log: why a task failed."""
        try_number = int(self.task_instance(dag_id, run_id, task_id, map_index)["try_number"])
        entries = self._log_entries(dag_id, run_id, task_id, try_number, map_index)
        return [error for entry in entries for error in _log_errors(entry)]

    def _log_entries(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int
    ) -> list[Any]:
        body = self.call(
            "GET",
            f"{_ti_path(dag_id, run_id, task_id)}/logs/{try_number}",
            params={"full_content": True, "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        return list(body["content"])

    def extra_links(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> dict[str, str | None]:
        body = self.call("GET", f"{_ti_path(dag_id, run_id, task_id)}/links", params={"map_index": map_index})
        return dict(body["extra_links"])


class Airflow(AirflowApi):
    """``airflow standalone`` on SQLite and 127.0.0.1, driven over REST API v2 with a real login."""

    def __init__(
        self, home: Path, dags_folder: Path, extra_env: Mapping[str, str], port: int | None = None
    ) -> None:
        self.home = home
        self.port = claim_port(port, "Airflow API server")
        super().__init__(f"http://{LOOPBACK}:{self.port}")
        env = {**os.environ, **_airflow_env(home, dags_folder, self.port), **extra_env}
        # Each of standalone's ~10 Python processes imports about 1300 modules; with no bytecode cache
        # (uv installs none, and PYTHONDONTWRITEBYTECODE stops Python writing one) each compiles them from
        # source again, which doubles the time to healthy. Cache them beside the venv instead.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.setdefault("PYTHONPYCACHEPREFIX", str(VENV_BIN.parent / "pycache"))
        argv = [str(VENV_BIN / "airflow"), "standalone"]
        self.process = ManagedProcess("airflow standalone", argv, env, home / "standalone.log")

    # ---- lifecycle -------------------------------------------------------------------------------------

    def start(
        self, timeout: float = 180.0, progress: Callable[[str], None] | None = None, every: float = 10.0
    ) -> None:
        """Starts standalone and logs in once it reports healthy; every ``every`` seconds until then,
        ``progress`` gets a line saying which components are healthy yet."""
        self.process.start()
        started = time.monotonic()
        next_report = started + every

        def healthy() -> bool | None:
            nonlocal next_report
            ok = self._healthy()
            if ok is None and progress is not None and time.monotonic() >= next_report:
                next_report += every
                progress(
                    f"  waiting for Airflow ({time.monotonic() - started:.0f}s): {self.startup_status()}"
                )
            return ok

        poll_until(healthy, timeout=timeout, what=f"Airflow to report healthy on {self.url}", interval=1)
        self.login(self.admin_password())

    def ensure_running(self) -> None:
        self.process.ensure_running()

    def _healthy(self) -> bool | None:
        self.process.ensure_running()
        health = self.health()
        if health is None:
            return None
        return True if all(health.get(name) == "healthy" for name in HEALTH_COMPONENTS) else None

    def startup_status(self) -> str:
        """Which components are healthy yet or, before the API server answers, which are up (by the line
        each logs once it runs) and which are still starting (a process, still importing Airflow)."""
        health = self.health()
        if health is not None:
            healthy = [name for name in HEALTH_COMPONENTS if health[name] == "healthy"]
            waiting = [name for name in HEALTH_COMPONENTS if health[name] != "healthy"]
            return f"healthy: {', '.join(healthy) or 'none'}; not yet: {', '.join(waiting)}"
        if not any("Database ready" in line for line in self.process.log_lines(prefix="standalone")):
            return "API server not answering yet; standalone is preparing the database"
        up = sorted(
            name
            for name, marker in STARTUP_MARKERS.items()
            if any(marker in line for line in self.process.log_lines(prefix=name))
        )
        processes = {
            word.replace("_", "-")  # the API server retitles itself "airflow api_server -- …"
            for pid in session_members(self.process.pid)
            for word in describe_processes([pid]).split()
        }
        starting = sorted(name for name in STANDALONE_COMPONENTS if name in processes and name not in up)
        parts = ["API server not answering yet"]
        parts += [f"up: {', '.join(up)}"] if up else []
        parts += [f"starting: {', '.join(starting)}"] if starting else []
        return "; ".join(parts)

    def admin_password(self) -> str:
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        return str(passwords["admin"])

    def stop(self) -> StopReport:
        self.api.close()
        return self.process.stop()


class StateRecorder:
    """Every distinct state each task instance went through, polled: how a short ``deferred`` is seen."""

    def __init__(
        self, airflow: AirflowApi, on_change: Callable[[str, str | None], None] | None = None
    ) -> None:
        self.airflow = airflow
        self.on_change = on_change
        self.history: dict[tuple[str, str, str], list[str | None]] = {}

    def poll(self, dag_id: str, run_id: str) -> str:
        """Records the task states of one DAG run once; returns the DAG run's state."""
        self.airflow.ensure_running()
        for label, state in self.airflow.task_states(dag_id, run_id).items():
            seen = self.history.setdefault((dag_id, run_id, label), [])
            if not seen or seen[-1] != state:
                seen.append(state)
                if self.on_change is not None:
                    self.on_change(label, state)
        return self.airflow.dag_run_state(dag_id, run_id)

    def states(self, dag_id: str, run_id: str, label: str) -> list[str | None]:
        return self.history.get((dag_id, run_id, label), [])


def _airflow_env(home: Path, dags_folder: Path, port: int) -> dict[str, str]:
    """Isolated, loopback-only, fast-reacting settings; scheduled runs off so only triggered runs happen."""
    return {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{LOOPBACK}:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__API__HOST": LOOPBACK,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(claim_port(None, "worker log server")),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(claim_port(None, "trigger log server")),
    }


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _seg(value: str) -> str:
    return quote(value, safe="")


def _ti_path(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    path = f"/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}/taskInstances/{_seg(task_id)}"
    return path if map_index < 0 else f"{path}/{map_index}"


def _ti_label(ti: Mapping[str, Any]) -> str:
    return ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"


def _log_line(entry: Any) -> str:
    """The event, plus ``ExcType: message`` of any exception: where a task's failure reason is."""
    if not isinstance(entry, dict):
        return str(entry)
    return "\n".join([str(entry.get("event", "")), *_log_errors(entry)])


def _log_errors(entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return []
    return [f"{err.get('exc_type')}: {err.get('exc_value')}" for err in entry.get("error_detail") or []]


@dataclass(frozen=True)
class Stack:
    """A running Airflow and the Skyvern it talks to (the emulator unless a remote Skyvern was given)."""

    airflow: Airflow
    skyvern: Skyvern
    emulator: Emulator | None


@contextlib.contextmanager
def skyvern_stack(
    workdir: Path,
    dags_folder: Path,
    extra_env: Mapping[str, str],
    *,
    remote: Skyvern | None = None,
    run_seconds: float = 8.0,
    ports: tuple[int | None, int | None] = (None, None),
    on_step: Callable[[str], None] = lambda _: None,
) -> Iterator[Stack]:
    """Emulator (unless ``remote``) then Airflow, on ``ports`` (emulator, Airflow; None = a free one);
    stopped in reverse order on every way out."""
    with contextlib.ExitStack() as services:
        emulator = None
        skyvern = remote
        if skyvern is None:
            emulator = Emulator(workdir, EMULATOR_API_KEY, run_seconds, ports[0])
            services.enter_context(running(emulator, on_step))
            skyvern = Skyvern(emulator.base_url, EMULATOR_API_KEY, emulated=True)
        on_step(f"Skyvern: {skyvern.describe()}")
        env = {"AIRFLOW_CONN_SKYVERN_DEFAULT": skyvern.connection_json(), **extra_env}
        airflow = Airflow(workdir / "airflow_home", dags_folder, env, ports[1])
        on_step(
            f"starting Airflow (airflow standalone, SQLite) on {airflow.url}; log {airflow.process.log_path}"
        )
        services.enter_context(running(airflow, on_step))
        on_step("Airflow is healthy (scheduler, triggerer, dag processor)")
        yield Stack(airflow, skyvern, emulator)
        on_step("stopping Airflow" + (" and the emulator" if emulator else ""))


@contextlib.contextmanager
def running(service: Emulator | Airflow, report: Callable[[str], None]) -> Iterator[None]:
    """Starts the service and stops it on every way out (Ctrl-C and errors included). The stop is reported
    in one line (which signal it took); only a process that outlives SIGKILL makes it fail, and only when
    nothing else failed first."""
    try:
        if isinstance(service, Airflow):
            service.start(progress=report)
        else:
            service.start()
        yield
    except BaseException:
        _stop(service, report)
        raise
    stopped = _stop(service, report)
    if stopped.after_sigkill:
        raise HarnessError(
            f"{service.process.name}: {len(stopped.after_sigkill)} process(es) outlived SIGKILL: "
            + describe_processes(list(stopped.after_sigkill))
        )


def _stop(service: Emulator | Airflow, report: Callable[[str], None]) -> StopReport:
    stopped = service.stop()
    name = service.process.name
    if stopped.after_sigkill:
        report(f"{name} NOT stopped: {stopped.summary()}")
    else:
        report(f"{name} stopped ({stopped.summary()}), no process left")
    return stopped
