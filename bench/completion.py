"""How soon the trigger notices a finished run, and how many requests it sends for a long one.

    python bench/completion.py [--quick] [--trials 5]

1. Completion latency, real time. The emulator runs in another process
   (``python -m airflow_provider_skyvern.emulator``); each trial creates two runs of the same duration at
   the same moment (``POST /v1/run/tasks`` with an ``[emulator seconds=D]`` directive), waits a start
   delay (trial i of K: i * min(D, 10) / K seconds, so the trials cover every phase of a 10 s poll), then
   waits for one run with ``SkyvernRunTrigger`` (``poll_interval`` = the operator's default, read from its
   signature; rebuilt from
   ``serialize()`` through Airflow's serde, ``async for event in trigger.run()``) and for the other with
   the baseline: a trigger polling every 10 s (``bench/_baseline_triggers.py``). Latency = the time the
   event arrives - the run's ``finished_at`` on the server. D = 5 s and 60 s (``--quick``: 5 s only).
   The GETs each run received come from the emulator's request log.
2. Requests for a 30-minute run, simulated time. The trigger builds its own hook, so no clock can be
   handed to it; instead the whole child process runs on a simulated clock: an event loop whose clock
   jumps to its next timer whenever nothing is ready (after 50 ms of real waiting for sockets), with
   ``time.time``/``datetime.now`` (time-machine), ``time.monotonic`` and ``perf_counter`` moved alike. The
   server (``bench/_runserver.py``) runs in the same loop on the same clock, with a run that completes 30
   minutes after it was created; the same trigger and the same fixed 10 s baseline wait for it side by side.
   Figures: GETs, when completion was noticed, and the worst gap between polls as a share of the run's age.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import json
import os
import selectors
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    API_KEY,
    Server,
    airflow_home,
    banner,
    connection_json,
    http,
    last_json,
    parse_naive_utc,
    ratio,
    table,
)

POLL = 10.0  # the baseline's fixed interval; our trigger gets the operator's default (operator_poll_interval)
REAL_WAIT = 0.05  # simulated time: real seconds to wait for sockets before the clock jumps
KINDS = {"ours": "(a) SkyvernRunTrigger, default poll_interval", "fixed": "(b) fixed 10 s poll"}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5, help="runs per duration and trigger (default 5)")
    parser.add_argument("--minutes", type=float, default=30.0, help="simulated run length (default 30)")
    parser.add_argument("--quick", action="store_true", help="3 trials, the 5 s run only")
    parser.add_argument("--child", choices=("latency", "simulated"), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--durations", default="5,60", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "latency":
        durations = [float(d) for d in args.durations.split(",")]
        print(json.dumps(asyncio.run(latency_trials(args.base_url, durations, args.trials))), flush=True)
        return 0
    if args.child == "simulated":
        print(json.dumps(simulated(args.minutes)), flush=True)
        return 0
    if args.quick:
        args.trials, args.durations = min(args.trials, 3), "5"
    print(banner("completion: when a finished run is noticed, requests for a long run", sys.argv))
    me = str(Path(__file__).resolve())
    with airflow_home() as env:
        emulator_cmd = [sys.executable, "-m", "airflow_provider_skyvern.emulator", "--port", "0"]
        with Server([*emulator_cmd, "--api-key", API_KEY], env) as emulator:
            env["AIRFLOW_CONN_SKYVERN_DEFAULT"] = connection_json(emulator.base_url)
            print("running the latency trials (real time) ...", flush=True)
            child_args = ["--base-url", emulator.base_url, "--durations", args.durations]
            latency = _child([me, "--child", "latency", *child_args, "--trials", str(args.trials)], env)
            requests = http("GET", f"{emulator.base_url}/_emulator/requests")
        env.pop("AIRFLOW_CONN_SKYVERN_DEFAULT")
        print(f"running the {args.minutes:g}-minute run (simulated time) ...", flush=True)
        simulated_result = _child([me, "--child", "simulated", "--minutes", str(args.minutes)], env)
    print_latency(latency, requests, args)
    print_simulated(simulated_result, args)
    return 0


def _child(argv: list[str], env: dict[str, str]) -> Any:
    proc = subprocess.run(  # noqa: S603 - this script, as a child
        [sys.executable, *argv], env=env, capture_output=True, text=True, check=False, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv[1:3]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return last_json(proc.stdout)


# ---- triggers, rebuilt as the triggerer rebuilds them ----------------------------------------------


def operator_poll_interval() -> float:
    """What a user who leaves ``poll_interval`` alone gets: the operator's default."""
    import inspect

    from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

    return float(inspect.signature(SkyvernRunTaskOperator.__init__).parameters["poll_interval"].default)


