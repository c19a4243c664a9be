"""The workflow a prompt becomes with ``replay_as_code=True`` (runs/prompt_workflow.py), and what the
operator refuses when the DAG is parsed."""

from __future__ import annotations

from typing import Any

import jinja2
import jinja2.nativetypes
import pytest
from airflow.sdk import DAG, task

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.prompt_workflow import (
    NotReplayable,
    PromptWorkflow,
    Template,
    plan,
    render_parameters,
)

PROMPT = "Extract the price of {{ params.product }} on {{ ds }}"
URL = "https://shop.example"


def _plan(
    prompt: str = PROMPT, url: str = "https://shop.example/{{ params.shop }}", **kwargs: Any
) -> PromptWorkflow:
    kwargs.setdefault("schema", None)
    kwargs.setdefault("engine", "skyvern-2.0")
    kwargs.setdefault("block_options", {})
    return plan(Template("prompt", prompt), Template("url", url), **kwargs)


def _block(workflow: PromptWorkflow) -> dict[str, Any]:
    (block,) = workflow.definition["workflow_definition"]["blocks"]
    return dict(block)


def test_each_expression_is_a_parameter_and_the_url_is_the_cache_key() -> None:
    workflow = _plan(url="https://{{ params.shop }}.example/{{ ds }}")

    block = _block(workflow)
    assert block["navigation_goal"] == "Extract the price of {{ params_product }} on {{ ds }}"
    assert block["url"] == "https://{{ params_shop }}.example/{{ ds }}"
    assert workflow.expressions == {
        "params_product": "params.product",
        "ds": "ds",
        "params_shop": "params.shop",
    }
    # the url as the block opens it: shop "big-box" + "tv" and "big" + "box-tv" are two keys
    assert workflow.definition["cache_key"] == "https://{{ params_shop }}.example/{{ ds }}"
    assert (workflow.definition["run_with"], workflow.definition["ai_fallback"]) == ("code", True)
    assert workflow.title.endswith(f"[{workflow.search_key}]")
    assert "engine" not in block  # skyvern-2.0 has no task block of its own: the task block's agent runs it


def test_a_url_without_expressions_keeps_the_default_cache_key_and_spacing_inside_does_not_matter() -> None:
    assert _plan(url="https://shop.example").definition["cache_key"] == "default"
    assert _plan("Extract the price of {{params.product}} on {{ ds}}").fingerprint == _plan().fingerprint


def test_the_block_says_what_airflow_would_render() -> None:
    """Jinja's own lexer: whitespace control, comments, a ``}}`` inside a string, literal braces."""
    block = _block(
        _plan(
            '{# was {{ old }} #}Price of {{ params.get("tag", "}}") }} on {{- ds -}} ! {% raw %}{{ x }}{% endraw %}'
        )
    )
    assert block["navigation_goal"] == (
        "Price of {{ params_get_tag }} on{{ ds }}! {% raw %}{{ x }}{% endraw %}"  # Skyvern's Jinja keeps it
    )


def test_parameter_keys_avoid_what_skyvern_reserves_or_shadows() -> None:
    workflow = _plan("Extract {{ prompt }} of {{ current_date }} and {{ workflow_run_id }}", url=URL)
    assert set(workflow.expressions) == {"prompt_2", "current_date_2", "workflow_run_id_2"}


@pytest.mark.parametrize(
    "changed",
    [
        {"prompt": PROMPT + "!"},
        {"url": "https://shop.example/{{ params.shop }}/"},
        {"schema": {"type": "object"}},
        {"engine": "skyvern-1.0"},
        {"block_options": {"error_code_mapping": {"SOLD_OUT": "the product is sold out"}}},
    ],
    ids=["prompt", "url", "schema", "engine", "error codes"],
)
def test_the_fingerprint_changes_with_what_the_workflow_does(changed: dict[str, Any]) -> None:
    assert _plan(**changed).fingerprint != _plan().fingerprint
    assert _plan(**changed).search_key != _plan().search_key


