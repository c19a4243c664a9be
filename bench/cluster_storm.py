"""The fault storm on a production-shaped Airflow: N deferrable task instances, two triggerer restarts.

Brings up its own cluster (scripts/cluster.py: Postgres, Redis, CeleryExecutor, two triggerers) in a
throwaway directory, with the Skyvern emulator (another process) as Skyvern, and stops both in ``finally``.
One DAG run of ``bench/cluster_storm_dags/``: a ``SkyvernRunTaskOperator`` mapped (``.expand``) over N
pages, ``deferrable=True``, ``retries=3``, ``retry_delay`` 30 s, ``poll_interval`` 10 s; each emulated run
takes between ``--run-seconds`` and twice that, so triggers are deferred when the triggerers restart. The
emulator answers under bench/fault_storm.py's faults: GETs 500 (15 %), 429 with Retry-After (5 %), dropped
connections (5 %); run-creating POSTs that create the run and then lose the answer (15 %) or answer 503
before creating one (5 %).

Mid-storm, once enough tasks are deferred, the triggerer holding more triggers is stopped and started again,
twice: first with SIGTERM (graceful), 60 s later or more with SIGKILL (its whole session); the other one
takes its triggers over.

Prints one table and one result line: correct % (the task succeeded handing on its own run, or failed
saying it could not tell whether a run was created), duplicates (live runs beyond one per task instance),
orphans (runs going or completed that no task handed on and nobody canceled), cancels, /v1 requests per
run, wall time, CPU seconds of the triggerers and the Celery worker (utime+stime of every process of their
sessions, reaped children included; a restarted triggerer's incarnations are summed), the split of triggers
between the triggerers (from the metadata database) and the most tasks deferred at once. Every duplicate
and orphan is listed with its task instance, run ids and log lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))

from airflow_harness import EMULATOR_API_KEY, Emulator, HarnessError, poll_until  # noqa: E402
from cluster import AIRFLOW_COMPONENTS, TRIGGERERS, Cluster, Proc, _stat_fields  # noqa: E402
from fault_storm import BAD_ENDS, FAULTS  # noqa: E402

DAG_ID = "skyvern_cluster_storm"
TASK_ID = "extract"
DAGS = REPO / "bench" / "cluster_storm_dags"
PAGE = re.compile(r"catalogue page (\d+) of the storm")
COULD_NOT_TELL = "could not tell whether"
"""What the last try of a task that gave up rather than risk a second run says (lowercased)."""
RESTART_GAP = 60.0
"""Seconds at least between the two triggerer restarts (and between a restart and the storm's end)."""
SAMPLE_EVERY = 3.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def settings(count: int, poll_interval: float, retry_delay: float) -> dict[str, str]:
    """What every Airflow component gets on top of the cluster's own environment, and why."""
    return {
        # Open executor slots (queued + running on the worker; deferred tasks hold none): above the worker's
        # concurrency so the scheduler always has tasks queued for it.
        "AIRFLOW__CORE__PARALLELISM": "64",
        # Running + queued per DAG run (deferred not counted in 3.3): no cap below parallelism.
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4096",
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(max(1024, count)),
        # Task instances the scheduler examines per loop (default 16): 1,000 mapped ones get queued in
        # tens of loops, not hundreds.
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64",
        # One triggerer must be able to hold every trigger while the other restarts (default 1000).
        "AIRFLOW__TRIGGERER__CAPACITY": str(max(1000, count)),
        "SKYVERN_STORM_POLL_INTERVAL": f"{poll_interval:g}",
        "SKYVERN_STORM_RETRY_DELAY": f"{retry_delay:g}",
    }


# ---- CPU -----------------------------------------------------------------------------------------------


def cpu_seconds(proc: Proc) -> float:
    """utime+stime+cutime+cstime of every live process of the session ``proc`` leads: the processes it
    runs now, and every child they reaped (a Celery pool child's task processes, a triggerer's runner)."""
    ticks = 0
    for pid in proc.session():
        fields = _stat_fields(pid)
        if fields:
            ticks += sum(int(value) for value in fields[11:15])  # fields 14-17 of /proc/PID/stat
    return ticks / CLK_TCK


@dataclass
class CpuMeter:
    """CPU seconds per component since the storm began, across restarts (each incarnation counted whole)."""

    cluster: Cluster
    names: tuple[str, ...]
    done: dict[str, float] = field(default_factory=dict)
    base: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        for name in self.names:
            self.done[name] = 0.0
            self.base[name] = cpu_seconds(self.cluster.proc(name))

    def before_stop(self, name: str) -> None:
        """Banks the incarnation about to be stopped; the next one counts from its start."""
        self.done[name] += cpu_seconds(self.cluster.proc(name)) - self.base[name]
        self.base[name] = 0.0

    def total(self, name: str) -> float:
        return self.done[name] + cpu_seconds(self.cluster.proc(name)) - self.base[name]


# ---- the storm -----------------------------------------------------------------------------------------


@dataclass
class Watch:
    """What the storm's sampling saw: deferred tasks, and which triggerer job ran each trigger."""

    max_deferred: int = 0
    trigger_jobs: dict[int, list[int]] = field(default_factory=dict)
    """Trigger id → the triggerer jobs seen running it, first first."""
    job_host: dict[int, str] = field(default_factory=dict)
    restarts: list[str] = field(default_factory=list)

    def split(self) -> dict[str, int]:
        """Triggers per hostname of the triggerer that first ran them."""
        return dict(Counter(self.job_host.get(jobs[0], "?") for jobs in self.trigger_jobs.values()))

    def moved(self) -> int:
        """Triggers run by more than one triggerer job (taken over, or back on a restarted one)."""
        return sum(1 for jobs in self.trigger_jobs.values() if len(jobs) > 1)


def sample(cluster: Cluster, run_id: str, watch: Watch) -> dict[str, int]:
    rows = cluster.query(
        "SELECT state, count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s "
        "GROUP BY state",
        (DAG_ID, run_id, TASK_ID),
    )
    states = {str(state): int(n) for state, n in rows}
    watch.max_deferred = max(watch.max_deferred, states.get("deferred", 0))
    for trigger_id, job_id, host in cluster.query(
        "SELECT t.id, t.triggerer_id, j.hostname FROM trigger t JOIN job j ON j.id = t.triggerer_id"
    ):
        jobs = watch.trigger_jobs.setdefault(int(trigger_id), [])
        if int(job_id) not in jobs:
            jobs.append(int(job_id))
        watch.job_host[int(job_id)] = str(host)
    return states


def held_by(cluster: Cluster) -> dict[str, int]:
    rows = cluster.query(
        "SELECT j.hostname, count(*) FROM trigger t JOIN job j ON j.id = t.triggerer_id GROUP BY j.hostname"
    )
    return {str(host): int(n) for host, n in rows}


def restart_triggerer(cluster: Cluster, cpu: CpuMeter, sig: signal.Signals, watch: Watch, say: Any) -> None:
    """Stops the triggerer holding more triggers with ``sig`` and starts it again at once."""
    held = held_by(cluster)
    victim = max(TRIGGERERS, key=lambda name: held.get(name, 0))
    began = time.monotonic()
    cpu.before_stop(victim)
    if sig == signal.SIGKILL:
        proc = cluster.proc(victim)
        proc.signal_session(signal.SIGKILL)
        poll_until(lambda: True if not proc.session() else None, timeout=10, what=f"{victim} to die")
        cluster.reap()
    elif not cluster.stop_component(victim, sig, grace=60):
        say(f"storm: {victim} outlived SIGTERM for 60 s and was SIGKILLed")
    stopped = time.monotonic() - began
    cluster.start_component(victim)
    note = f"{sig.name} {victim} holding {held.get(victim, 0)} of {sum(held.values())} triggers, stopped in {stopped:.1f} s, started again"
    watch.restarts.append(note)
    say(f"storm: {note}")


def run_storm(
    cluster: Cluster, emulator: Emulator, args: argparse.Namespace, say: Any
) -> tuple[str, float, Watch, dict[str, float]]:
    api = cluster.api
    assert api is not None
    api.wait_for_dag(DAG_ID, timeout=180)
    emulator.http.post("/_emulator/reset").raise_for_status()
    emulator.add_faults(FAULTS)
    cpu = CpuMeter(cluster, ("worker", *TRIGGERERS))
    cpu.start()
    run_id = f"storm__{args.count}__{uuid.uuid4().hex[:8]}"
    threshold = max(3, min(args.count // 5, 100))
    watch = Watch()
    began = time.monotonic()
    api.trigger(DAG_ID, run_id, conf={"count": args.count, "run_seconds": args.run_seconds})
    say(f"storm: DAG run {run_id}: {args.count} task instances; restarts once {threshold} are deferred")
    last_restart, last_report = began - RESTART_GAP, began
    restarts = [signal.SIGTERM, signal.SIGKILL]
    while True:
        cluster.reap()
        for name in AIRFLOW_COMPONENTS:
            if not cluster.proc(name).alive():
                raise HarnessError(f"{name} died mid-storm: {cluster.log_tail(name, 1)}")
        states = sample(cluster, run_id, watch)
        now = time.monotonic()
        if now - last_report >= 30:
            last_report = now
            say(
                f"storm: {now - began:5.0f} s  "
                + " ".join(f"{k}={v}" for k, v in sorted(states.items()))
                + f"  max deferred {watch.max_deferred}"
            )
        if restarts and states.get("deferred", 0) >= threshold and now - last_restart >= RESTART_GAP:
            restart_triggerer(cluster, cpu, restarts.pop(0), watch, say)
            last_restart = time.monotonic()
        state = api.dag_run_state(DAG_ID, run_id)
        if state in ("success", "failed"):
            break
        if now - began > args.timeout:
            raise HarnessError(f"the storm did not finish within {args.timeout:g} s: {states}")
        time.sleep(SAMPLE_EVERY)
    wall = time.monotonic() - began
    emulator.clear_faults()
    return run_id, wall, watch, {name: cpu.total(name) for name in cpu.names}


# ---- scoring -------------------------------------------------------------------------------------------


def _xcom_value(value: Any) -> Any:
    while isinstance(value, str) and value[:1] == '"':
        value = json.loads(value)
    return value


def _page(run: dict[str, Any]) -> int | None:
    match = PAGE.search(str(run["request"].get("prompt") or ""))
    return int(match.group(1)) if match else None


def _ti_log(cluster: Cluster, run_id: str, map_index: int, try_number: int) -> str:
    path = (
        cluster.logs
        / "airflow"
        / f"dag_id={DAG_ID}"
        / f"run_id={run_id}"
        / f"task_id={TASK_ID}"
        / f"map_index={map_index}"
    )
    texts = [p.read_text(errors="replace") for p in sorted(path.glob(f"attempt={try_number}.log*"))]
    return "\n".join(texts)


def _mentions(cluster: Cluster, run_id: str, map_index: int, tries: int, needle: str) -> list[str]:
    lines = []
    for number in range(1, tries + 1):
        for line in _ti_log(cluster, run_id, map_index, number).splitlines():
            if needle in line:
                lines.append(f"try {number}: {line.strip()[:300]}")
    return lines


def score(
    cluster: Cluster, emulator: Emulator, run_id: str, wall: float, watch: Watch, cpu: dict[str, float]
) -> tuple[dict[str, Any], list[str]]:
    tis = {
        int(index): (str(state), int(tries))
        for index, state, tries in cluster.query(
            "SELECT map_index, state, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "AND task_id = %s",
            (DAG_ID, run_id, TASK_ID),
        )
    }
    handed = {
        int(index): _xcom_value(value)
        for index, value in cluster.query(
            "SELECT map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = %s "
            "AND key = 'run_id'",
            (DAG_ID, run_id, TASK_ID),
        )
    }
    runs = emulator.runs()
    requests = emulator.http.get("/_emulator/requests").json()["requests"]
    v1 = [r for r in requests if str(r["path"]).startswith("/v1/")]
    page_of = {run["run_id"]: _page(run) for run in runs}
    handed_count = Counter(handed.values())
    correct, told = 0, set[int]()
    for index, (state, tries) in tis.items():
        mine = handed.get(index)
        if state == "success" and mine is not None and page_of.get(mine) == index and handed_count[mine] == 1:
            correct += 1
        elif state == "failed" and COULD_NOT_TELL in _ti_log(cluster, run_id, index, tries).lower():
            correct += 1
            told.add(index)
    live = [r for r in runs if r["status"] not in BAD_ENDS and not r["cancel_requests"]]
    per_page: dict[int | None, list[str]] = {}
    for run in live:
        per_page.setdefault(page_of[run["run_id"]], []).append(run["run_id"])
    handed_ids = set(handed.values())
    orphans = [r for r in live if r["run_id"] not in handed_ids]
    details = []
    for page, ids in sorted(per_page.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        if len(ids) > 1:
            details.append(f"DUPLICATE {TASK_ID}[{page}] {_ti(tis, page)}: live runs {', '.join(ids)}")
            details += _run_log_lines(cluster, run_id, page, tis, ids)
    for run in orphans:
        page = page_of[run["run_id"]]
        details.append(
            f"ORPHAN {run['run_id']} ({run['status']}) of {TASK_ID}[{page}] {_ti(tis, page)}, "
            f"which handed on {handed.get(page) if page is not None else None}"
        )
        details += _run_log_lines(cluster, run_id, page, tis, [run["run_id"]])
    states = Counter(state for state, _ in tis.values())
    split = watch.split()
    figures = {
        "task instances": len(tis),
        "final states": " ".join(f"{k}={v}" for k, v in sorted(states.items())),
        "correct %": round(100.0 * correct / max(1, len(tis)), 1),
        "failed saying it could not tell": len(told),
        "runs created": len(runs),
        "duplicates": sum(len(ids) - 1 for ids in per_page.values()),
        "orphans": len(orphans),
        "orphans of a task that could not tell": sum(page_of[r["run_id"]] in told for r in orphans),
        "cancels (requests / runs canceled)": f"{sum(int(r['cancel_requests']) for r in runs)} / "
        f"{sum(r['status'] == 'canceled' for r in runs)}",
        "requests per run (/v1)": round(len(v1) / max(1, len(runs)), 1),
        "faults answered": sum(1 for r in v1 if str(r["status"]).startswith("fault")),
        "wall s (trigger to DAG run end)": round(wall, 1),
        "triggerer CPU s (a + b)": f"{cpu['triggerer-a'] + cpu['triggerer-b']:.1f} "
        f"({cpu['triggerer-a']:.1f} + {cpu['triggerer-b']:.1f})",
        "Celery worker CPU s": round(cpu["worker"], 1),
        "triggers first run by a / b; moved": f"{split.get('triggerer-a', 0)} / "
        f"{split.get('triggerer-b', 0)}; {watch.moved()} moved",
        "max deferred at once": watch.max_deferred,
        "triggerer restarts": len(watch.restarts),
    }
    return figures, details


def _ti(tis: dict[int, tuple[str, int]], page: int | None) -> str:
    state, tries = tis.get(page, ("?", 0)) if page is not None else ("?", 0)
    return f"({state}, try {tries})"


def _run_log_lines(
    cluster: Cluster, run_id: str, page: int | None, tis: dict[int, tuple[str, int]], ids: list[str]
) -> list[str]:
    if page is None or page not in tis:
        return []
    return [f"    {line}" for rid in ids for line in _mentions(cluster, run_id, page, tis[page][1], rid)[:6]]


# ---- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000, help="mapped task instances (default 1000)")
    parser.add_argument("--quick", action="store_true", help="100 task instances")
    parser.add_argument(
        "--run-seconds", type=float, default=60.0, help="shortest emulated run (default 60; longest twice it)"
    )
    parser.add_argument("--poll-interval", type=float, default=10.0, help="the operators' (default 10)")
    parser.add_argument("--retry-delay", type=float, default=30.0, help="the tasks' (default 30)")
    parser.add_argument("--worker-concurrency", type=int, default=12, help="Celery worker (default 12)")
    parser.add_argument("--timeout", type=float, default=5400.0, help="give up after (default 5400 s)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory and logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.count = 100

    def say(line: str) -> None:
        print(line, flush=True)

    root = Path(tempfile.mkdtemp(prefix="skyvern-storm-"))  # under /tmp: the postgres user must enter it
    root.chmod(0o711)
    emulator = Emulator(root, EMULATOR_API_KEY, run_seconds=args.run_seconds)
    connection = {
        "conn_type": "skyvern",
        "host": emulator.base_url,
        "password": EMULATOR_API_KEY,
        "extra": {"max_retries": 3, "request_timeout": 10},
    }
    env = {
        "AIRFLOW_CONN_SKYVERN_DEFAULT": json.dumps(connection),
        **settings(args.count, args.poll_interval, args.retry_delay),
    }
    cluster = Cluster(root / "cluster", DAGS, env, worker_concurrency=args.worker_concurrency)
    failed = True
    try:
        emulator.start()
        bring_up = cluster.up(timeout=300, say=say)
        run_id, wall, watch, cpu = run_storm(cluster, emulator, args, say)
        figures, details = score(cluster, emulator, run_id, wall, watch, cpu)
        failed = False
    except (HarnessError, OSError) as exc:
        print(f"cluster_storm: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            cluster.down(say=say)
        finally:
            emulator.stop()
            if failed or args.keep:
                say(f"storm: logs kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    for restart in watch.restarts:
        print(f"restart: {restart}")
    for line in details:
        print(line)
    chosen = settings(args.count, args.poll_interval, args.retry_delay)
    print(
        f"\ncluster up in {bring_up:.0f} s; worker concurrency {args.worker_concurrency}, poll_interval "
        f"{args.poll_interval:g} s, retry_delay {args.retry_delay:g} s, retries 3, runs {args.run_seconds:g}-"
        f"{2 * args.run_seconds:g} s; "
        + ", ".join(f"{k.removeprefix('AIRFLOW__').lower()}={v}" for k, v in chosen.items() if "AIRFLOW" in k)
    )
    print("\n| figure | value |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value} |")
    print(
        f"\ncluster_storm: {figures['task instances']} task instances, {figures['correct %']}% correct, "
        f"{figures['duplicates']} duplicates, {figures['orphans']} orphans, "
        f"cancels {figures['cancels (requests / runs canceled)']}, "
        f"{figures['requests per run (/v1)']} requests/run, wall {figures['wall s (trigger to DAG run end)']} s, "
        f"triggerer CPU {figures['triggerer CPU s (a + b)']} s, worker CPU {figures['Celery worker CPU s']} s, "
        f"triggers a/b {figures['triggers first run by a / b; moved']}, max deferred {figures['max deferred at once']}, "
        f"{len(watch.restarts)} triggerer restarts"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
