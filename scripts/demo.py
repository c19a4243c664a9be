"""The demo (``bash scripts/demo.sh``): one deferred Skyvern extraction on a real Airflow, results printed.

Starts the bundled Skyvern emulator (or uses Skyvern at ``SKYVERN_BASE_URL`` when ``SKYVERN_API_KEY`` is
set) and ``airflow standalone`` on free ports (or ``DEMO_EMULATOR_PORT`` / ``DEMO_AIRFLOW_PORT``),
triggers ``skyvern_scheduled_extraction`` over the REST API, prints task state changes while it waits,
then the extracted output and artifact URLs read back from XCom over REST. Everything it started is
stopped on every way out; exit status 0 only when the DAG run succeeded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from airflow_harness import Airflow, HarnessError, Skyvern, skyvern_stack

REPO = Path(__file__).resolve().parent.parent
WORKDIR = REPO / ".demo"
DAG_ID = "skyvern_scheduled_extraction"
EXTRACT_TASK = "extract_products"
SAVE_TASK = "save_products"
EMULATOR_RUN_SECONDS = 10.0
ARTIFACT_KEYS = (
    "run_id",
    "status",
    "step_count",
    "app_url",
    "recording_url",
    "screenshot_urls",
    "downloaded_files",
)


class Clock:
    """Elapsed seconds since the demo started, for the progress lines."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:5.1f}s"


CLOCK = Clock()


def say(message: str) -> None:
    print(f"[{CLOCK}] {message}", flush=True)


def remote_skyvern() -> Skyvern | None:
    """Skyvern Cloud or a self-hosted Skyvern when a key is given; else None (the emulator)."""
    key = os.environ.get("SKYVERN_API_KEY")
    if not key:
        return None
    return Skyvern(os.environ.get("SKYVERN_BASE_URL", "https://api.skyvern.com"), key, emulated=False)


def run_demo(remote: Skyvern | None) -> None:
    """Raises HarnessError when a step fails or the DAG run does not succeed."""
    extra_env = {
        "SKYVERN_EXAMPLE_POLL_INTERVAL": "5" if remote else "2",
        "SKYVERN_EXAMPLE_OUTPUT_DIR": str(WORKDIR / "output"),
    }
    with skyvern_stack(
        WORKDIR,
        REPO / "example_dags",
        extra_env,
        remote=remote,
        run_seconds=EMULATOR_RUN_SECONDS,
        ports=(_port("DEMO_EMULATOR_PORT"), _port("DEMO_AIRFLOW_PORT")),
        on_step=say,
    ) as stack:
        airflow = stack.airflow
        airflow.wait_for_dag(DAG_ID)
        run_id = airflow.trigger(DAG_ID, f"demo__{time.strftime('%Y%m%dT%H%M%S')}")
        say(f"triggered {DAG_ID}, run {run_id}; task states:")
        state = airflow.watch_run(
            DAG_ID, run_id, lambda task, ti_state: say(f"  {task}: {ti_state or 'no state yet'}")
        )
        say(f"DAG run {state}")
        errors = print_task_states(airflow, run_id)
        if state != "success":
            first = errors[0] if errors else f"see the task logs under {airflow.home / 'logs'}"
            raise HarnessError(f"DAG run {run_id} {state}: {first}")
        print_results(airflow, run_id)


def _port(variable: str) -> int | None:
    value = os.environ.get(variable)
    if value and not value.isdigit():
        raise HarnessError(f"{variable}={value!r} is not a port number")
    return int(value) if value else None


def print_task_states(airflow: Airflow, run_id: str) -> list[str]:
    """Prints each task's final state, and why a failed one failed; returns those reasons."""
    print("\nTask states:")
    reasons = []
    for task, state in airflow.task_states(DAG_ID, run_id).items():
        print(f"  {task:18} {state}")
        if state == "failed":
            errors = [f"{task}: {error}" for error in airflow.task_errors(DAG_ID, run_id, task)]
            print("".join(f"  {'':18} {error}\n" for error in errors), end="")
            reasons += errors
    return reasons


def print_results(airflow: Airflow, run_id: str) -> None:
    """The extracted rows and the run's artifact URLs, as read back from XCom over the REST API."""
    output = airflow.xcom(DAG_ID, run_id, EXTRACT_TASK)
    print(f"\nExtracted output (XCom return_value of {EXTRACT_TASK}):")
    print("\n".join(f"  {line}" for line in json.dumps(output, indent=2).splitlines()))
    print("\nSkyvern run and artifacts (XCom):")
    for key in ARTIFACT_KEYS:
        print(f"  {key:16} {json.dumps(airflow.xcom(DAG_ID, run_id, EXTRACT_TASK, key))}")
    rows = airflow.xcom(DAG_ID, run_id, SAVE_TASK)
    print(f"\n{SAVE_TASK} returned {rows} (rows written under {WORKDIR / 'output'})\n")


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through the context managers, which stop everything


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started as a background job
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    try:
        run_demo(remote_skyvern())
    except HarnessError as exc:
        print(f"demo: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    say("demo: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
