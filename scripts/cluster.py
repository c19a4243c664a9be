"""A production-shaped Airflow on one machine: Postgres, Redis, CeleryExecutor and two triggerers.

``python scripts/cluster.py up|down|status`` (``scripts/cluster.sh`` installs what it needs first), or
:class:`Cluster` from a test. Everything listens on 127.0.0.1 on free ports and lives in one throwaway
directory (``--dir``, ``$SKYVERN_CLUSTER_DIR``, default ``/tmp/skyvern-cluster``):

* ``pg/`` a private Postgres cluster (owned by the ``postgres`` user when run as root: Postgres refuses
  root), ``redis/`` a private Redis, ``airflow_home/`` and ``logs/`` (one log per component, plus the shared
  task log folder every component reads and writes);
* ``state.json`` (mode 0600: it holds the generated passwords) with the ports, the environment every
  Airflow component shares, and each process started as PID + start time (``/proc/PID/stat`` field 22).
  Airflow renames its processes, so a command line says nothing; a PID whose start time differs is some
  other process and is never signalled. ``up`` twice is one cluster; ``down`` stops exactly what ``up``
  started: each Airflow component runs in a session of its own, and everything left in that session
  (Celery's task processes move to process groups of their own, not out of the session) is stopped too.

Components: api-server, scheduler, dag-processor, one Celery worker (concurrency 4, or
``worker_concurrency``) and two triggerers registered under the hostnames ``triggerer-a`` and
``triggerer-b`` (``[core] hostname_callable``). The worker and the triggerers skip their log servers (those
listen on every interface); all components share one local log folder instead. Failures raise :class:`ClusterError`, whose message is one line.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from airflow_harness import (
    HEALTH_COMPONENTS,
    LOOPBACK,
    VENV_BIN,
    AirflowApi,
    HarnessError,
    free_port,
    poll_until,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = Path(os.environ.get("SKYVERN_CLUSTER_DIR", "/tmp/skyvern-cluster"))  # noqa: S108 - a throwaway dir
TRIGGERERS = ("triggerer-a", "triggerer-b")
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "worker", *TRIGGERERS)
WORKER_CONCURRENCY = 4
HOSTNAME_MODULE = "skyvern_cluster_hostname"
HOSTNAME_ENV = "SKYVERN_CLUSTER_HOSTNAME"
TRIGGERER_HEARTBEAT_SEC = 2
TRIGGERER_HEALTH_CHECK_THRESHOLD = 10
"""A triggerer whose heartbeat is older than this is dead: its triggers go to the other one (default 30)."""
TASK_HEARTBEAT_TIMEOUT = 30
"""A running task whose process stopped heartbeating this long ago is failed and retried (default 300)."""


class ClusterError(HarnessError):
    """A step of the cluster failed; the message says which, in one line (``cluster: ...``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message if message.startswith("cluster:") else f"cluster: {message}")


# ---- processes, by PID and start time ------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (the comm in field 2 may hold spaces and parentheses)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