def make_trigger(kind: str, run_id: str, deadline: float) -> Any:
    """The trigger for ``kind``, serialized and rebuilt through Airflow's serde and JSON, as stored."""
    from airflow.sdk.serde import deserialize, serialize

    if kind == "ours":
        from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger

        original: Any = SkyvernRunTrigger(
            run_id=run_id, deadline=deadline, poll_interval=operator_poll_interval()
        )
    else:
        from _baseline_triggers import PlainPollTrigger

        original = PlainPollTrigger(run_id=run_id, poll_interval=POLL)
    classpath, kwargs = original.serialize()
    stored = json.loads(json.dumps(serialize(kwargs)))
    module, _, name = classpath.rpartition(".")
    rebuilt: dict[str, Any] = deserialize(stored)  # type: ignore[assignment]
    return getattr(importlib.import_module(module), name)(**rebuilt)


async def first_event(trigger: Any) -> tuple[float, Any]:
    async for event in trigger.run():
        return time.time(), event.payload
    raise RuntimeError("the trigger ended without an event")


# ---- 1. latency, real time ------------------------------------------------------------------------------


async def latency_trials(base_url: str, durations: list[float], trials: int) -> dict[str, Any]:
    import httpx

    for kind in KINDS:  # imports (Airflow, serde, the provider) before any run exists, not during a trial
        make_trigger(kind, "tsk_v2_warm_up", time.time() + 60)
    async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": API_KEY}, timeout=60) as client:

        async def create(seconds: float) -> str:
            body = {
                "prompt": f"Find the cheapest product; extract name and price [emulator seconds={seconds:g}]",
                "url": "https://webscraper.io/test-sites/e-commerce/allinone",
                "engine": "skyvern-2.0",
            }
            response = await client.post("/v1/run/tasks", json=body)
            response.raise_for_status()
            run_id: str = response.json()["run_id"]
            return run_id

        async def trial(seconds: float, delay: float) -> list[dict[str, Any]]:
            run_ids = dict(zip(KINDS, await asyncio.gather(*(create(seconds) for _ in KINDS)), strict=True))
            await asyncio.sleep(delay)
            deadline = time.time() + seconds + 600
            noticed = await asyncio.gather(
                *(first_event(make_trigger(kind, run_id, deadline)) for kind, run_id in run_ids.items())
            )
            rows = []
            for (kind, run_id), (at, payload) in zip(run_ids.items(), noticed, strict=True):
                run = (await client.get(f"/v1/runs/{run_id}")).json()  # one more GET, not the trigger's
                rows.append(
                    {
                        "kind": kind,
                        "seconds": seconds,
                        "delay": delay,
                        "run_id": run_id,
                        "latency": at - parse_naive_utc(run["finished_at"]),
                        "event": payload,
                    }
                )
            return rows

        plan = [(d, i * min(d, POLL) / trials) for d in durations for i in range(trials)]
        results = await asyncio.gather(*(trial(seconds, delay) for seconds, delay in plan))
    return {"rows": [row for rows in results for row in rows]}


