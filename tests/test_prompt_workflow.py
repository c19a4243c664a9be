"""The workflow a prompt becomes with ``replay_as_code=True`` (runs/prompt_workflow.py), and what the
operator refuses when the DAG is parsed."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.prompt_workflow import NotReplayable, plan

PROMPT = "Extract the price of {{ params.product }} on {{ ds }}"
URL = "https://shop.example"


def _plan(prompt: str = PROMPT, url: str = "https://shop.example/{{ params.shop }}", **kwargs: Any):  # type: ignore[no-untyped-def]
    kwargs.setdefault("schema", None)
    kwargs.setdefault("engine", "skyvern-2.0")
    kwargs.setdefault("block_options", {})
    return plan(prompt, url, **kwargs)


def test_each_expression_is_a_parameter_and_the_urls_are_the_cache_key() -> None:
    workflow = _plan(url="https://{{ params.shop }}.example/{{ ds }}")

    (block,) = workflow.definition["workflow_definition"]["blocks"]
    assert block["navigation_goal"] == "Extract the price of {{ params_product }} on {{ ds }}"
    assert block["url"] == "https://{{ params_shop }}.example/{{ ds }}"
    assert workflow.expressions == {
        "params_product": "params.product",
        "ds": "ds",
        "params_shop": "params.shop",
    }
    assert workflow.definition["cache_key"] == "{{ params_shop }}-{{ ds }}"  # in the url's order
    assert (workflow.definition["run_with"], workflow.definition["ai_fallback"]) == ("code", True)
    assert workflow.title.endswith(f"[{workflow.search_key}]")
    assert "engine" not in block  # skyvern-2.0 has no task block of its own: the task block's agent runs it


def test_a_url_without_expressions_keeps_the_default_cache_key_and_spacing_does_not_matter() -> None:
    assert _plan(url="https://shop.example").definition["cache_key"] == "default"
    assert _plan("Extract the price of {{params.product}} on {{- ds -}}").fingerprint == _plan().fingerprint


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
    (block,) = _plan(engine="openai-cua").definition["workflow_definition"]["blocks"]
    assert block["engine"] == "openai-cua"


def test_a_statement_or_an_empty_expression_cannot_become_a_parameter() -> None:
    with pytest.raises(NotReplayable, match=r"^prompt: .*\{% statement %\}"):
        _plan("{% if params.x %}Extract{% endif %}")
    with pytest.raises(NotReplayable, match="empty"):
        _plan("Extract {{ }}")


def test_the_operator_refuses_at_parse_time_what_cannot_replay() -> None:
    with pytest.raises(ValueError, match=r"task_id='x'\) prompt: .*statement"):
        SkyvernRunTaskOperator(
            task_id="x", prompt="{% for p in params.p %}{{ p }}{% endfor %}", replay_as_code=True
        )
    with pytest.raises(ValueError, match=r"task_id='x'\) run_with: leave it unset with replay_as_code=True"):
        SkyvernRunTaskOperator(task_id="x", prompt="Extract", url=URL, run_with="code", replay_as_code=True)
    with pytest.raises(
        ValueError, match=r"task_id='x'\) url: replay_as_code=True needs the page to start from"
    ):
        SkyvernRunTaskOperator(
            task_id="x", prompt="Go to shop.example and extract prices", replay_as_code=True
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