@dataclass(frozen=True)
class Proc:
    """A process we started: its PID and start time, both needed before we signal it."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> Proc:
        started = start_time(pid)
        if started is None:
            raise ClusterError(f"process {pid} exited right after it started")
        return cls(pid, started)

    def alive(self) -> bool:
        """The same process (not a reused PID), and not a zombie waiting to be reaped."""
        fields = _stat_fields(self.pid)
        return fields is not None and int(fields[19]) == self.start and fields[0] != "Z"

    def session(self) -> list[int]:
        """Live processes of the session this process leads, started after it (a reused PID cannot lead
        a session that old): what it left behind even after the leader itself died."""
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            fields = _stat_fields(int(stat.parent.name))
            if fields and int(fields[3]) == self.pid and fields[0] != "Z" and int(fields[19]) >= self.start:
                members.append(int(stat.parent.name))
        return members

    def signal_session(self, sig: signal.Signals) -> None:
        for pid in self.session():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def signal(self, sig: signal.Signals) -> bool:
        """Signals the process if it still is the one we started; False if it is gone."""
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        return True


def _wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return bool(check())


# ---- the cluster -------------------------------------------------------------------------------------


class Cluster:
    """One cluster in ``root``; ``up`` starts it (or finds it running), ``down`` stops what it started."""

    def __init__(
        self,
        root: Path = DEFAULT_DIR,
        dags_folder: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        python: Path | None = None,
        worker_concurrency: int = WORKER_CONCURRENCY,
    ) -> None:
        self.root = root.resolve()
        self.worker_concurrency = worker_concurrency
        self.dags_folder = (dags_folder or REPO / "example_dags").resolve()
        self.extra_env = dict(extra_env or {})
        self.bin = (python or VENV_BIN / "python").parent
        self.state_path = self.root / "state.json"
        self.logs = self.root / "logs"
        self.state: dict[str, Any] = self._load()
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # to reap what we start (no zombies)
        self.api: AirflowApi | None = None

    # ---- state -----------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ClusterError(f"unreadable state file {self.state_path}: {exc}") from None

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_path)

    def procs(self) -> dict[str, Proc]:
        return {name: Proc(**rec) for name, rec in self.state.get("processes", {}).items()}

    def proc(self, name: str) -> Proc:
        try:
            return self.procs()[name]
        except KeyError:
            raise ClusterError(f"no {name} in {self.state_path}") from None

    def _record(self, name: str, proc: Proc) -> None:
        self.state.setdefault("processes", {})[name] = {"pid": proc.pid, "start": proc.start}
        self._save()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.state['ports']['api']}"

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path(name)})"
        return "\n".join(text[-lines:])

    # ---- up --------------------------------------------------------------------------------------------

    def status(self) -> dict[str, bool]:
        """Component → alive, for every process recorded."""
        return {name: proc.alive() for name, proc in self.procs().items()}

    def up(self, timeout: float = 240.0, say: Any = print) -> float:
        """Starts the cluster, or finds it fully running; returns the seconds it took."""
        started = time.monotonic()
        alive = self.status()
        if alive and all(alive.values()) and set(alive) >= {"postgres", "redis", *AIRFLOW_COMPONENTS}:
            say(f"cluster: already up at {self.url} ({len(alive)} components, state {self.state_path})")
            self._connect()
            return time.monotonic() - started
        if alive:
            dead = sorted(name for name, ok in alive.items() if not ok)
            say(
                f"cluster: partly running (gone: {', '.join(dead) or 'none'}): stopping it, then starting anew"
            )
            self.down(say=say)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in ("pg", "redis", "airflow_home", "lib", "logs"):  # a fresh cluster each time
            shutil.rmtree(self.root / stale, ignore_errors=True)
        self.root.chmod(0o711)  # the postgres user must be able to enter it (no listing)
        self.logs.mkdir(exist_ok=True)
        self.state = {
            "ports": {
                name: free_port() for name in ("api", "postgres", "redis", "worker_log", "trigger_log")
            },
            "secrets": {
                "postgres": secrets.token_urlsafe(24),
                "redis": secrets.token_urlsafe(24),
                "jwt": secrets.token_urlsafe(32),
                "fernet": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            },
            "processes": {},
        }
        self._save()
        try:
            self._step("postgres", self._start_postgres, say)
            self._step("redis", self._start_redis, say)
            self.state["env"] = self._airflow_env()
            self._save()
            self._step("airflow db migrate", self._migrate, say)
            for name in AIRFLOW_COMPONENTS:
                self.start_component(name)
            self._step("components healthy", lambda: self.wait_healthy(timeout), say)
        except BaseException:
            say(f"cluster: bring-up failed; stopping what was started (logs in {self.logs})")
            self.down(say=say)
            raise
        seconds = time.monotonic() - started
        say(f"cluster: up at {self.url} in {seconds:.1f}s; state {self.state_path}, logs {self.logs}")
        return seconds

    def _step(self, what: str, action: Any, say: Any) -> None:
        began = time.monotonic()
        try:
            action()
        except HarnessError:
            raise
        except Exception as exc:  # one line for a person, whatever failed underneath
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"{what} failed: {detail}; logs in {self.logs}") from exc
        say(f"cluster: {what} ({time.monotonic() - began:.1f}s)")

    # postgres

    def _pg_bin(self, tool: str) -> str:
        found = shutil.which(tool)
        if found:
            return found
        candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), key=lambda p: p.parts[-3])
        if not candidates:
            raise ClusterError(f"postgres: {tool} not found (apt-get install postgresql)")
        return str(candidates[-1])

    def _as_postgres(self, argv: list[str], what: str, log: Path) -> None:
        """Runs a Postgres tool as the postgres user when we are root (Postgres refuses root)."""
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        with log.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            reason = (
                result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}"
            ).splitlines()
            raise ClusterError(f"postgres {what} failed: {reason[-1]}; log at {log}")

    def _start_postgres(self) -> None:
        if os.geteuid() == 0:
            closed = [str(d) for d in (self.root, *self.root.parents) if not d.stat().st_mode & 0o001]
            if closed:
                raise ClusterError(
                    f"postgres: the postgres user cannot enter {closed[-1]} (mode without o+x); "
                    "put the cluster in a directory it can enter, e.g. under /tmp"
                )
        pg = self.root / "pg"
        pg.mkdir(mode=0o700, exist_ok=True)
        log = self.log_path("postgres")
        log.touch()
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            for path in (pg, log):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)
        password_file = pg / "password"
        password_file.write_text(self.state["secrets"]["postgres"] + "\n")
        password_file.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(password_file, pwd.getpwnam("postgres").pw_uid, -1)
        data = pg / "data"
        initdb = [self._pg_bin("initdb"), "-D", str(data), "-U", "airflow", "--auth=scram-sha-256"]
        self._as_postgres([*initdb, f"--pwfile={password_file}", "-E", "UTF8", "--no-sync"], "initdb", log)
        password_file.unlink()
        port = self.state["ports"]["postgres"]
        options = (
            f"-p {port} -c listen_addresses={LOOPBACK} -k {pg} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # a throwaway test database
        )
        self._as_postgres(
            [
                self._pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "start",
            log,
        )
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        self._record("postgres", Proc.of(pid))
        import psycopg2  # the Postgres provider's driver; installed by scripts/cluster.sh

        try:
            conn = psycopg2.connect(self._dsn("postgres"))
        except psycopg2.Error as exc:
            raise ClusterError(f"postgres: cannot connect over TCP: {exc}".strip()) from None
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cursor:
                cursor.execute("CREATE DATABASE airflow")
        finally:
            conn.close()

    def _dsn(self, database: str = "airflow", scheme: str = "postgresql") -> str:
        password = self.state["secrets"]["postgres"]
        return f"{scheme}://airflow:{password}@{LOOPBACK}:{self.state['ports']['postgres']}/{database}"

    # redis

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise ClusterError("redis: redis-server not found (apt-get install redis-server)")
        data = self.root / "redis"
        data.mkdir(mode=0o700, exist_ok=True)
        conf = data / "redis.conf"
        conf.write_text(
            f"port {self.state['ports']['redis']}\nbind {LOOPBACK}\nprotected-mode yes\n"
            f'requirepass {self.state["secrets"]["redis"]}\nsave ""\nappendonly no\ndir {data}\n'
            'daemonize no\nlogfile ""\n'
        )
        conf.chmod(0o600)
        proc = self._spawn("redis", [server, str(conf)], dict(os.environ))
        import redis  # installed with the Celery provider

        client = redis.Redis(
            host=LOOPBACK, port=self.state["ports"]["redis"], password=self.state["secrets"]["redis"]
        )

        def pong() -> bool | None:
            if not proc.alive():
                raise ClusterError(
                    f"redis exited: {self.log_tail('redis', 1)}; log at {self.log_path('redis')}"
                )
            try:
                return True if client.ping() else None
            except redis.RedisError:
                return None

        poll_until(pong, timeout=20, what="redis to answer PING", interval=0.1)
        client.close()

    # airflow

    def _airflow_env(self) -> dict[str, str]:
        ports, keys = self.state["ports"], self.state["secrets"]
        home = self.root / "airflow_home"
        lib = self.root / "lib"
        lib.mkdir(exist_ok=True)
        (lib / f"{HOSTNAME_MODULE}.py").write_text(
            '"""[core] hostname_callable of one cluster process: the name it was given."""\n\nimport os\n\n\n'
            f"def hostname() -> str:\n    return os.environ[{HOSTNAME_ENV!r}]\n"
        )
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AIRFLOW") and key != "PYTHONDONTWRITEBYTECODE"
        }
        env.update(
            {
                "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
                # One bytecode cache for every component (this machine sets PYTHONDONTWRITEBYTECODE; each of
                # ~30 processes would compile Airflow's ~1300 modules from source again).
                "PYTHONPYCACHEPREFIX": str(self.bin.parent / "pycache"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(lib), os.environ.get("PYTHONPATH", "")])),
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": "32",
                "AIRFLOW__CORE__FERNET_KEY": keys["fernet"],
                "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt"],
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{LOOPBACK}:{ports['api']}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self._dsn(scheme="postgresql+psycopg2"),
                "AIRFLOW__CELERY__BROKER_URL": f"redis://:{keys['redis']}@{LOOPBACK}:{ports['redis']}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": self._dsn(scheme="db+postgresql"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__API__HOST": LOOPBACK,
                "AIRFLOW__API__PORT": str(ports["api"]),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "airflow"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_log"]),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_log"]),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "30",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(TRIGGERER_HEARTBEAT_SEC),
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_CHECK_THRESHOLD),
            }
        )
        env.update(self.extra_env)
        return env

    def _migrate(self) -> None:
        log = self.log_path("db-migrate")
        with log.open("ab") as out:
            result = subprocess.run(  # noqa: S603
                [str(self.bin / "airflow"), "db", "migrate"],
                env=self.state["env"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=300,
            )
        if result.returncode != 0:
            raise ClusterError(f"airflow db migrate failed: {self.log_tail('db-migrate', 1)}; log at {log}")

    def _argv(self, name: str) -> list[str]:
        airflow = str(self.bin / "airflow")
        return {
            "api-server": [airflow, "api-server", "--host", LOOPBACK, "--port", str(self.state["ports"]["api"])],
            "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
            "dag-processor": [airflow, "dag-processor"],
            "worker": [
                airflow, "celery", "worker", "--concurrency", str(self.worker_concurrency), "--skip-serve-logs",
                "--celery-hostname", f"worker@{LOOPBACK}", "--without-gossip", "--without-mingle",
            ],
            "triggerer-a": [airflow, "triggerer", "--skip-serve-logs"],
            "triggerer-b": [airflow, "triggerer", "--skip-serve-logs"],
        }[name]  # fmt: skip

    def start_component(self, name: str) -> Proc:
        """Starts (or restarts, after it was stopped) one Airflow component with the cluster's env."""
        if name not in AIRFLOW_COMPONENTS:
            raise ClusterError(f"unknown component {name!r}; one of {', '.join(AIRFLOW_COMPONENTS)}")
        old = self.procs().get(name)
        if old is not None and old.alive():
            raise ClusterError(f"{name} is still running (pid {old.pid})")
        env = dict(self.state["env"])
        if name in TRIGGERERS:
            env[HOSTNAME_ENV] = name
            env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = f"{HOSTNAME_MODULE}.hostname"
        return self._spawn(name, self._argv(name), env)

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            child = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.root,
            )
        self._children[child.pid] = child
        proc = Proc.of(child.pid)
        self._record(name, proc)
        return proc

    def reap(self) -> None:
        """Collects our exited children, so a killed component is gone rather than a zombie."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]

    def wait_healthy(self, timeout: float = 240.0) -> None:
        """Until the API answers healthy for every component, the worker is ready, and both triggerers
        heartbeat under their own hostnames; a component that exits fails at once with its last line."""

        def ready() -> bool | None:
            self.reap()
            for name, proc in self.procs().items():
                if not proc.alive():
                    raise ClusterError(
                        f"{name} exited during bring-up: {self.log_tail(name, 1)}; log at {self.log_path(name)}"
                    )
            api = AirflowApi(self.url)
            try:
                health = api.health()
            finally:
                api.api.close()
            if health is None or any(health.get(name) != "healthy" for name in HEALTH_COMPONENTS):
                return None
            if "ready." not in self.log_tail("worker", 200):
                return None
            return True if set(self.live_triggerers()) >= set(TRIGGERERS) else None

        poll_until(ready, timeout=timeout, what="the cluster to report healthy", interval=1)
        self._connect()

    def _connect(self) -> None:
        password_file = (
            Path(self.state["env"]["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        )
        self.api = AirflowApi(self.url)
        self.api.login(str(json.loads(password_file.read_text())["admin"]))

    # ---- what the database says ------------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the metadata database (jobs and triggers are not in the REST API)."""
        import psycopg2

        conn = psycopg2.connect(self._dsn())
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def live_triggerers(self, within: float = TRIGGERER_HEALTH_CHECK_THRESHOLD) -> dict[str, int]:
        """Hostname → TriggererJob id of every triggerer that heartbeat within ``within`` seconds."""
        rows = self.query(
            "SELECT hostname, id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' "
            "AND latest_heartbeat > now() - make_interval(secs => %s) ORDER BY id",
            (within,),
        )
        return {str(host): int(job_id) for host, job_id in rows}

    # ---- down ------------------------------------------------------------------------------------------

    def stop_component(self, name: str, sig: signal.Signals = signal.SIGTERM, grace: float = 20.0) -> bool:
        """``sig`` to the component's leader, then SIGKILL to whatever is left of its session after
        ``grace`` seconds; True if it ended within the grace."""
        proc = self.proc(name)
        proc.signal(sig)
        ended = _wait(lambda: not proc.session() and not proc.alive(), grace)
        if not ended:
            proc.signal_session(signal.SIGKILL)
            _wait(lambda: not proc.session(), 5.0)
        self.reap()
        return ended

    def down(self, say: Any = print, grace: float = 15.0) -> float:
        """Stops everything recorded in the state file (and only that); returns the seconds it took."""
        started = time.monotonic()
        procs = self.procs()
        if not procs:
            self.state_path.unlink(missing_ok=True)
            say(f"cluster: nothing to stop in {self.root}")
            return 0.0
        airflow = {name: proc for name, proc in procs.items() if name in AIRFLOW_COMPONENTS}
        for proc in airflow.values():
            proc.signal(signal.SIGTERM)  # all at once: each needs seconds to wind down
        all_gone = _wait(lambda: not any(p.session() or p.alive() for p in airflow.values()), grace)
        killed = []
        if not all_gone:
            for name, proc in airflow.items():
                if proc.session():
                    killed.append(name)
                    proc.signal_session(signal.SIGKILL)
            _wait(lambda: not any(p.session() for p in airflow.values()), 5.0)
        if "redis" in procs:
            procs["redis"].signal(signal.SIGTERM)
            _wait(lambda: not procs["redis"].alive(), 10.0) or procs["redis"].signal(signal.SIGKILL)
        if "postgres" in procs:
            procs["postgres"].signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
            if not _wait(lambda: not procs["postgres"].alive(), 20.0):
                procs["postgres"].signal(signal.SIGQUIT)
        self.reap()
        left = sorted(name for name, proc in procs.items() if proc.alive() or proc.session())
        if left:
            raise ClusterError(f"still running after down: {', '.join(left)} (state {self.state_path})")
        self.state_path.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        how = f"; SIGKILLed after {grace:g}s: {', '.join(killed)}" if killed else ""
        say(f"cluster: down in {seconds:.1f}s{how}; logs kept in {self.logs}")
        return seconds