def print_latency(latency: dict[str, Any], requests: Any, args: argparse.Namespace) -> None:
    rows = latency["rows"]
    gets: dict[str, int] = {}
    for entry in requests["requests"]:
        path = entry.get("path", "")
        if entry.get("method") == "GET" and path.startswith("/v1/runs/"):
            run_id = path.rsplit("/", 1)[1]
            gets[run_id] = gets.get(run_id, 0) + 1
    print(
        f"\n1. Completion latency (real time): event time - the run's finished_at; {args.trials} trials per "
        f"duration, start delays spread over one {POLL:g} s poll; GETs per run exclude the one read after the "
        "event\n"
    )
    out = []
    for seconds in sorted({row["seconds"] for row in rows}):
        by_kind: dict[str, list[dict[str, Any]]] = {
            kind: [r for r in rows if r["kind"] == kind and r["seconds"] == seconds] for kind in KINDS
        }
        worst = {kind: max(r["latency"] for r in by_kind[kind]) for kind in KINDS}
        med = {kind: statistics.median(r["latency"] for r in by_kind[kind]) for kind in KINDS}
        polls = {
            kind: statistics.median(gets.get(r["run_id"], 0) - 1 for r in by_kind[kind]) for kind in KINDS
        }
        goal = "<= 1 s" if seconds <= 5 else "<= 6 s" if seconds <= 60 else ""
        out.append(
            [
                f"{seconds:g} s run, worst latency s",
                *(f"{worst[k]:.2f}" for k in KINDS),
                ratio(worst["ours"], worst["fixed"]),
                goal,
            ]
        )
        out.append(
            [
                f"{seconds:g} s run, median latency s",
                *(f"{med[k]:.2f}" for k in KINDS),
                ratio(med["ours"], med["fixed"]),
                "",
            ]
        )
        out.append(
            [
                f"{seconds:g} s run, GETs per run (median)",
                *(f"{polls[k]:g}" for k in KINDS),
                ratio(polls["ours"], polls["fixed"]),
                "",
            ]
        )
    print(table(["figure", *KINDS.values(), "a/b", "goal"], out))
    odd = [r for r in rows if r["event"].get("kind", "terminal") != "terminal" and r["kind"] == "ours"]
    if odd:
        print(f"\nnote: {len(odd)} trigger events were not terminal, e.g. {odd[0]['event']}")
    print("\nper trial (start delay s: latency s, ours / fixed):")
    for seconds in sorted({row["seconds"] for row in rows}):
        pairs = []
        for delay in sorted({r["delay"] for r in rows if r["seconds"] == seconds}):
            got = {r["kind"]: r["latency"] for r in rows if r["seconds"] == seconds and r["delay"] == delay}
            pairs.append(f"{delay:.1f}: {got['ours']:.2f} / {got['fixed']:.2f}")
        print(f"  {seconds:g} s run: " + "; ".join(pairs))


# ---- 2. a long run, simulated time ----------------------------------------------------------------------


class SimulatedClock:
    """Moves time.time/datetime (time-machine), time.monotonic and perf_counter together, by the loop's jumps."""

    def __init__(self) -> None:
        from datetime import datetime, timezone

        import time_machine

        self.offset = 0.0
        self._traveller = time_machine.travel(datetime.now(timezone.utc), tick=True).start()
        self.real_perf_counter = time.perf_counter
        real_monotonic, real_monotonic_ns = time.monotonic, time.monotonic_ns
        time.monotonic = lambda: real_monotonic() + self.offset
        time.monotonic_ns = lambda: real_monotonic_ns() + int(self.offset * 1e9)
        time.perf_counter = lambda: self.real_perf_counter() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds
        self._traveller.shift(seconds)


class JumpingSelector(selectors.DefaultSelector):
    """Waits for sockets for up to REAL_WAIT real seconds; if none is ready, jumps the clock instead."""

    def __init__(self, clock: SimulatedClock) -> None:
        super().__init__()
        self.clock = clock
        self.jumps = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= REAL_WAIT:
            return list(super().select(timeout))
        ready = list(super().select(REAL_WAIT))
        if not ready:
            self.clock.jump(timeout - REAL_WAIT)
            self.jumps += 1
        return ready


