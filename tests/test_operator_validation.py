"""Bad operator input fails at DAG parse time with one line naming the parameter (or after rendering)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from airflow_provider_skyvern.operators.base import SkyvernRunOperatorBase
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator


def make(**kwargs: Any) -> SkyvernRunTaskOperator:
    kwargs.setdefault("prompt", "Get the page title")
    return SkyvernRunTaskOperator(task_id="extract", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "  "}, "prompt: must be a non-empty string describing what Skyvern should do"),
        (
            {"engine": "skyvern_v9"},
            "engine: 'skyvern_v9' is not a Skyvern engine; use one of skyvern_v1, skyvern_v2, skyvern_v3, openai_cua, anthropic_cua, ui_tars, yutori_navigator, skyvern-1.0",
        ),
        (
            {"proxy_location": "MARS"},
            "proxy_location: 'MARS' is not accepted; use a ProxyLocation such as 'RESIDENTIAL'",
        ),
        ({"proxy_location": {"country": "USA"}}, "proxy_location: {'country': 'USA'} is not accepted"),
        (
            {"proxy_location": {"country": "US", "subdivision": "CALIFORNIA-N"}},
            "is not accepted (subdivision: String should have at most 10 characters)",
        ),
        (
            {"proxy_location": {"country": "US", "url": "http://proxy:3128"}},
            "is not accepted (url: Extra inputs are not permitted)",
        ),
        ({"max_steps": 0}, "max_steps: must be an integer > 0, got 0"),
        ({"max_steps": "10"}, "max_steps: must be an integer > 0, got '10'"),
        ({"timeout": -5}, "timeout: must be a number > 0, got -5"),
        ({"poll_interval": 0}, "poll_interval: must be a number > 0, got 0"),
        ({"max_screenshot_scrolls": -1}, "max_screenshot_scrolls: must be an integer >= 0, got -1"),
        (
            {"url": "example.com/products"},
            "url: 'example.com/products' is not a URL; it must start with http:// or https:// and name a host",
        ),
        ({"url": "ftp://example.com"}, "url: 'ftp://example.com' is not a URL"),
        ({"webhook_url": "hooks.example.com"}, "webhook_url: 'hooks.example.com' is not a URL"),
        ({"totp_url": "mailto:x@example.com"}, "totp_url: 'mailto:x@example.com' is not a URL"),
        (
            {"browser_address": "localhost:9222"},
            "browser_address: 'localhost:9222' is not a URL; it must start with http:// or https:// or ws:// or wss://",
        ),
        (
            {"data_extraction_schema": {"type": "objekt"}},
            "data_extraction_schema: not a valid JSON Schema at type: 'objekt' is not one of "
            "['array', 'boolean', 'integer', 'null', 'number', 'object', 'string']",
        ),
        (
            {"data_extraction_schema": {"type": "object", "properties": {"tags": {"type": ["string", 3]}}}},
            "data_extraction_schema: not a valid JSON Schema at properties/tags/type/1: 3 is not one of "
            "['array', 'boolean', 'integer', 'null', 'number', 'object', 'string']",
        ),
        (
            {"data_extraction_schema": {"type": "object", "required": "name"}},
            "data_extraction_schema: not a valid JSON Schema at required: 'name' is not of type 'array'",
        ),
        (
            {"data_extraction_schema": "{not json"},
            "data_extraction_schema: is a string but not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)",
        ),
        (
            {"data_extraction_schema": 42},
            "data_extraction_schema: must be a JSON Schema (dict, JSON string or pydantic model class), got int",
        ),
        ({"run_with": "magic"}, "run_with: 'magic' is not accepted; use one of agent, code"),
        (
            {"user_agent": "skyvern-ui"},
            "user_agent: 'skyvern-ui' is not accepted: 'skyvern-ui' makes Skyvern truncate the output",
        ),
        (
            {"extra_http_headers": {"X-Retry": 3}},
            "extra_http_headers: must be a mapping of strings to strings, got {'X-Retry': 3}",
        ),
        (
            {"error_code_mapping": ["OUT_OF_STOCK"]},
            "error_code_mapping: must be a mapping of strings to strings",
        ),
        (
            {"output_validation": "strict"},
            "output_validation: 'strict' is not accepted; use one of warn, fail",
        ),
    ],
)
def test_bad_value_fails_at_parse_time_with_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^SkyvernRunTaskOperator") as raised:
        make(**kwargs)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith("SkyvernRunTaskOperator(task_id='extract') ")
    assert message in text


def test_templated_values_are_not_checked_before_rendering() -> None:
    operator = make(
        prompt="{{ params.prompt }}",
        url="{{ params.url }}",
        engine="{{ params.engine }}",
        data_extraction_schema="{{ params.schema | tojson }}",
        extra_http_headers={"Accept-Language": "{{ params.lang }}"},
    )
    assert operator.url == "{{ params.url }}"


def test_accepted_forms() -> None:
    class Product(BaseModel):
        name: str
        price: float

    assert make(data_extraction_schema=Product).data_extraction_schema == Product.model_json_schema()
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    assert make(data_extraction_schema=json.dumps(schema)).data_extraction_schema == json.dumps(schema)
    make(
        engine="skyvern-2.0",
        proxy_location={"country": "GB", "city": "London"},
        browser_address="wss://sessions.skyvern.com/abc",
        max_screenshot_scrolls=0,
        timeout=0.5,
        run_with="code",
    )
    make(proxy_location={"url": "http://user:pass@proxy:3128"}, engine="ui_tars")


@pytest.mark.parametrize("setting", ["True", "False"])
def test_deferrable_defaults_to_the_airflow_setting(setting: str) -> None:
    """Read when the module is imported (as Airflow's own providers do), so checked in a fresh process."""
    import os
    import subprocess
    import sys

    code = (
        "from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator as O; "
        "print(O(task_id='t', prompt='p').deferrable)"
    )
    env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == setting


def test_template_fields_have_renderers_for_structured_values() -> None:
    fields = set(SkyvernRunTaskOperator.template_fields)
    assert {"prompt", "url", "title", "data_extraction_schema", "extra_http_headers", "webhook_url"} <= fields
    renderers = SkyvernRunTaskOperator.template_fields_renderers
    assert renderers["data_extraction_schema"] == "json"
    assert renderers["extra_http_headers"] == "json"
    assert set(renderers) <= fields


@pytest.mark.parametrize(
    ("operator_class", "kwargs"),
    [
        (SkyvernRunTaskOperator, {"prompt": "Get the invoices"}),
        (SkyvernRunWorkflowOperator, {"workflow_id": "wpid_1"}),
        (SkyvernLoginOperator, {"credential_type": "skyvern", "credential_id": "cred_1"}),
        (SkyvernDownloadFilesOperator, {"navigation_goal": "Download the invoice"}),
    ],
)
def test_artifacts_destination_without_waiting_fails_the_parse_instead_of_being_ignored(
    operator_class: type[SkyvernRunOperatorBase], kwargs: dict[str, Any]
) -> None:
    """Nothing would copy the files: the task returns the run id while the run is still going."""
    with pytest.raises(ValueError, match="artifacts_destination") as raised:
        operator_class(
            task_id="start", wait_for_completion=False, artifacts_destination="s3://bucket/runs", **kwargs
        )
    assert str(raised.value) == (
        f"{operator_class.__name__}(task_id='start') artifacts_destination: needs wait_for_completion=True (the files are "
        "copied when the run ends, and this task does not wait for that); copy them after the run ends "
        "with SkyvernCopyArtifactsOperator(run_id=...)"
    )