@contextlib.contextmanager
def running_cluster(cluster: Cluster, say: Any = print) -> Iterator[Cluster]:
    """The cluster up for the block and down on every way out (errors and Ctrl-C included)."""
    try:
        cluster.up(say=say)
        yield cluster
    finally:
        cluster.down(say=say)


def _print_status(cluster: Cluster) -> int:
    procs = cluster.procs()
    if not procs:
        print(f"cluster: not running (no state in {cluster.root})")
        return 1
    for name, proc in procs.items():
        print(
            f"{name:14} {'running' if proc.alive() else 'GONE':8} pid {proc.pid}  log {cluster.log_path(name)}"
        )
    alive = all(proc.alive() for proc in procs.values())
    if alive:
        with contextlib.suppress(Exception):
            print(f"triggerers: {cluster.live_triggerers()}")
        api = AirflowApi(cluster.url)
        print(f"api-server {cluster.url}: {api.health()}")
        api.api.close()
    return 0 if alive else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help=f"the cluster's directory ({DEFAULT_DIR})"
    )
    parser.add_argument("--dags-folder", type=Path, default=None, help="default: example_dags/")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra env of every Airflow component"
    )
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    cluster = Cluster(args.dir, args.dags_folder, extra)
    try:
        if args.command == "up":
            cluster.up()
            print(
                f"cluster: admin password in {Path(cluster.state['env']['AIRFLOW_HOME'])}/simple_auth_manager_passwords.json.generated"
            )
        elif args.command == "down":
            cluster.down()
        else:
            return _print_status(cluster)
    except (HarnessError, httpx.HTTPError, OSError) as exc:
        message = str(exc) if str(exc).startswith("cluster:") else f"cluster: {exc}"
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
