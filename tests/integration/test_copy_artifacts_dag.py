"""SkyvernCopyArtifactsOperator in a real ``dag.test()``: templated run id and destination, manifest as XCom."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
]

DAG_FILE = Path(__file__).parent / "dags" / "skyvern_copy_artifacts.py"
DAG_ID = "skyvern_copy_artifacts"


def test_the_copy_task_returns_the_manifest_of_the_upstream_run(
    airflow_db: None, dags_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    shutil.copy(DAG_FILE, dags_folder / DAG_FILE.name)
    monkeypatch.setenv("SKYVERN_TEST_ARTIFACTS_URI", f"file://{tmp_path}")
    bag = DagBag(dag_folder=dags_folder / DAG_FILE.name)
    assert not bag.import_errors, bag.import_errors

    with EmulatorServer(EmulatorSettings(run_seconds=1.0)) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_SKYVERN_DEFAULT", emulator.connection_json())
        dag_run = bag.dags[DAG_ID].test()
        runs = emulator.control.get("/_emulator/runs").json()["runs"]
        monkeypatch.delenv("AIRFLOW_CONN_SKYVERN_DEFAULT")

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == DAG_ID,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == "keep_files",
                XComModel.key == "return_value",
            )
        )
        (manifest,) = [XComModel.deserialize_value(row) for row in rows]

    assert states == {"download": "success", "keep_files": "success"}
    (run,) = runs  # the copy task started no run of its own
    folder = tmp_path / DAG_ID / run["run_id"]
    assert manifest["run_id"] == run["run_id"]
    assert manifest["uri"] == f"file://{folder}/manifest.json"
    downloads: list[dict[str, Any]] = [f for f in manifest["files"] if f["kind"] == "download"]
    assert [Path(f["uri"]).name for f in downloads] == ["passwd", "passwd-2"]
    for entry in downloads:
        path = Path(entry["uri"].removeprefix("file://"))
        assert path.parent == folder / "downloads"
        assert entry["verified"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert {f["kind"] for f in manifest["files"]} == {"download", "recording", "screenshot"}