def simulated(minutes: float) -> dict[str, Any]:
    clock = SimulatedClock()  # before anything reads the time
    selector = JumpingSelector(clock)
    loop = asyncio.SelectorEventLoop(selector)
    asyncio.set_event_loop(loop)
    real_start = clock.real_perf_counter()
    try:
        result = loop.run_until_complete(_simulated_run(minutes * 60.0))
    finally:
        loop.close()
    result.update(real_seconds=clock.real_perf_counter() - real_start, jumps=selector.jumps)
    return result


async def _simulated_run(seconds: float) -> dict[str, Any]:
    from _runserver import RunServer, serve

    server = RunServer(API_KEY, keep_poll_times=True)
    listener = await serve(server)
    os.environ["AIRFLOW_CONN_SKYVERN_DEFAULT"] = connection_json(server.base_url)
    run_ids = {kind: f"tsk_v2_simulated_{kind}" for kind in KINDS}
    for run_id in run_ids.values():
        server.create(run_id, seconds)
    created = time.time()
    deadline = created + seconds + 3600
    noticed = await asyncio.gather(
        *(first_event(make_trigger(kind, run_id, deadline)) for kind, run_id in run_ids.items())
    )
    listener.close()
    out: dict[str, Any] = {"seconds": seconds}
    for (kind, run_id), (at, payload) in zip(run_ids.items(), noticed, strict=True):
        plan = server.planned[run_id]
        polls = server.runs[run_id].poll_times
        gaps = [(b - a, a - plan.created) for a, b in itertools.pairwise(polls)]
        out[kind] = {
            "gets": len(polls),
            "noticed_after": at - (plan.created + plan.seconds),
            "max_gap": max((gap for gap, _ in gaps), default=0.0),
            "max_gap_share_100": max((gap / age for gap, age in gaps if age >= 100), default=0.0),
            "max_gap_share_600": max((gap / age for gap, age in gaps if age >= 600), default=0.0),
            "first_gaps": [round(gap, 2) for gap, _ in gaps[:8]],
            "event": payload,
        }
    return out


def print_simulated(result: dict[str, Any], args: argparse.Namespace) -> None:
    seconds = result["seconds"]
    fixed_analytic = int(seconds // POLL) + 1
    print(
        f"\n2. A {seconds / 60:g}-minute run in simulated time (measured, not computed: "
        f"{result['jumps']} clock jumps, {result['real_seconds']:.0f} s real); a fixed {POLL:g} s poll "
        f"needs {fixed_analytic} GETs by arithmetic\n"
    )
    ours, fixed = result["ours"], result["fixed"]
    rows = [
        [
            "GETs for the run",
            ours["gets"],
            fixed["gets"],
            ratio(ours["gets"], fixed["gets"]),
            f"< {fixed['gets']}",
        ],
        [
            "completion noticed after, s",
            f"{ours['noticed_after']:.2f}",
            f"{fixed['noticed_after']:.2f}",
            ratio(ours["noticed_after"], fixed["noticed_after"]),
            f"<= {seconds * 0.1:g} (10% of age)",
        ],
        [
            "longest gap between polls, s",
            f"{ours['max_gap']:.1f}",
            f"{fixed['max_gap']:.1f}",
            ratio(ours["max_gap"], fixed["max_gap"]),
            "",
        ],
        [
            "worst gap / run age, age >= 100 s",
            f"{ours['max_gap_share_100']:.3f}",
            f"{fixed['max_gap_share_100']:.3f}",
            "-",
            "<= 0.10",
        ],
        [
            "worst gap / run age, age >= 600 s",
            f"{ours['max_gap_share_600']:.3f}",
            f"{fixed['max_gap_share_600']:.3f}",
            "-",
            "<= 0.10",
        ],
    ]
    print(table(["figure", *KINDS.values(), "a/b", "goal"], rows))
    print(f"\nfirst gaps between polls, s: ours {ours['first_gaps']}; fixed {fixed['first_gaps']}")
    for kind in KINDS:
        if result[kind]["event"].get("kind", "terminal") != "terminal":
            print(f"note: {KINDS[kind]} ended with {result[kind]['event']}")


if __name__ == "__main__":
    sys.exit(main())
