"""OpenLineage from every run operator and the copy operator: the datasets and facets of START, COMPLETE and
FAIL, through the public methods the OpenLineage provider calls after the task ran against mocked Skyvern."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import respx

pytest.importorskip("airflow.providers.openlineage")

from openlineage.client.serde import Serde

from airflow_provider_skyvern.operators.artifacts import SkyvernCopyArtifactsOperator
from airflow_provider_skyvern.operators.base import SkyvernRunFailedError
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator
from airflow_provider_skyvern.runs.events import RunEvent
from airflow_provider_skyvern.runs.lineage_facets import dataset_id
from tests.conftest import BASE_URL, FastClock
from tests.operator_support import make_context
from tests.payloads import task_run, workflow_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")

SECRET_URL = "https://ops:hunter2@shop.example.com:8443/products?session=SECRETTOKEN#top"
SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "product name"},
            "price": {"type": ["number", "null"]},
            "seller": {"type": "object", "properties": {"id": {"type": "integer"}}},
        },
    },
}
OUTPUT = [{"name": "Widget", "price": 2.5, "seller": {"id": 1}}, {"name": "Gadget", "price": None}]
SIGNED = "https://files.s3.test/bucket/inv?X-Amz-Signature=deadbeefSIGNATURE"
INVOICE = b"%PDF-1.7 invoice"


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    FastClock(monkeypatch)


def ended(op: Any, skyvern: respx.MockRouter, body: dict[str, Any]) -> Any:
    """Completes ``op`` on the run ``body`` as the trigger's event would; the exception it raised, if any."""
    skyvern.get(f"/v1/runs/{body['run_id']}").respond(200, json=body)
    event = RunEvent("terminal", body["run_id"], body["status"]).to_payload()
    try:
        op.execute_complete(make_context(), event, run_id=body["run_id"], app_url=body.get("app_url"))
    except Exception as exc:
        return exc
    return None


def as_json(lineage: Any) -> dict[str, Any]:
    """The lineage as the OpenLineage client serializes it into the event."""
    return {
        "inputs": [json.loads(Serde.to_json(each)) for each in lineage.inputs],
        "outputs": [json.loads(Serde.to_json(each)) for each in lineage.outputs],
        "run": {key: json.loads(Serde.to_json(facet)) for key, facet in lineage.run_facets.items()},
        "job": {key: json.loads(Serde.to_json(facet)) for key, facet in lineage.job_facets.items()},
    }


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(each["namespace"], each["name"]) for each in datasets]


def no_secrets(lineage: dict[str, Any]) -> None:
    text = json.dumps(lineage)
    for secret in ("hunter2", "SECRETTOKEN", "SIGNATURE", "sk-test", "totp", "?", "#top"):
        assert secret not in text, secret


def task(**kwargs: Any) -> SkyvernRunTaskOperator:
    kwargs.setdefault("prompt", "Extract the products")
    kwargs.setdefault("url", SECRET_URL)
    return SkyvernRunTaskOperator(task_id="extract", deferrable=True, **kwargs)


def test_task_start_names_the_starting_page_only_by_scheme_host_port_and_path() -> None:
    lineage = as_json(task(data_extraction_schema=SCHEMA).get_openlineage_facets_on_start())

    assert names(lineage["inputs"]) == [("https://shop.example.com:8443", "/products")]
    assert lineage["outputs"] == []
    assert lineage["run"] == {}
    assert lineage["job"] == {}  # the OpenLineage provider sets jobType (AIRFLOW, TASK) itself
    no_secrets(lineage)


def test_task_complete_has_the_run_its_output_with_the_schema_and_row_count(
    skyvern: respx.MockRouter,
) -> None:
    op = task(data_extraction_schema=SCHEMA, engine="skyvern-2.0")
    body = task_run("tsk_v2_1", "completed", output=OUTPUT, step_count=7, run_request={"url": SECRET_URL})
    assert ended(op, skyvern, body) is None

    lineage = as_json(op.get_openlineage_facets_on_complete(None))

    assert names(lineage["inputs"]) == [("https://shop.example.com:8443", "/products")]
    (output,) = lineage["outputs"]
    assert (output["namespace"], output["name"]) == (BASE_URL, "/v1/runs/tsk_v2_1")
    fields = output["facets"]["schema"]["fields"]
    assert [(f["name"], f.get("type"), f.get("description")) for f in fields] == [
        ("name", "string", "product name"),
        ("price", "number|null", None),
        ("seller", "object", None),
    ]
    assert fields[2]["fields"] == [{"name": "id", "type": "integer"}]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert lineage["run"]["externalQuery"]["externalQueryId"] == "tsk_v2_1"
    assert lineage["run"]["externalQuery"]["source"] == BASE_URL
    skyvern_facet = lineage["run"]["skyvern"]
    assert {k: v for k, v in skyvern_facet.items() if not k.startswith("_")} == {
        "runId": "tsk_v2_1",
        "runType": "task_v2",
        "engine": "skyvern-2.0",
        "status": "completed",
        "steps": 7,
        "appUrl": "https://app.skyvern.com/runs/tsk_v2_1",
    }
    assert "errorMessage" not in lineage["run"]
    no_secrets(lineage)


