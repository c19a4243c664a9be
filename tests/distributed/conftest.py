"""One emulator + one production-shaped cluster (scripts/cluster.py) for the whole distributed session.

The cluster is stopped at session end whatever happened; a failing test prints the tail of every
component's log. Each scenario adds one result line (``distributed: ...``), printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from airflow_harness import EMULATOR_API_KEY, AirflowApi, Emulator, Skyvern  # noqa: E402
from cluster import AIRFLOW_COMPONENTS, Cluster  # noqa: E402

RESULTS: list[str] = []


@dataclass
class Dist:
    """The running cluster, its REST client and the emulator it talks to."""

    cluster: Cluster
    api: AirflowApi
    emulator: Emulator
    bring_up: float
    notes: list[str] = field(default_factory=list)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("distributed results")
        for line in RESULTS:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def dist() -> Iterator[Dist]:
    # Under /tmp, not pytest's 0700 tmp dirs: the postgres user must enter the cluster's directory.
    root = Path(tempfile.mkdtemp(prefix="skyvern-distributed-"))
    root.chmod(0o711)
    emulator = Emulator(root, EMULATOR_API_KEY, run_seconds=20)
    emulator.start()
    skyvern = Skyvern(emulator.base_url, EMULATOR_API_KEY, emulated=True)
    cluster = Cluster(
        root / "cluster",
        REPO / "tests" / "distributed" / "dags",
        {"AIRFLOW_CONN_SKYVERN_DEFAULT": skyvern.connection_json()},
    )
    failed = True
    try:
        bring_up = cluster.up(say=lambda line: print(line, file=sys.stderr))
        assert cluster.api is not None
        RESULTS.append(f"distributed: cluster up in {bring_up:.1f}s")
        yield Dist(cluster, cluster.api, emulator, bring_up)
        failed = False
    finally:
        down = cluster.down(say=lambda line: print(line, file=sys.stderr))
        RESULTS.append(f"distributed: cluster down in {down:.1f}s")
        emulator.stop()
        if not failed and not os.environ.get("SKYVERN_DISTRIBUTED_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            RESULTS.append(f"distributed: logs kept in {root}")


@pytest.fixture(autouse=True)
def _log_tails_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failing scenario prints what every component said last: why it failed is usually there."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed or "dist" not in request.fixturenames:
        return
    cluster: Cluster = request.getfixturevalue("dist").cluster
    for name in AIRFLOW_COMPONENTS:
        print(f"\n---- {name}: {cluster.log_path(name)} (last 30 lines)\n{cluster.log_tail(name, 30)}")
