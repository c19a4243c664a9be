"""The OpenLineage datasets and facets of a Skyvern run (docs/lineage.md). Imported only by the OpenLineage
methods of :class:`~.lineage.SkyvernLineageMixin`, so only where the OpenLineage provider calls them.

Datasets are named by OpenLineage's naming spec (``namespace = scheme://authority``, ``name = path``;
``file`` for local paths). A URL is reduced to scheme, host, port and path before it goes anywhere: no
query string (presigned URLs carry their signature there), no fragment, no user or password. TOTP
settings, credentials and Skyvern's presigned file URLs are never read here.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attr
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    DatasetFacet,
    OutputDatasetFacet,
    RunFacet,
    error_message_run,
    external_query_run,
    output_statistics_output_dataset,
    schema_dataset,
)

from airflow_provider_skyvern.exceptions import one_line

SOURCE = "skyvern"
"""``externalQuery.source`` when Skyvern's base URL cannot be read."""
FACET_SCHEMA_URL = "https://github.com/airflow-provider-skyvern/airflow-provider-skyvern/blob/main/docs/lineage.md#what-each-event-carries"
AZURE_ACCOUNT_HOSTS = (".dfs.core.windows.net", ".blob.core.windows.net")
"""Where the user part of a URL is Azure's container, not a login (elsewhere it is dropped: a user, or
the Airflow connection id ``ObjectStoragePath`` reads from ``s3://conn_id@bucket/key``)."""
SCHEMA_DEPTH = 3
"""Nested objects of ``data_extraction_schema`` kept this deep in the schema facet."""


@attr.define
class SkyvernRunFacet(RunFacet):
    """What the run was: engine, status, steps, attempt, cached-code replay, and its page in Skyvern's UI."""

    runId: str  # OpenLineage facets use camelCase
    runType: str | None = attr.field(default=None)
    engine: str | None = attr.field(default=None)
    status: str | None = attr.field(default=None)
    steps: int | None = attr.field(default=None)
    attempt: int | None = attr.field(default=None)
    runWith: str | None = attr.field(default=None)
    scriptRun: dict[str, Any] | None = attr.field(default=None)
    appUrl: str | None = attr.field(default=None)

    _additional_skip_redact: ClassVar[list[str]] = ["runId", "runType", "engine", "status", "runWith"]

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL


def on_start(op: Any) -> OperatorLineage[Any, Any]:
    """START: the starting URLs the task was given."""
    return OperatorLineage(inputs=_inputs(op))


def on_end(op: Any, *, failed: bool) -> OperatorLineage[Any, Any]:
    """COMPLETE / FAIL: also the run (external id, provider facet), its output at Skyvern and the copied files."""
    run = op.skyvern_run
    run_id = _run_id(op)
    run_facets: dict[str, RunFacet] = {}
    base_url = _base_url(op)
    if run_id is not None:
        run_facets["externalQuery"] = external_query_run.ExternalQueryRunFacet(
            externalQueryId=run_id, source=base_url or SOURCE
        )
        run_facets["skyvern"] = _skyvern_facet(op, run_id)
    if failed and run is not None and run.status.value != "completed":
        from airflow_provider_skyvern.runs.results import failure_message

        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=one_line(failure_message(run)), programmingLanguage="python"
        )
    outputs: list[OutputDataset] = []
    if run is not None and base_url is not None and not failed and not op.lineage_reads_run:
        extracted = _extracted_output(op, run, base_url)
        if extracted is not None:
            outputs.append(extracted)
    outputs.extend(_copied_files(op))
    # No job facets: the OpenLineage provider sets ``jobType`` itself (AIRFLOW, TASK, BATCH) and replaces any
    # the operator returns; the Skyvern side is described by the ``externalQuery`` and ``skyvern`` run facets.
    return OperatorLineage(inputs=_inputs(op), outputs=outputs, run_facets=run_facets)


# ---- datasets ------------------------------------------------------------------------------------------


