"""N triggers in one event loop against a loopback server in another process, side by side with baselines.

    python bench/triggers.py [--count 2000] [--poll 1] [--window 20] [--quick] [--variants ...]

Variants, each in a fresh child process, one after the other, against the same server:

* ``ours``: ``SkyvernRunTrigger`` rebuilt from ``serialize()`` and run by Airflow's own triggerer code
  (``TriggerRunner.create_triggers`` / ``run_trigger``: kwargs encrypted and decrypted as stored,
  greenback portal, ``async for event in trigger.run()``), as the triggerer's runner process does.
* ``newclient``: a trigger that opens a new ``httpx.AsyncClient`` for every poll (the dbt Cloud /
  BigQuery / Fivetran pattern, ``bench/_baseline_triggers.py``), run by the same triggerer code.
* ``floor``: no trigger at all: N coroutines polling through one shared ``httpx.AsyncClient``
  (``--floor-connections`` pool, JSON parsed, no model): what polling costs with httpx alone.
* ``sdk``: the official SDK, N coroutines each with its own ``AsyncSkyvern`` calling ``get_run``; it runs
  in the SDK's own venv (it cannot be installed beside Airflow 3), skipped when that is absent.

The server (``bench/_runserver.py``) answers every ``GET /v1/runs/{id}`` with a running task run, so no run
ever finishes during the measurement, and counts the polls per run id. Before its baseline RSS each child
polls one other run once (imports and first-use set-up are not per trigger), then starts all N at once
(a triggerer restart adopting N triggers). Figures, client side:

* time until every trigger has polled once (from the start of the N; server-side first GETs, on the
  machine-wide monotonic clock),
* loop lag: how late ``asyncio.sleep(0.01)`` wakes in a ticker task, worst and p99, in the steady-state
  window that starts ``--settle`` s after every trigger has polled once and lasts ``--window`` s,
* RSS per live trigger: (RSS at the end of the window - RSS before the N started) / N,
* CPU per poll: the child's ``time.process_time()`` over the window / polls the server saw in it.

A second, light pass (``--light-count``, default 10 pollers, no ticker) measures CPU per poll again where
no variant is short of CPU. Ratios are ours over (b), (c) and (d), each measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    API_KEY,
    BENCH,
    Server,
    airflow_home,
    banner,
    connection_json,
    http,
    last_json,
    ratio,
    rss_bytes,
    table,
)

VARIANTS = ("ours", "newclient", "floor", "sdk")
LABELS = {
    "ours": "(a) SkyvernRunTrigger",
    "newclient": "(b) new client per poll",
    "floor": "(c) bare shared client",
    "sdk": "(d) SDK AsyncSkyvern.get_run",
}
SDK_PYTHON = "/tmp/realsky/venv/bin/python"  # noqa: S108 - where this machine keeps the SDK's venv
GOALS = {"first_all": 10.0, "lag_max": 50.0, "rss_kb": 100.0, "cpu_vs_newclient": 0.25, "cpu_vs_sdk": 0.33}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000, help="triggers in the loop (default 2000)")
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval, seconds (default 1)")
    parser.add_argument(
        "--window", type=float, default=20.0, help="steady-state window, seconds (default 20)"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="wait after all polled once (default 2)")
    parser.add_argument(
        "--max-first",
        type=float,
        default=300.0,
        help="give up waiting for all first polls after (default 300 s)",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--sdk-python", default=SDK_PYTHON, help="a python that can import skyvern.client")
    parser.add_argument(
        "--floor-connections",
        type=int,
        default=100,
        help="pool size of the floor's shared client (default 100)",
    )
    parser.add_argument(
        "--light-count",
        type=int,
        default=10,
        help="a second pass with this many pollers and no ticker: CPU per poll unsaturated (0 = skip; default 10)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="the server holds each answer back this long, as a remote Skyvern would (default 0)",
    )
    parser.add_argument(
        "--run-age",
        type=float,
        default=2.0,
        help="seconds since the runs were created: young runs are polled more often (default 2)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before the N start: what a triggerer that froze its start-up heap would see",
    )
    parser.add_argument("--quick", action="store_true", help="--count 200 --window 5")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--no-ticker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.count, args.window = min(args.count, 200), min(args.window, 5.0)
        args.light_count = min(args.light_count, 10)
    if args.child:
        return child(args)
    return orchestrate(args)


# ---- the parent: server, children, table -----------------------------------------------------------


def orchestrate(args: argparse.Namespace) -> int:
    print(
        banner(
            f"triggers: {args.count} triggers in one event loop, {args.poll:g} s polls at most, runs "
            f"{args.run_age:g} s old, {args.latency * 1000:g} ms server latency",
            sys.argv,
        )
    )
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; use {', '.join(VARIANTS)}")
    passes = [("load", args.count, True)]
    if args.light_count:
        passes.append(("light", args.light_count, False))
    results: dict[str, dict[str, dict[str, Any]]] = {name: {} for name, _, _ in passes}
    notes: list[str] = []
    with airflow_home() as env:
        from cryptography.fernet import Fernet  # Airflow's own dependency; kwargs are stored encrypted

        env["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
        server_cmd = [sys.executable, str(BENCH / "_runserver.py"), "--api-key", API_KEY]
        server_cmd += ["--latency", str(args.latency), "--run-age", str(args.run_age)]
        with Server(server_cmd, env) as server:
            env["AIRFLOW_CONN_SKYVERN_DEFAULT"] = connection_json(server.base_url)
            sdk_skipped = sdk_unavailable(args.sdk_python) if "sdk" in variants else None
            if sdk_skipped:
                notes.append(f"SDK baseline: skipped ({sdk_skipped})")
                variants.remove("sdk")
            for name, count, ticker in passes:
                for variant in variants:
                    python = args.sdk_python if variant == "sdk" else sys.executable
                    http("POST", f"{server.base_url}/_reset")
                    print(f"running {LABELS[variant]}, {count} pollers ...", flush=True)
                    results[name][variant] = run_child(
                        python, variant, args, server.base_url, env, count, ticker
                    )
    print_results(args, results["load"], notes)
    if args.light_count:
        print_light(args, results["light"])
    return 0


def sdk_unavailable(python: str) -> str | None:
    if not Path(python).exists():
        return f"{python} not found"
    check = subprocess.run(  # noqa: S603 - the SDK's interpreter, a fixed import
        [python, "-c", "import skyvern.client, skyvern; from skyvern.client import AsyncSkyvern"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        return f"{python} cannot import skyvern.client: {check.stderr.strip().splitlines()[-1:]}"
    return None


def run_child(
    python: str,
    variant: str,
    args: argparse.Namespace,
    base_url: str,
    env: dict[str, str],
    count: int,
    ticker: bool,
) -> Any:
    cmd = [python, str(Path(__file__).resolve()), "--child", variant, "--base-url", base_url]
    cmd += ["--count", str(count), "--poll", str(args.poll), "--window", str(args.window)]
    cmd += ["--settle", str(args.settle), "--max-first", str(args.max_first)]
    cmd += ["--floor-connections", str(args.floor_connections)]
    if args.gc_freeze:
        cmd.append("--gc-freeze")
    if not ticker:
        cmd.append("--no-ticker")
    budget = args.max_first + args.settle + args.window + 300
    try:
        proc = subprocess.run(  # noqa: S603 - this script, as a child
            cmd, env=env, capture_output=True, text=True, check=False, timeout=budget
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child did not finish within {budget:.0f} s"}
    try:
        return last_json(proc.stdout)
    except RuntimeError:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        return {"error": f"child exited {proc.returncode}: " + " / ".join(tail)}


def print_results(args: argparse.Namespace, results: dict[str, dict[str, Any]], notes: list[str]) -> None:
    ok = {v: r for v, r in results.items() if "error" not in r}

    def value(variant: str, key: str) -> float | None:
        got = ok.get(variant, {}).get(key)
        return None if got is None else float(got)

    def show(x: float | None, fmt: str, none: str = "-") -> str:
        return none if x is None else format(x, fmt)

    print(
        f"\n{args.count} triggers (or pollers), {args.poll:g} s polls; steady-state window {args.window:g} s, "
        f"starting {args.settle:g} s after all polled once\n"
    )
    headers = ["figure", *(LABELS[v] for v in ok), "a/b", "a/c", "a/d", "goal"]
    rows: list[list[str]] = []
    specs: list[tuple[str, str, str, str]] = [
        ("time until every trigger polled once, s", "first_all", ".1f", f"<= {GOALS['first_all']:g} s"),
        ("worst loop lag, steady state, ms", "lag_max_ms", ".0f", f"<= {GOALS['lag_max']:g} ms"),
        ("p99 loop lag, steady state, ms", "lag_p99_ms", ".1f", ""),
        ("worst loop lag outside full GCs, ms", "lag_max_no_gc_ms", ".0f", ""),
        ("full (gen-2) GCs in the window", "full_gcs", ".0f", ""),
        ("longest full GC in the window, ms", "full_gc_max_ms", ".0f", ""),
        ("gc.collect() before the N started, ms", "full_gc_before_ms", ".0f", ""),
        ("gc.collect() after the window, ms", "full_gc_after_ms", ".0f", ""),
        ("GC-tracked objects per live trigger", "objects_per_trigger", ".0f", ""),
        ("worst loop lag while starting, ms", "lag_max_ramp_ms", ".0f", ""),
        ("RSS per live trigger, KB", "rss_per_trigger_kb", ".0f", f"<= {GOALS['rss_kb']:g} KB"),
        ("CPU per poll, ms", "cpu_per_poll_ms", ".3f", "a/b <= 0.25, a/d <= 0.33"),
        ("polls per second, steady state", "polls_per_s", ".0f", f"{args.count / args.poll:.0f} asked"),
        ("client CPU use, steady state, cores", "cpu_cores", ".2f", ""),
        ("server CPU use, steady state, cores", "server_cores", ".2f", "< 0.8 (else server-bound)"),
        ("connections opened per poll", "connections_per_poll", ".3f", ""),
        ("triggers ended or failed", "ended", ".0f", "0"),
    ]
    for label, key, fmt, goal in specs:
        row = [label]
        for variant in ok:
            got = value(variant, key)
            if key == "first_all" and got is None and variant in ok:
                row.append(f"> {args.max_first:g} ({ok[variant]['ids']} polled)")
            else:
                row.append(show(got, fmt))
        a = value("ours", key)
        row += [
            ratio(a, value("newclient", key)),
            ratio(a, value("floor", key)),
            ratio(a, value("sdk", key)),
            goal,
        ]
        rows.append(row)
    print(table(headers, rows))
    for variant, result in ok.items():
        if result.get("errors"):
            notes.append(
                f"{LABELS[variant]}: {result['errors']} failed polls, e.g. {result.get('error_example')}"
            )
        if (result.get("server_cores") or 0) > 0.8:
            notes.append(f"{LABELS[variant]}: the server used > 0.8 core: this figure may be server-bound")
        if result["polls_per_s"] < 0.9 * args.count / args.poll and result["cpu_cores"] > 0.8:
            notes.append(
                f"{LABELS[variant]}: short of CPU ({result['polls_per_s']:.0f} of {args.count / args.poll:.0f} "
                "polls/s asked): its CPU per poll here is under saturation, see the light pass"
            )
    for variant in results:
        if variant not in ok:
            notes.append(f"{LABELS[variant]}: no figures ({results[variant]['error']})")
    if notes:
        print("\n" + "\n".join(notes))


def print_light(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    ok = {v: r for v, r in results.items() if "error" not in r}
    if not ok:
        return
    count = next(iter(ok.values()))["count"]
    print(
        f"\nLight pass: {count} pollers, no ticker task, {args.window:g} s window: CPU per poll where no variant "
        "should be short of CPU (see its CPU use)\n"
    )

    def value(variant: str, key: str) -> float | None:
        got = ok.get(variant, {}).get(key)
        return None if got is None else float(got)

    rows = []
    for label, key, fmt in (
        ("CPU per poll, ms", "cpu_per_poll_ms", ".3f"),
        ("polls per second", "polls_per_s", ".1f"),
        ("client CPU use, cores", "cpu_cores", ".2f"),
    ):
        a = value("ours", key)
        row = [label, *("-" if value(v, key) is None else format(value(v, key), fmt) for v in ok)]
        row += [ratio(a, value("newclient", key)), ratio(a, value("floor", key)), ratio(a, value("sdk", key))]
        rows.append(row)
    print(table(["figure", *(LABELS[v] for v in ok), "a/b", "a/c", "a/d"], rows))
    for variant, result in results.items():
        if "error" in result:
            print(f"{LABELS[variant]}: no figures ({result['error']})")


# ---- the children: one variant each ------------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    import json

    prefix = f"tsk_v2_bench_{args.child}_"
    run_ids = [f"{prefix}{i:05d}" for i in range(args.count)]
    maker = {
        "ours": TriggererVariant,
        "newclient": TriggererVariant,
        "floor": FloorVariant,
        "sdk": SdkVariant,
    }
    variant = maker[args.child](args, run_ids)
    result = asyncio.run(measure(args, prefix, variant))
    print(json.dumps(result), flush=True)
    os._exit(0)  # thousands of live tasks: no orderly teardown needed, and none measured


class Variant:
    """What a child runs: a warm-up (one poll, before the baseline RSS), the N pollers, their failures."""

    def __init__(self, args: argparse.Namespace, run_ids: list[str]) -> None:
        self.args = args
        self.run_ids = run_ids
        self.errors: list[str] = []
        self.warm_up_id = f"tsk_v2_bench_warmup_{args.child}"

    async def warm_up(self) -> None:
        """One poll of a run outside the measured ids: lazy imports and first-use set-up happen here."""

    def start(self) -> None:
        raise NotImplementedError

    def ended(self) -> tuple[int, int, str | None]:
        """(pollers that stopped, failed polls, an example)."""
        return 0, len(self.errors), self.errors[0] if self.errors else None


class TriggererVariant(Variant):
    """Triggers run by Airflow's TriggerRunner, as the triggerer's async process runs them."""

    def __init__(self, args: argparse.Namespace, run_ids: list[str]) -> None:
        super().__init__(args, run_ids)
        os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"  # what the triggerer's runner process sets
        from airflow.executors.workloads.trigger import RunTrigger
        from airflow.jobs.triggerer_job_runner import TriggerRunner
        from airflow.models.trigger import Trigger

        if args.child == "ours":
            from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger

            deadline = time.time() + 86400.0

            def make(run_id: str) -> Any:
                return SkyvernRunTrigger(run_id=run_id, deadline=deadline, poll_interval=args.poll)
        else:
            from _baseline_triggers import PlainPollTrigger

            def make(run_id: str) -> Any:
                return PlainPollTrigger(run_id=run_id, poll_interval=args.poll, new_client_per_poll=True)

        def workload(number: int, run_id: str) -> Any:
            classpath, kwargs = make(run_id).serialize()
            return RunTrigger(id=number, classpath=classpath, encrypted_kwargs=Trigger.encrypt_kwargs(kwargs))

        self.workloads = [workload(number, run_id) for number, run_id in enumerate(run_ids, start=1)]
        self.warm_up_workload = workload(0, self.warm_up_id)
        self.runner = TriggerRunner()  # type: ignore[no-untyped-call]
        self.warm_up_runner = TriggerRunner()  # type: ignore[no-untyped-call]

    async def warm_up(self) -> None:
        self.warm_up_runner.to_create.append(self.warm_up_workload)
        await self.warm_up_runner.create_triggers()  # type: ignore[no-untyped-call]
        await _first_poll_seen(self.args.base_url, self.warm_up_id)
        for details in self.warm_up_runner.triggers.values():
            details["task"].cancel()
        await asyncio.sleep(0.1)

    def start(self) -> None:
        self.runner.to_create.extend(self.workloads)
        self.workloads.clear()
        _keep(asyncio.get_running_loop().create_task(self.runner.create_triggers()))  # type: ignore[no-untyped-call]

    def ended(self) -> tuple[int, int, str | None]:
        done = [details["task"] for details in self.runner.triggers.values() if details["task"].done()]
        failed = [task for task in done if not task.cancelled() and task.exception() is not None]
        events = self.runner.events
        example = repr(failed[0].exception()) if failed else (repr(events[0]) if events else None)
        return len(done), len(failed), example


class FloorVariant(Variant):
    """N coroutines polling through one shared httpx.AsyncClient: JSON parsed, nothing else."""

    def __init__(self, args: argparse.Namespace, run_ids: list[str]) -> None:
        super().__init__(args, run_ids)
        import httpx

        self.httpx = httpx
        self.client: Any = None

    async def warm_up(self) -> None:
        async with self.httpx.AsyncClient(
            base_url=self.args.base_url, headers={"x-api-key": API_KEY}
        ) as client:
            (await client.get(f"/v1/runs/{self.warm_up_id}")).json()

    async def poller(self, run_id: str) -> None:
        while True:
            try:
                response = await self.client.get(f"/v1/runs/{run_id}")
                response.raise_for_status()
                response.json()
            except self.httpx.HTTPError as exc:
                self.errors.append(repr(exc)[:200])
            await asyncio.sleep(self.args.poll)

    def start(self) -> None:
        size = self.args.floor_connections
        self.client = self.httpx.AsyncClient(
            base_url=self.args.base_url,
            headers={"x-api-key": API_KEY},
            timeout=60.0,
            limits=self.httpx.Limits(max_connections=size, max_keepalive_connections=size),
        )
        loop = asyncio.get_running_loop()
        for run_id in self.run_ids:
            _keep(loop.create_task(self.poller(run_id)))


class SdkVariant(Variant):
    """N coroutines, each with its own AsyncSkyvern (as a trigger would hold one), calling get_run."""

    def __init__(self, args: argparse.Namespace, run_ids: list[str]) -> None:
        super().__init__(args, run_ids)
        from skyvern.client import AsyncSkyvern

        self.sdk = AsyncSkyvern

    async def warm_up(self) -> None:
        await self.sdk(base_url=self.args.base_url, api_key=API_KEY).get_run(self.warm_up_id)

    async def poller(self, run_id: str) -> None:
        client = self.sdk(base_url=self.args.base_url, api_key=API_KEY)
        while True:
            try:
                await client.get_run(run_id)
            except Exception as exc:
                self.errors.append(repr(exc)[:200])
            await asyncio.sleep(self.args.poll)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for run_id in self.run_ids:
            _keep(loop.create_task(self.poller(run_id)))


async def _first_poll_seen(base_url: str, run_id: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        got = await loop.run_in_executor(None, http, "GET", f"{base_url}/_stats?prefix={run_id}")
        if got["ids"]:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"warm-up trigger never polled {run_id}")


_TASKS: set[asyncio.Task[Any]] = set()


def _keep(task: asyncio.Task[Any]) -> None:
    _TASKS.add(task)


async def measure(args: argparse.Namespace, prefix: str, variant: Variant) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats_url = f"{args.base_url}/_stats?prefix={prefix}"

    async def stats() -> dict[str, Any]:
        result: dict[str, Any] = await loop.run_in_executor(None, http, "GET", stats_url)
        return result

    lags: list[tuple[float, float]] = []
    full_collections: list[tuple[float, float]] = []  # (start, end) of each generation-2 collection
    collecting: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            collecting[:] = [loop.time()]
        elif collecting:
            full_collections.append((collecting[0], loop.time()))

    def full_collection_ms() -> float:
        started = time.perf_counter()
        gc.collect()
        return (time.perf_counter() - started) * 1000

    async def ticker() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append((before, loop.time() - before - 0.01))

    await stats()  # the executor's thread exists before the baseline RSS
    await variant.warm_up()
    if not args.no_ticker:
        _keep(loop.create_task(ticker()))
    await asyncio.sleep(0.1)
    gc.collect()
    if args.gc_freeze:
        gc.freeze()
    gc_before_ms = full_collection_ms()
    objects_before = len(gc.get_objects())
    gc.callbacks.append(on_gc)
    rss_before = rss_bytes()
    t_start, cpu_start = time.monotonic(), time.process_time()
    variant.start()
    give_up = t_start + args.max_first
    while True:
        await asyncio.sleep(0.5)
        first = await stats()
        if first["ids"] >= args.count or time.monotonic() > give_up:
            break
    all_polled = first["ids"] >= args.count
    first_all = first["first_poll_last"] - t_start if all_polled else None
    cpu_ramp = time.process_time() - cpu_start
    ramp_lags = [lag for _, lag in lags]
    await asyncio.sleep(args.settle)
    s1, c1, t1 = await stats(), time.process_time(), time.monotonic()
    from_lag, from_gc = len(lags), len(full_collections)
    await asyncio.sleep(args.window)
    s2, c2, t2 = await stats(), time.process_time(), time.monotonic()
    rss_after = rss_bytes()
    objects_after = len(gc.get_objects())
    gc.callbacks.remove(on_gc)
    window_gcs = full_collections[from_gc:]
    window_lags = sorted(lag for _, lag in lags[from_lag:])

    def during_full_collection(before: float, lag: float) -> bool:
        return any(start < before + 0.01 + lag and end > before for start, end in window_gcs)

    lags_without_gc = sorted(
        lag for before, lag in lags[from_lag:] if not during_full_collection(before, lag)
    )
    gc_after_ms = full_collection_ms()
    polls = s2["gets"] - s1["gets"]
    ended_count, errors, example = variant.ended()
    return {
        "variant": args.child,
        "count": args.count,
        "ids": first["ids"],
        "first_all": first_all,
        "first_any": None if first["first_poll_first"] is None else first["first_poll_first"] - t_start,
        "cpu_ramp_s": cpu_ramp,
        "lag_max_ramp_ms": max(ramp_lags, default=0.0) * 1000,
        "lag_max_ms": window_lags[-1] * 1000 if window_lags else None,
        "lag_p99_ms": window_lags[int(0.99 * (len(window_lags) - 1))] * 1000 if window_lags else None,
        "lag_max_no_gc_ms": lags_without_gc[-1] * 1000 if lags_without_gc else None,
        "full_gcs": len(window_gcs),
        "full_gc_max_ms": max(((end - start) * 1000 for start, end in window_gcs), default=None),
        "full_gc_before_ms": gc_before_ms,
        "full_gc_after_ms": gc_after_ms,
        "objects_per_trigger": (objects_after - objects_before) / args.count,
        "rss_before_mb": rss_before / 2**20,
        "rss_after_mb": rss_after / 2**20,
        "rss_per_trigger_kb": (rss_after - rss_before) / args.count / 1024,
        "polls": polls,
        "polls_per_s": polls / (t2 - t1),
        "cpu_per_poll_ms": (c2 - c1) / polls * 1000 if polls else None,
        "cpu_cores": (c2 - c1) / (t2 - t1),
        "server_cores": (s2["server_cpu"] - s1["server_cpu"]) / (t2 - t1),
        "connections_per_poll": (s2["connections"] - s1["connections"]) / polls if polls else None,
        "ended": ended_count,
        "errors": errors,
        "error_example": example,
    }


if __name__ == "__main__":
    sys.exit(main())