def test_a_computer_use_engine_is_set_on_the_block() -> None:
    assert _block(_plan(engine="openai-cua"))["engine"] == "openai-cua"


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("{% if params.x %}Extract{% endif %}", r"^prompt: .*\{% statement %\}"),
        ("Extract {{ }}", r"^prompt: not a Jinja template Airflow can render \(Expected an expression"),
        ("Extract {{ ds", r"^prompt: not a Jinja template Airflow can render"),
        ("{{ ti.xcom_pull('write_prompt') }}", r"^prompt: .*needs the prompt's own words"),
    ],
    ids=["statement", "empty", "unclosed", "only expressions"],
)
def test_what_cannot_become_a_workflow_is_said(prompt: str, message: str) -> None:
    with pytest.raises(NotReplayable, match=message):
        _plan(prompt)


def test_parameters_render_as_text_even_in_a_native_environment() -> None:
    workflow = _plan("Extract {{ params.amount }} of {{ params.code }}", url=URL)
    context = {"params": {"amount": "1.50", "code": "1_000"}}
    for env in (jinja2.Environment(), jinja2.nativetypes.NativeEnvironment()):  # noqa: S701 - test data
        assert render_parameters(workflow, env, context) == {"params_amount": "1.50", "params_code": "1_000"}


def test_the_operator_refuses_at_parse_time_what_cannot_replay() -> None:
    with pytest.raises(ValueError, match=r"task_id='x'\) prompt: .*statement"):
        SkyvernRunTaskOperator(
            task_id="x", prompt="{% for p in params.p %}{{ p }}{% endfor %}", url=URL, replay_as_code=True
        )
    with pytest.raises(
        ValueError, match=r"task_id='x'\) url: replay_as_code=True needs the page to start from"
    ):
        SkyvernRunTaskOperator(
            task_id="x", prompt="Go to shop.example and extract prices", replay_as_code=True
        )
    with pytest.raises(ValueError, match=r"task_id='x'\) run_with: leave it unset with replay_as_code=True"):
        SkyvernRunTaskOperator(task_id="x", prompt="Extract", url=URL, run_with="code", replay_as_code=True)
    with pytest.raises(ValueError, match=r"task_id='x'\) data_extraction_schema: .*fingerprint"):
        SkyvernRunTaskOperator(
            task_id="x",
            prompt="Extract",
            url=URL,
            data_extraction_schema="{{ params.schema }}",
            replay_as_code=True,
        )
    with pytest.raises(ValueError, match=r"on_ai_fallback"):
        SkyvernRunTaskOperator(
            task_id="x", prompt="Extract", url=URL, replay_as_code=True, on_ai_fallback="sometimes"
        )
    with DAG("replay_parse"):

        @task
        def prompt() -> str:
            return "Extract"

        with pytest.raises(
            ValueError, match=r"prompt: .* must be a string \(a Jinja template is fine\), got"
        ):
            SkyvernRunTaskOperator(task_id="y", prompt=prompt(), url=URL, replay_as_code=True)


def test_partial_checks_what_it_is_given() -> None:
    with DAG("replay_partial"):
        with pytest.raises(
            ValueError, match=r"partial\(task_id='m'\) url: replay_as_code=True needs the page"
        ):
            SkyvernRunTaskOperator.partial(task_id="m", prompt="Extract", url=None, replay_as_code=True)
        with pytest.raises(ValueError, match=r"partial\(task_id='m'\) run_with: leave it unset"):
            SkyvernRunTaskOperator.partial(task_id="m", url=URL, run_with="code", replay_as_code=True)
        with pytest.raises(ValueError, match=r"partial\(task_id='m'\) prompt: .*statement"):
            SkyvernRunTaskOperator.partial(
                task_id="m", prompt="{% if x %}a{% endif %}", url=URL, replay_as_code=True
            )
        SkyvernRunTaskOperator.partial(task_id="ok", url=URL, replay_as_code=True).expand(
            prompt=["Extract a"]
        )
