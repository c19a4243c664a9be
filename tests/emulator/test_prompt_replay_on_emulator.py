"""``SkyvernRunTaskOperator(replay_as_code=True)`` on the emulator: the prompt becomes one workflow, made once
and found again by its fingerprint; the first run is an agent run that records a script, later runs replay
it; templated parts are workflow parameters, the url's the cache key; a changed prompt is a new workflow."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.runs import prompt_workflow
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("hook", "virtual_time")
PROMPT = "Extract the name and price of every laptop listed for {{ ds }}"
URL = "https://shop.example/{{ params.category }}"
SCHEMA = {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}


def _operator(**kwargs: Any) -> SkyvernRunTaskOperator:
    kwargs.setdefault("prompt", PROMPT)
    kwargs.setdefault("url", URL)
    kwargs.setdefault("data_extraction_schema", SCHEMA)
    return SkyvernRunTaskOperator(task_id="prices", replay_as_code=True, poll_interval=1, **kwargs)


def _day(ds: str, category: str = "laptops", run_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    context = make_context(FakeStateStore(), FakeTaskInstance(run_id=run_id or f"scheduled__{ds}"))
    context.update(ds=ds, params={"category": category})
    operator = _operator(**kwargs)
    operator.render_template_fields(context)
    context["return_value"] = operator.execute(context)
    return context


def _try(
    store: FakeStateStore, try_number: int = 1, max_tries: int = 1
) -> tuple[SkyvernRunTaskOperator, Any]:
    """One deferrable try of the same day's task instance."""
    ti = FakeTaskInstance(run_id="scheduled__1", try_number=try_number, max_tries=max_tries)
    context = make_context(store, ti)
    context.update(ds="2026-12-01", params={"category": "laptops"})
    operator = _operator(deferrable=True)
    operator.render_template_fields(context)
    return operator, context


def _deferred_run_id(store: FakeStateStore, **try_: int) -> str:
    operator, context = _try(store, **try_)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    return str(deferred.value.trigger.run_id)  # type: ignore[attr-defined]


def _requests(emulator: EmulatorServer, method: str, path: str) -> list[dict[str, Any]]:
    logged = emulator.control.get("/_emulator/requests").json()["requests"]
    return [r for r in logged if r["method"] == method and r["path"] == path]


def _workflows(emulator: EmulatorServer) -> list[dict[str, Any]]:
    listed = emulator.control.get(
        "/v1/workflows",
        params={"search_key": prompt_workflow.TITLE_MARK, "page_size": 100},
        headers={"x-api-key": emulator.api_key},
    )
    return list(listed.json())


def _run(emulator: EmulatorServer, run_id: str) -> dict[str, Any]:
    answer = emulator.control.get(f"/v1/runs/{run_id}", headers={"x-api-key": emulator.api_key})
    return dict(answer.json())