def test_task_failure_carries_skyverns_reason_on_one_line_and_no_output(skyvern: respx.MockRouter) -> None:
    op = task(data_extraction_schema=SCHEMA)
    body = task_run("tsk_v2_2", "failed", failure_reason="Login wall\nat step 3", step_count=3)
    error = ended(op, skyvern, body)
    assert isinstance(error, SkyvernRunFailedError)

    lineage = as_json(op.get_openlineage_facets_on_failure(None))

    assert lineage["outputs"] == []
    message = lineage["run"]["errorMessage"]["message"]
    assert (
        message == str(error) == "Skyvern run tsk_v2_2 ended failed: Login wall (full reason in the task log)"
    )
    assert lineage["run"]["errorMessage"]["programmingLanguage"] == "python"
    assert lineage["run"]["skyvern"]["status"] == "failed"
    no_secrets(lineage)


def test_a_wait_that_failed_before_the_run_ended_still_names_the_run(skyvern: respx.MockRouter) -> None:
    op = task(cancel_on_kill=False)
    event = RunEvent("error", "tsk_v2_3", message="Skyvern unreachable").to_payload()
    with pytest.raises(SkyvernRunFailedError):
        op.execute_complete(make_context(), event, run_id="tsk_v2_3")

    lineage = as_json(op.get_openlineage_facets_on_failure(None))

    assert lineage["run"]["externalQuery"]["externalQueryId"] == "tsk_v2_3"
    assert lineage["run"]["skyvern"]["runId"] == "tsk_v2_3"
    assert "status" not in lineage["run"]["skyvern"]  # not known: the run was not read final
    assert "errorMessage" not in lineage["run"]  # the OpenLineage provider adds the task's own error


def test_workflow_inputs_are_its_url_parameters_and_the_facet_says_how_it_ran(
    skyvern: respx.MockRouter,
) -> None:
    parameters = {"portal": "https://portal.example.com/login?next=/billing", "month": "2026-11", "n": 3}
    op = SkyvernRunWorkflowOperator(
        task_id="report", workflow_id="wpid_1", parameters=parameters, deferrable=True
    )
    body = workflow_run(
        "wr_1",
        "completed",
        output={"extract_output": {"total": 3}},
        step_count=5,
        attempt=2,
        run_with="code",
        script_run={"script_id": "s_1", "script_revision_id": "sr_2", "ai_fallback_triggered": False},
        run_request={"workflow_id": "wpid_1", "parameters": parameters},
    )
    assert ended(op, skyvern, body) is None

    lineage = as_json(op.get_openlineage_facets_on_complete(None))

    assert names(lineage["inputs"]) == [("https://portal.example.com", "/login")]
    assert names(lineage["outputs"]) == [(BASE_URL, "/v1/runs/wr_1")]
    assert "schema" not in lineage["outputs"][0]["facets"]
    facet = lineage["run"]["skyvern"]
    assert (facet["runType"], facet["attempt"], facet["runWith"], facet["steps"]) == (
        "workflow_run",
        2,
        "code",
        5,
    )
    assert facet["scriptRun"] == {"scriptId": "s_1", "scriptRevisionId": "sr_2", "aiFallbackTriggered": False}
    no_secrets(lineage)


