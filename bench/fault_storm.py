"""Fault storm: N task instances per run kind against the emulator under faults, through Airflow's retries.

Each task instance runs as Airflow would run it (tests/simulator/airflow_model.py: tries, deferral to the
trigger, resumption on a fresh operator, retries while ``try_number <= max_tries``, the Airflow 3.3 task state
store), with ``retries=3`` and a 60 s ``retry_delay`` (the emulator's clock moves on by it; nothing sleeps).
Task instances come in pairs with the same request, as two DAGs (or a backfill, or mapped siblings) asking
the same thing do. The emulator's faults: GETs answer 500 (15 %), 429 with Retry-After (5 %) or drop the
connection (5 %); run-creating POSTs create the run and then lose the answer (15 %: the ambiguous case) or
answer 503 "no run was created" (5 %).

Per run kind it prints: correct % (the task succeeded handing on a run no other task instance handed on, or
failed saying it could not tell whether a run was created), duplicates (runs beyond one per task instance,
per pair, that did not end badly), runs nobody used (completed or going, handed on by no task: paid for
nothing), shared (pairs that handed on the same run: one adopted the other's), requests per task instance,
wall time.

``--package PATH`` measures the provider of another checkout (e.g. the code before a change) with this
script and the simulator of this one: the same storm, before and after.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

FAULTS = [
    {"method": "GET", "path": "/v1/runs/*", "status": 500, "rate": 0.15},
    {"method": "GET", "path": "/v1/runs/*", "status": 429, "retry_after": 1, "rate": 0.05},
    {"method": "GET", "path": "/v1/runs/*", "reset": True, "rate": 0.05},
    {"method": "POST", "path": "/v1/run/*", "reset": True, "after_create": True, "rate": 0.15},
    {"method": "POST", "path": "/v1/run/*", "status": 503, "rate": 0.05},
]
RETRY_DELAY = 60.0
BAD_ENDS = {"failed", "terminated", "canceled", "timed_out"}


def _load_provider(package: Path | None) -> None:
    """Import the provider from ``package`` (another checkout) before anything else imports it."""
    if package is not None:
        sys.path.insert(0, str(package))
        importlib.import_module("airflow_provider_skyvern")
        sys.path.pop(0)
    sys.path.insert(0, str(REPO))


def _kinds() -> dict[str, Any]:
    from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
    from airflow_provider_skyvern.operators.skyvern import SkyvernRunTaskOperator
    from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator

    def task(engine: str) -> Any:
        return lambda pair, **kw: SkyvernRunTaskOperator(
            task_id="extract",
            prompt=f"Extract the top 3 products, list {pair}",
            url="https://shop.test/",
            engine=engine,
            **kw,
        )

    return {
        "task skyvern-2.0": task("skyvern_v2"),
        "task skyvern-1.0": task("skyvern_v1"),
        "workflow": lambda pair, **kw: SkyvernRunWorkflowOperator(
            task_id="report", workflow_id="wpid_42", parameters={"report_date": _date(pair)}, **kw
        ),
        "login": lambda pair, **kw: SkyvernLoginOperator(
            task_id="log_in",
            url=f"https://shop.test/login?list={pair}",
            credential_type="skyvern",
            credential_id="cred_123",
            **kw,
        ),
    }


def _date(pair: int) -> str:
    return f"{2026 + pair // 28}-12-{pair % 28 + 1:02d}"


def _pair_of(run: dict[str, Any]) -> str:
    """Which pair of task instances asked for ``run``: the request they share."""
    request = run["request"]
    return repr((request.get("prompt"), request.get("url"), request.get("parameters")))


def storm(kind: str, make: Any, count: int, emulator: Any, clock: Any) -> dict[str, Any]:
    from tests.simulator.airflow_model import Boundaries, TaskInstanceModel

    emulator.control.post("/_emulator/reset").raise_for_status()
    emulator.control.post("/_emulator/faults", json=FAULTS).raise_for_status()
    outcomes = []
    started = time.monotonic()
    for index in range(count):
        pair = index // 2

        def operator(pair: int = pair) -> Any:
            return make(pair, deferrable=True, poll_interval=30, retries=3)

        model = TaskInstanceModel(operator, Boundaries(), retries=3)
        model.dag_id = f"dag_{index % 2}"  # the pair: two DAGs asking the same
        model.on_retry = lambda: clock.advance(RETRY_DELAY)
        outcomes.append(model.run())
    wall = time.monotonic() - started
    emulator.control.delete("/_emulator/faults").raise_for_status()
    runs = emulator.control.get("/_emulator/runs").json()["runs"]
    requests = emulator.control.get("/_emulator/requests").json()["requests"]
    for run in runs:
        run["output"] = (
            emulator.control.get(f"/v1/runs/{run['run_id']}", headers={"x-api-key": emulator.api_key})
            .json()
            .get("output")
        )
    return _score(kind, outcomes, runs, len([r for r in requests if r["path"].startswith("/v1/")]), wall)


def _score(
    kind: str, outcomes: list[Any], runs: list[dict[str, Any]], requests: int, wall: float
) -> dict[str, Any]:
    """Per pair of task instances (same request): each should hand on its own run, and no run may be left
    going that nobody waits for or was told about."""
    handed = [o.run_id for o in outcomes]
    told = [o.state == "failed" and any("could not tell" in e.lower() for e in o.errors) for o in outcomes]
    shared = sum(
        1 for i in range(0, len(handed) - 1, 2) if handed[i] is not None and handed[i] == handed[i + 1]
    )
    live = [r for r in runs if r["status"] not in BAD_ENDS and not r["cancel_requests"]]
    by_pair: dict[str, int] = {}
    for run in live:
        by_pair[_pair_of(run)] = by_pair.get(_pair_of(run), 0) + 1
    duplicates = sum(max(0, n - 2) for n in by_pair.values())
    unused = [r for r in live if r["run_id"] not in handed]
    mine = [h is not None and handed.count(h) == 1 for h in handed]
    return {
        "kind": kind,
        "task instances": len(outcomes),
        "correct %": round(
            100.0 * sum(1 for ok, t in zip(mine, told, strict=True) if ok or t) / len(outcomes), 1
        ),
        "succeeded": sum(1 for o in outcomes if o.state == "success"),
        "could not tell": sum(told),
        "runs": len(runs),
        "duplicates": duplicates,
        "runs nobody used": len(unused),
        "shared": shared,
        "requests per task": round(requests / len(outcomes), 1),
        "wall s": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=60, help="task instances per run kind (default 60)")
    parser.add_argument("--quick", action="store_true", help="20 task instances per run kind")
    parser.add_argument("--package", type=Path, help="the checkout whose provider to measure")
    args = parser.parse_args()
    _load_provider(args.package)
    import os
    import tempfile

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="skyvern_bench_home_"))
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"
    from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings
    from airflow_provider_skyvern.hooks.clock import Clock

    class Emulated:
        def __init__(self) -> None:
            self.now = time.time()

        def __call__(self) -> float:
            return self.now

        def advance(self, seconds: float) -> None:
            self.now += max(seconds, 0.0)

    clock = Emulated()

    def sleep(_: Any, seconds: float) -> None:
        clock.advance(seconds)

    async def asleep(_: Any, seconds: float) -> None:
        clock.advance(seconds)

    Clock.sleep, Clock.asleep = sleep, asleep  # type: ignore[method-assign,assignment]
    count = 20 if args.quick else args.count
    import airflow_provider_skyvern

    print(f"provider: {Path(airflow_provider_skyvern.__file__).parent.parent}")
    rows = []
    with EmulatorServer(
        EmulatorSettings(api_key="bench-key-0123456789", run_seconds=120.0, clock=clock)
    ) as emulator:
        os.environ["AIRFLOW_CONN_SKYVERN_DEFAULT"] = (
            f'{{"conn_type": "skyvern", "host": "{emulator.base_url}", "password": "{emulator.api_key}", '
            '"extra": {"max_retries": 3, "request_timeout": 10}}'
        )
        for kind, make in _kinds().items():
            rows.append(storm(kind, make, count, emulator, clock))
            print(rows[-1], flush=True)
    columns = list(rows[0])
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