def dataset_id(uri: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of a URI by the naming spec, or None for what names no dataset."""
    parts = _parts(uri)
    if parts is None:
        return None
    namespace, path = parts
    if namespace == "file":
        return (namespace, path) if path else None
    if namespace.startswith(("http://", "https://")):
        return namespace, path or "/"
    key = path.lstrip("/")  # object stores: the bucket is the authority, the key the name
    return (namespace, key) if key else None


def clean_url(url: str | None) -> str | None:
    """``scheme://host[:port]/path`` of a URL: what may go into a facet."""
    parts = _parts(url) if url else None
    if parts is None:
        return None
    namespace, path = parts
    return f"file://{path}" if namespace == "file" else f"{namespace}{path}"


def _parts(uri: str) -> tuple[str, str] | None:
    """``(scheme://host[:port], path)``, or ``("file", path)``: user, password, query and fragment dropped."""
    try:
        parts = urlsplit(uri.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme == "file":
        return "file", parts.path
    if not scheme or not parts.hostname:
        return None
    host = parts.hostname
    if parts.username and not parts.password and host.endswith(AZURE_ACCOUNT_HOSTS):
        host = f"{parts.username}@{host}"  # abfss://container@account.dfs.core.windows.net: the container
    return f"{scheme}://{host}" + (f":{port}" if port is not None else ""), parts.path


def _inputs(op: Any) -> list[InputDataset]:
    """The pages the run started from: the operator's ``url``, a workflow's URL parameters, the run's request.
    The copy operator reads the run at Skyvern instead (the dataset its run operator wrote)."""
    if op.lineage_reads_run:
        run_id, base_url = _run_id(op), _base_url(op)
        found = dataset_id(run_url(base_url, run_id)) if run_id and base_url else None
        return [] if found is None else [InputDataset(namespace=found[0], name=found[1])]
    candidates: list[Any] = [getattr(op, "url", None)]
    parameters = getattr(op, "parameters", None)
    if isinstance(parameters, dict):
        candidates.extend(parameters.values())
    request = getattr(op.skyvern_run, "run_request", None)
    if isinstance(request, dict):
        candidates.append(request.get("url"))
    seen: dict[tuple[str, str], InputDataset] = {}
    for value in candidates:
        if (
            not isinstance(value, str)
            or "{{" in value
            or not value.lower().startswith(("http://", "https://"))
        ):
            continue
        found = dataset_id(value)
        if found is not None and found not in seen:
            seen[found] = InputDataset(namespace=found[0], name=found[1])
    return list(seen.values())


def _extracted_output(op: Any, run: Any, base_url: str) -> OutputDataset | None:
    """The run's output where Skyvern keeps it (``GET /v1/runs/{id}``), with the schema it was asked for."""
    found = dataset_id(run_url(base_url, run.run_id))
    schema = _schema_fields(getattr(op, "data_extraction_schema", None))
    if found is None or (run.output is None and not schema):
        return None
    facets: dict[str, DatasetFacet] = {}
    if schema:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=schema)
    output_facets: dict[str, OutputDatasetFacet] = {}
    if isinstance(run.output, list):
        output_facets["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=len(run.output))
        )
    return OutputDataset(namespace=found[0], name=found[1], facets=facets, outputFacets=output_facets)


def run_url(base_url: str, run_id: str) -> str:
    """Where Skyvern serves the run and its output: the dataset a run operator writes, the copy operator reads."""
    return f"{base_url.rstrip('/')}/v1/runs/{run_id}"


def _copied_files(op: Any) -> list[OutputDataset]:
    """Each file copied to object storage, by its durable URI, with its size."""
    manifest = op.skyvern_artifacts
    outputs: list[OutputDataset] = []
    for copied in manifest.files if manifest is not None else []:
        found = dataset_id(copied.uri)
        if found is None:
            continue
        statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            size=copied.size, fileCount=1
        )
        outputs.append(
            OutputDataset(namespace=found[0], name=found[1], outputFacets={"outputStatistics": statistics})
        )
    return outputs


def _schema_fields(schema: Any, depth: int = 0) -> list[schema_dataset.SchemaDatasetFacetFields]:
    """The fields of a JSON Schema (an array's items' fields for a list of records); nothing if unreadable."""
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):  # a pydantic model class
        schema = schema.model_json_schema()
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            return []
    if not isinstance(schema, dict) or depth > SCHEMA_DEPTH:
        return []
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        schema = schema["items"]
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    fields = []
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type")
        nested = _schema_fields(spec, depth + 1) if kind in ("object", "array") else []
        fields.append(
            schema_dataset.SchemaDatasetFacetFields(
                name=str(name),
                type="|".join(map(str, kind)) if isinstance(kind, list) else (str(kind) if kind else None),
                description=spec.get("description") if isinstance(spec.get("description"), str) else None,
                fields=nested or None,
            )
        )
    return fields


# ---- run and job facets -----------------------------------------------------------------------------


def _skyvern_facet(op: Any, run_id: str) -> SkyvernRunFacet:
    run = op.skyvern_run
    engine = getattr(op, "engine", None)
    request = getattr(run, "run_request", None)
    if engine is None and isinstance(request, dict):
        engine = request.get("engine")
    script_run = getattr(run, "script_run", None)
    return SkyvernRunFacet(
        runId=run_id,
        runType=_text(getattr(run, "run_type", None)),
        engine=_text(engine),
        status=_text(getattr(run, "status", None)),
        steps=getattr(run, "step_count", None),
        attempt=getattr(run, "attempt", None),
        runWith=getattr(run, "run_with", None),
        scriptRun=None
        if script_run is None
        else {
            "scriptId": script_run.script_id,
            "scriptRevisionId": script_run.script_revision_id,
            "aiFallbackTriggered": script_run.ai_fallback_triggered,
        },
        appUrl=clean_url(getattr(run, "app_url", None) or getattr(op, "skyvern_app_url", None)),
    )


def _run_id(op: Any) -> str | None:
    """The run this task started or copied: the ended run, else the one it waited for, else ``run_id``."""
    if op.skyvern_run is not None:
        return str(op.skyvern_run.run_id)
    for candidate in (getattr(op, "_active_run_id", None), getattr(op, "run_id", None)):
        if isinstance(candidate, str) and candidate.strip() and "{{" not in candidate:
            return candidate.strip()
    return None


def _base_url(op: Any) -> str | None:
    """Skyvern's base URL from the task's connection (already read by the task); None if it cannot be read."""
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

    try:
        hook = getattr(op, "hook", None)
        if not isinstance(hook, SkyvernHook):
            hook = SkyvernHook(op.skyvern_conn_id)
        return clean_url(hook.settings.base_url)
    except Exception:  # lineage never fails a task: the facets that need it are left out
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))
