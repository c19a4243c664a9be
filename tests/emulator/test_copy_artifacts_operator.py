"""SkyvernCopyArtifactsOperator on the emulator: returns the manifest, refuses unfinished runs, starts none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import TaskRunRequest
from airflow_provider_skyvern.operators.artifacts import SkyvernCopyArtifactsOperator
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS
from tests.emulator.conftest import RUN_SECONDS, FakeClock
from tests.operator_support import make_context


def _runs(emulator: EmulatorServer) -> int:
    return len(emulator.control.get("/_emulator/runs").json()["runs"])


def test_the_operator_copies_an_ended_run_and_returns_its_manifest(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer, tmp_path: Path
) -> None:
    run = hook.run_task(TaskRunRequest(prompt="Download the invoice", url="https://example.com"))
    clock.advance(RUN_SECONDS)
    operator = SkyvernCopyArtifactsOperator(
        task_id="keep_files", run_id=run.run_id, destination=f"file://{tmp_path}/exports"
    )

    manifest = operator.execute(make_context())

    assert manifest["run_id"] == run.run_id
    assert manifest["complete"] is True
    assert manifest["uri"] == f"file://{tmp_path}/exports/{run.run_id}/manifest.json"
    kinds = sorted(f["kind"] for f in manifest["files"])
    assert kinds == ["download", "recording", "screenshot", "screenshot"]
    for entry in manifest["files"]:
        assert Path(entry["uri"].removeprefix("file://")).stat().st_size == entry["size"]
    assert json.loads(json.dumps(manifest)) == manifest  # XCom-ready
    assert emulator.api_key not in json.dumps(manifest)
    assert "sig=" not in json.dumps(manifest)
    assert _runs(emulator) == 1  # it never starts a run


def test_an_unfinished_run_is_refused_in_one_line(
    hook: SkyvernHook, emulator: EmulatorServer, tmp_path: Path
) -> None:
    run = hook.run_task(TaskRunRequest(prompt="Download the invoice", url="https://example.com"))
    operator = SkyvernCopyArtifactsOperator(
        task_id="keep", run_id=run.run_id, destination=f"file://{tmp_path}"
    )

    with pytest.raises(
        AirflowFailException, match=rf"^Skyvern run {run.run_id} is (queued|created), not finished"
    ):
        operator.execute(make_context())
    assert not any(tmp_path.iterdir())


def test_run_id_and_destination_are_templated_and_documented() -> None:
    assert set(SkyvernCopyArtifactsOperator.template_fields) == {"run_id", "destination"}
    doc = SkyvernCopyArtifactsOperator.__doc__ or ""
    for name in ("run_id", "destination", "skyvern_conn_id", "storage_conn_id", "artifact_types"):
        assert f":param {name}:" in doc
    with pytest.raises(ValueError, match="artifact_types must be a list"):
        SkyvernCopyArtifactsOperator(
            task_id="t", run_id="wr_1", destination="file:///x", artifact_types="har"
        )


def test_a_dag_file_with_the_operator_imports_neither_the_hook_nor_the_copy_code() -> None:
    code = (
        "import json, sys\n"
        "from airflow.sdk import DAG, BaseOperator\n"
        "before = set(sys.modules)\n"
        "from airflow_provider_skyvern.operators.artifacts import SkyvernCopyArtifactsOperator\n"
        "SkyvernCopyArtifactsOperator(task_id='c', run_id='wr_1', destination='s3://b/p')\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ)
    )
    modules = set(json.loads(result.stdout.strip().splitlines()[-1]))
    if AIRFLOW_V_3_1_PLUS:  # Airflow 3.0's own operator machinery imports httpx (its API client)
        assert "httpx" not in modules
    for heavy in (
        "airflow_provider_skyvern.hooks.skyvern",
        "airflow_provider_skyvern.models",
        "airflow_provider_skyvern.artifacts",
    ):
        assert heavy not in modules, heavy