def test_login_reports_the_portal_and_nothing_of_the_credential_or_totp(skyvern: respx.MockRouter) -> None:
    op = SkyvernLoginOperator(
        task_id="login",
        credential_type="skyvern",
        credential_id="cred_42",
        url="https://portal.example.com/login?sso=1",
        totp_url="https://totp.example.com/code?key=TOTPKEY",
        totp_identifier="ops@example.com",
        deferrable=True,
    )
    assert ended(op, skyvern, workflow_run("wr_2", "completed", output=None)) is None

    lineage = as_json(op.get_openlineage_facets_on_complete(None))

    assert names(lineage["inputs"]) == [("https://portal.example.com", "/login")]
    assert lineage["outputs"] == []  # a login extracts nothing
    text = json.dumps(lineage)
    assert "cred_42" not in text
    assert "TOTPKEY" not in text
    assert "ops@example.com" not in text


def serve_download(skyvern: respx.MockRouter) -> dict[str, Any]:
    skyvern.get("https://files.s3.test/bucket/inv").respond(200, content=INVOICE)
    skyvern.get(url__regex=r"/v1/runs/[^/]+/artifacts").respond(200, json=[])
    return {
        "url": SIGNED,
        "filename": "invoice.pdf",
        "checksum": hashlib.sha256(INVOICE).hexdigest(),
        "file_size": len(INVOICE),
    }


def test_download_outputs_each_copied_file_by_its_durable_uri_and_size(
    skyvern: respx.MockRouter, tmp_path: Path
) -> None:
    op = SkyvernDownloadFilesOperator(
        task_id="download",
        navigation_goal="Download the invoice",
        url="https://portal.example.com/billing",
        artifacts_destination=f"file://{tmp_path}/archive",
        deferrable=True,
    )
    body = workflow_run("wr_3", "completed", downloaded_files=[serve_download(skyvern)])
    assert ended(op, skyvern, body) is None

    lineage = as_json(op.get_openlineage_facets_on_complete(None))

    copied = [each for each in lineage["outputs"] if each["namespace"] == "file"]
    assert names(copied) == [("file", f"{tmp_path}/archive/wr_3/downloads/invoice.pdf")]
    statistics = copied[0]["outputFacets"]["outputStatistics"]
    assert (statistics["size"], statistics["fileCount"]) == (len(INVOICE), 1)
    assert names(lineage["inputs"]) == [("https://portal.example.com", "/billing")]
    no_secrets(lineage)


def test_copy_operator_reads_the_run_at_skyvern_and_writes_its_files(
    skyvern: respx.MockRouter, tmp_path: Path
) -> None:
    skyvern.get("/v1/runs/wr_4").respond(
        200,
        json=workflow_run(
            "wr_4", "completed", output={"rows": 1}, downloaded_files=[serve_download(skyvern)]
        ),
    )
    op = SkyvernCopyArtifactsOperator(
        task_id="copy", run_id="wr_4", destination=f"file://{tmp_path}/archive", artifact_types=[]
    )
    assert as_json(op.get_openlineage_facets_on_start())["inputs"] == [
        {"namespace": BASE_URL, "name": "/v1/runs/wr_4", "facets": {}, "inputFacets": {}}
    ]
    op.execute(make_context())

    lineage = as_json(op.get_openlineage_facets_on_complete(None))

    assert names(lineage["inputs"]) == [(BASE_URL, "/v1/runs/wr_4")]
    # the run's output is the run operator's output and this task's input, not written again here
    assert names(lineage["outputs"]) == [("file", f"{tmp_path}/archive/wr_4/downloads/invoice.pdf")]
    assert lineage["run"]["externalQuery"]["externalQueryId"] == "wr_4"
    no_secrets(lineage)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/runs/wr_1/downloads/a.pdf", ("s3://bucket", "runs/wr_1/downloads/a.pdf")),
        ("s3://aws_conn@bucket/runs/a.pdf", ("s3://bucket", "runs/a.pdf")),  # ObjectStoragePath's conn id
        ("gs://bucket/a.pdf", ("gs://bucket", "a.pdf")),
        ("abfss://box@acct.dfs.core.windows.net/a.pdf", ("abfss://box@acct.dfs.core.windows.net", "a.pdf")),
        ("file:///data/runs/a.pdf", ("file", "/data/runs/a.pdf")),
        ("https://u:p@Shop.Example.com/a?b=1#c", ("https://shop.example.com", "/a")),
        ("http://example.com", ("http://example.com", "/")),
        ("s3://bucket", None),
        ("not a url", None),
        ("https://[::1", None),
    ],
)
def test_datasets_are_named_by_the_openlineage_naming_spec(
    uri: str, expected: tuple[str, str] | None
) -> None:
    assert dataset_id(uri) == expected
