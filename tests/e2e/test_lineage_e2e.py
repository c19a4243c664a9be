"""OpenLineage on the real ``airflow standalone`` (issue 21): the START and COMPLETE events the example DAGs'
Skyvern tasks emitted through the OpenLineage provider's file transport, read back from the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from airflow_harness import Stack, poll_until

from .scenario import EXTRACTION, LOGIN_DOWNLOAD, OPENLINEAGE_EVENTS, OPENLINEAGE_NAMESPACE, Observed

pytest.importorskip("airflow.providers.openlineage")
pytestmark = pytest.mark.e2e

PORTAL = ("https://portal.example.com", "/login")
PRODUCTS = ("https://webscraper.io", "/test-sites/e-commerce/allinone")


def _events(stack: Stack) -> list[dict[str, Any]]:
    path = stack.airflow.home.parent / OPENLINEAGE_EVENTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _task_events(stack: Stack, dag_task: tuple[str, str]) -> dict[str, dict[str, Any]]:
    """The task's last event of each type, once its COMPLETE is written (the listener emits asynchronously)."""
    job = ".".join(dag_task)

    def complete() -> dict[str, dict[str, Any]] | None:
        found = {
            event["eventType"]: event
            for event in _events(stack)
            if event["job"]["namespace"] == OPENLINEAGE_NAMESPACE and event["job"]["name"] == job
        }
        return found if "COMPLETE" in found else None

    found: dict[str, dict[str, Any]] = poll_until(complete, timeout=60, what=f"the COMPLETE event of {job}")
    return found


def _names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(each["namespace"], each["name"]) for each in datasets]


def abridged(event: dict[str, Any]) -> dict[str, Any]:
    """What docs/lineage.md shows of an event: ours, without the Airflow provider's own facets."""
    ours = ("externalQuery", "skyvern", "errorMessage")
    strip = lambda facets: {  # noqa: E731
        k: {f: v for f, v in facet.items() if not f.startswith("_")} for k, facet in facets.items()
    }
    return {
        "eventType": event["eventType"],
        "job": {"namespace": event["job"]["namespace"], "name": event["job"]["name"]},
        "run": {"facets": strip({k: v for k, v in event["run"]["facets"].items() if k in ours})},
        "inputs": [{"namespace": d["namespace"], "name": d["name"]} for d in event["inputs"]],
        "outputs": [
            {
                "namespace": d["namespace"],
                "name": d["name"],
                **({"facets": strip(d["facets"])} if d.get("facets") else {}),
                **({"outputFacets": strip(d["outputFacets"])} if d.get("outputFacets") else {}),
            }
            for d in event["outputs"]
        ],
    }


def _show(name: str, event: dict[str, Any]) -> None:
    """Printed (pytest -s) and, with SKYVERN_E2E_LINEAGE_DIR, kept: what the docs and reports quote."""
    text = json.dumps(abridged(event), indent=2)
    print(f"--- {name}\n{text}")
    keep = os.environ.get("SKYVERN_E2E_LINEAGE_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"{name}.json").write_text(text + "\n")


def test_the_login_and_download_emit_start_and_complete_with_the_portal_and_the_copied_files(
    stack: Stack, observed: Observed
) -> None:
    dag_id, task_id = LOGIN_DOWNLOAD
    run_id = observed.run_id(LOGIN_DOWNLOAD)
    login = _task_events(stack, (dag_id, "log_in"))
    download = _task_events(stack, LOGIN_DOWNLOAD)
    manifest = stack.airflow.xcom(dag_id, run_id, task_id, "artifacts")
    skyvern_run_id = stack.airflow.xcom(dag_id, run_id, task_id, "run_id")
    _show("skyvern_login_download.download_invoices.COMPLETE", download["COMPLETE"])

    assert _names(login["START"]["inputs"]) == _names(login["COMPLETE"]["inputs"]) == [PORTAL]
    assert "START" in download
    complete = download["COMPLETE"]
    facets = complete["run"]["facets"]
    assert facets["externalQuery"]["externalQueryId"] == skyvern_run_id
    assert facets["externalQuery"]["source"] == stack.skyvern.base_url
    assert (facets["skyvern"]["runId"], facets["skyvern"]["status"]) == (skyvern_run_id, "completed")
    assert facets["skyvern"]["steps"] >= 1
    files = {("file", entry["uri"].removeprefix("file://")): entry["size"] for entry in manifest["files"]}
    copied = {
        (d["namespace"], d["name"]): d["outputFacets"]["outputStatistics"]
        for d in complete["outputs"]
        if d["namespace"] == "file"
    }
    assert set(copied) == set(files)
    assert all(copied[key]["size"] == size and copied[key]["fileCount"] == 1 for key, size in files.items())
    text = json.dumps([login, download])
    assert "sig=" not in text
    assert "expires=" not in text


def test_the_extraction_emits_its_page_and_its_output_with_the_schema(
    stack: Stack, observed: Observed
) -> None:
    dag_id, task_id = EXTRACTION
    events = _task_events(stack, EXTRACTION)
    skyvern_run_id = stack.airflow.xcom(dag_id, observed.run_id(EXTRACTION), task_id, "run_id")
    _show("skyvern_scheduled_extraction.extract_products.COMPLETE", events["COMPLETE"])

    assert _names(events["START"]["inputs"]) == [PRODUCTS]
    complete = events["COMPLETE"]
    assert _names(complete["inputs"]) == [PRODUCTS]
    (output,) = complete["outputs"]
    assert (output["namespace"], output["name"]) == (stack.skyvern.base_url, f"/v1/runs/{skyvern_run_id}")
    fields = [field["name"] for field in output["facets"]["schema"]["fields"]]
    assert fields == ["name", "price", "rating"]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] >= 1