def test_the_first_day_learns_the_later_days_replay_one_workflow_throughout(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    days = [_day(f"2026-12-0{day}") for day in range(1, 4)]

    (workflow,) = _workflows(emulator)
    assert len(_requests(emulator, "POST", "/v1/workflows")) == 1  # made on day 1, found on days 2 and 3
    runs = [_run(emulator, day["ti"].xcoms["run_id"]) for day in days]
    assert {run["run_request"]["workflow_id"] for run in runs} == {workflow["workflow_permanent_id"]}
    assert [run["run_request"]["parameters"] for run in runs] == [
        {"ds": f"2026-12-0{day}", "params_category": "laptops"} for day in range(1, 4)
    ]
    assert [run["run_with"] for run in runs] == ["code"] * 3
    first, *later = days
    assert first["ti"].xcoms.get("script_run") is None  # the agent run that records the script
    assert all(day["ti"].xcoms["script_run"]["ai_fallback_triggered"] is False for day in later)
    assert all(day["ti"].xcoms["usage"]["replayed_as_code"] == 1 for day in later)
    assert all(run["step_count"] < runs[0]["step_count"] for run in runs[1:])
    for day in days:  # the return value is what the block extracted, by the task's schema
        assert isinstance(day["return_value"], list)
        assert all(set(item) <= {"name"} for item in day["return_value"])
    assert workflow["cache_key"] == "https://shop.example/{{ params_category }}"  # the url the block opens
    log = capsys.readouterr().out
    assert log.count("ran as an agent: no cached script for its cache key yet") == 1
    assert log.count("replayed cached code (script") == 2


def test_another_category_is_another_script_of_the_same_workflow(emulator: EmulatorServer) -> None:
    laptops = _day("2026-12-01")
    phones = _day("2026-12-01", category="phones", run_id="scheduled__phones")

    assert len(_workflows(emulator)) == 1
    assert laptops["ti"].xcoms.get("script_run") is None
    assert phones["ti"].xcoms.get("script_run") is None  # its own cache key: no script yet, it records one
    values = {s["cache_key_value"] for s in emulator.control.get("/_emulator/scripts").json()["scripts"]}
    assert values == {"https://shop.example/laptops:v2", "https://shop.example/phones:v2"}


@pytest.mark.parametrize(
    "changed",
    [
        {"prompt": "Extract the name of every laptop listed for {{ ds }}"},
        {"url": "https://shop.example/{{ params.category }}?sort=price"},
        {"data_extraction_schema": {"type": "array", "items": {"type": "string"}}},
        {"engine": "openai_cua"},
    ],
    ids=["prompt", "url", "schema", "engine"],
)
def test_a_changed_prompt_url_schema_or_engine_is_a_new_workflow(
    emulator: EmulatorServer, changed: dict[str, Any]
) -> None:
    _day("2026-12-01")
    _day("2026-12-02", **changed)

    assert len(_workflows(emulator)) == 2
    assert len(_requests(emulator, "POST", "/v1/workflows")) == 2


def test_what_is_not_the_page_flow_keeps_the_workflow(emulator: EmulatorServer) -> None:
    one = _day("2026-12-01", title="day one", max_steps=3)
    two = _day("2026-12-02", title="day two", max_steps=30, proxy_location="RESIDENTIAL_GB")

    assert len(_workflows(emulator)) == 1
    first = _run(emulator, one["ti"].xcoms["run_id"])
    assert first["step_count"] == 3  # max_steps went as x-max-steps-override (the agent's default is 5)
    assert _run(emulator, two["ti"].xcoms["run_id"])["run_request"]["proxy_location"] == "RESIDENTIAL_GB"


def test_a_lost_answer_to_the_create_is_found_again_by_its_key(emulator: EmulatorServer) -> None:
    emulator.control.post(
        "/_emulator/faults",
        json=[{"method": "POST", "path": "/v1/workflows", "reset": True, "after_create": True, "times": 1}],
    ).raise_for_status()

    _day("2026-12-01")

    assert len(_workflows(emulator)) == 1
    assert len(_requests(emulator, "POST", "/v1/workflows")) == 2  # resent with the same Idempotency-Key


def test_a_deleted_workflow_is_made_again(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _day("2026-12-01")
    (workflow,) = _workflows(emulator)
    deleted = emulator.control.post(
        f"/v1/workflows/{workflow['workflow_permanent_id']}/delete", headers={"x-api-key": emulator.api_key}
    )
    deleted.raise_for_status()

    second = _day("2026-12-02")

    (again,) = _workflows(emulator)
    assert again["workflow_permanent_id"] != workflow["workflow_permanent_id"]
    assert (
        _run(emulator, second["ti"].xcoms["run_id"])["run_request"]["workflow_id"]
        == again["workflow_permanent_id"]
    )
    assert first["ti"].xcoms["run_id"] != second["ti"].xcoms["run_id"]
    assert "was deleted; making a new one" in capsys.readouterr().out
    _day("2026-12-03")
    assert len(_workflows(emulator)) == 1  # found again by its title


def test_the_ai_taking_over_counts_a_streak_and_fails_when_asked(emulator: EmulatorServer) -> None:
    _day("2026-12-01")
    changed = _day("2026-12-02", title="[emulator page_changed=1]")
    assert changed["ti"].xcoms["script_run"]["ai_fallback_triggered"] is True
    assert changed["ti"].xcoms["ai_fallback_streak"] == 1

    with pytest.raises(Exception, match=r"the AI took over .*\(on_ai_fallback='fail'\)"):
        _day("2026-12-03", title="[emulator page_changed=1]", on_ai_fallback="fail")


def test_a_retry_adopts_the_run_of_the_same_day(emulator: EmulatorServer) -> None:
    store = FakeStateStore()
    first = _deferred_run_id(store)

    assert _deferred_run_id(store, try_number=2) == first
    assert len(_requests(emulator, "POST", "/v1/run/agents")) == 1


def test_a_create_still_in_progress_elsewhere_fails_the_try_before_any_run(emulator: EmulatorServer) -> None:
    _create_answers(emulator, 409)

    with pytest.raises(SkyvernError, match=r"^Finding or making this prompt's replay workflow failed: .*409"):
        _day("2026-12-01")
    assert _requests(emulator, "POST", "/v1/run/agents") == []  # no run while the workflow is unknown
    assert len(_requests(emulator, "GET", "/v1/workflows")) == 2  # looked again after the 409

    _day("2026-12-01")  # the retry
    assert len(_workflows(emulator)) == 1
    assert len(_requests(emulator, "POST", "/v1/run/agents")) == 1


def test_skyvern_refusing_the_workflow_fails_without_retry(emulator: EmulatorServer) -> None:
    _create_answers(emulator, 422)

    with pytest.raises(AirflowFailException, match=r"^Skyvern refused this prompt's replay workflow: .*422"):
        _day("2026-12-01")
    assert _requests(emulator, "POST", "/v1/run/agents") == []


def test_the_last_try_that_cannot_find_the_workflow_cancels_the_run_an_earlier_try_started(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FakeStateStore()
    first = _deferred_run_id(store)
    _lookups_fail(emulator)

    operator, last = _try(store, try_number=2)
    with pytest.raises(SkyvernError, match="replay workflow failed"):
        operator.execute(last)

    assert _run(emulator, first)["status"] == "canceled"  # nobody would wait for it any more
    assert len(_requests(emulator, "POST", f"/v1/runs/{first}/cancel")) == 1
    assert f"failed before it could take over Skyvern run {first}" in capsys.readouterr().out


def test_a_try_with_retries_left_that_cannot_find_the_workflow_leaves_the_run_to_the_retry(
    emulator: EmulatorServer,
) -> None:
    store = FakeStateStore()
    first = _deferred_run_id(store, max_tries=2)
    _lookups_fail(emulator)

    operator, second = _try(store, try_number=2, max_tries=2)
    with pytest.raises(SkyvernError):
        operator.execute(second)

    assert _requests(emulator, "POST", f"/v1/runs/{first}/cancel") == []
    assert _run(emulator, first)["status"] not in ("canceled", "completed")


def _create_answers(emulator: EmulatorServer, status: int) -> None:
    emulator.control.post(
        "/_emulator/faults", json=[{"method": "POST", "path": "/v1/workflows", "status": status, "times": 1}]
    ).raise_for_status()


def _lookups_fail(emulator: EmulatorServer) -> None:
    emulator.control.post(
        "/_emulator/faults", json=[{"method": "GET", "path": "/v1/workflows", "status": 503}]
    ).raise_for_status()


def test_a_prompt_mapped_from_an_upstream_task_is_text_not_a_template(emulator: EmulatorServer) -> None:
    """Airflow does not render a value mapped from an XCom (its id is in ``seen_oids``): neither do we, so
    ``{{ var.value.x }}`` in scraped text reaches no variable, and Skyvern's Jinja gets it raw."""
    upstream_text = "Extract the price shown as {{ product.price }} {{ var.value.get('secret') }}"
    context = make_context(FakeStateStore(), FakeTaskInstance(run_id="scheduled__mapped"))
    context.update(ds="2026-12-01", params={"category": "laptops"})
    operator = _operator(prompt=upstream_text)
    operator._do_render_template_fields(  # as MappedOperator.render_template_fields calls it
        operator, operator.template_fields, context, operator.get_template_env(), {id(upstream_text)}
    )
    operator.execute(context)

    (workflow,) = _workflows(emulator)
    run = _run(emulator, context["ti"].xcoms["run_id"])
    assert run["run_request"]["parameters"] == {"params_category": "laptops"}  # the url's only
    assert operator.prompt == upstream_text  # Airflow left it as it was
    assert workflow["title"].startswith("Extract the price shown as {{ product.price }}")
