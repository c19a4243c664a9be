"""``python -m airflow_provider_skyvern.emulator``: the emulator on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import socket
import sys

import uvicorn

from airflow_provider_skyvern.emulator.app import create_app
from airflow_provider_skyvern.emulator.faults import FaultRule
from airflow_provider_skyvern.emulator.server import LOOPBACK, connection_json
from airflow_provider_skyvern.emulator.state import KNOWN_WORKFLOWS, EmulatorSettings

DEFAULT_PORT = 8731
"""Not 8000 (self-hosted Skyvern's API) nor 8765 (the real-Skyvern stack's test site): all run side by side."""


def _status_rate(text: str) -> FaultRule:
    status, sep, rate = text.partition("=")
    if not sep or not status.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected STATUS=RATE, e.g. 503=0.1")
    return FaultRule(status=int(status), rate=float(rate))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_skyvern.emulator",
        description="A Skyvern-compatible API on 127.0.0.1 for offline DAG tests (no browser runs).",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 = any free)",
    )
    parser.add_argument(
        "--api-key", default="emulator-key", help="the x-api-key it accepts (default emulator-key)"
    )
    parser.add_argument("--run-seconds", type=float, default=10.0, help="how long a run takes (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault dice")
    parser.add_argument(
        "--max-concurrent-runs",
        type=int,
        default=None,
        metavar="N",
        help="Skyvern Cloud's plan limit (Free 1, Hobby 10, Pro 25): runs beyond N wait queued (default: none)",
    )
    parser.add_argument(
        "--workflow",
        action="append",
        default=[],
        metavar="WPID",
        help=f"a workflow id (wpid_...) to know besides {', '.join(KNOWN_WORKFLOWS)} (repeatable); others are 404",
    )
    parser.add_argument(
        "--error-rate",
        type=_status_rate,
        action="append",
        default=[],
        metavar="STATUS=RATE",
        help="answer this share of /v1 requests with STATUS (repeatable), e.g. --error-rate 503=0.1",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every /v1 request")
    parser.add_argument(
        "--reset-rate", type=float, default=0.0, help="share of /v1 requests whose connection drops"
    )
    parser.add_argument(
        "--fail-after-create",
        type=int,
        default=0,
        metavar="N",
        help="the next N run creations create the run, then answer HTTP 500",
    )
    return parser.parse_args(argv)


def fault_rules(args: argparse.Namespace) -> list[FaultRule]:
    rules: list[FaultRule] = list(args.error_rate)
    if args.latency:
        rules.append(FaultRule(latency=args.latency))
    if args.reset_rate:
        rules.append(FaultRule(reset=True, rate=args.reset_rate))
    if args.fail_after_create:
        rules.append(
            FaultRule(
                method="POST", path="/v1/run/*", status=500, after_create=True, times=args.fail_after_create
            )
        )
    return rules


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = EmulatorSettings(
        api_key=args.api_key,
        run_seconds=args.run_seconds,
        seed=args.seed,
        max_concurrent_runs=args.max_concurrent_runs,
        workflows=(*KNOWN_WORKFLOWS, *args.workflow),
    )
    app, state = create_app(settings)
    state.faults.add(fault_rules(args))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, args.port))
        sock.listen(2048)  # connections queue from now on, even before uvicorn accepts them
    except OSError as exc:
        print(f"Skyvern emulator: cannot listen on {LOOPBACK}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, date_header=False)
    )
    # Bound before these lines are printed, so whoever waits for them can connect at once. The first line
    # holds no key (logs keep it); the second is the emulator's own key, given on this command line.
    base_url = f"http://{LOOPBACK}:{port}"
    print(
        f"Skyvern emulator listening on {base_url} (runs take {args.run_seconds:g}s)\n"
        "Point Airflow at it (in the shell that runs your DAG; Ctrl-C here stops it):\n"
        f"export AIRFLOW_CONN_SKYVERN_DEFAULT={shlex.quote(connection_json(base_url, args.api_key))}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled by shutting down
        server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
