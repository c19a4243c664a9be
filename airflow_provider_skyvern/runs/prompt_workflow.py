"""Learn once, replay as code, for a plain prompt: the Skyvern workflow a prompt becomes, made once.

Skyvern caches code only for workflow runs. ``SkyvernRunTaskOperator(replay_as_code=True)`` therefore turns
its prompt into a workflow of one ``task`` block (the block Skyvern 1.0.56 records a script from that
replays the extraction too; a ``task_v2`` block's replay extracted nothing on the real server), every
``{{ expression }}`` of the prompt and url a workflow parameter, and a ``cache_key`` over the url's
parameters (they change the pages, so the script; the prompt's only change what is typed or read).

The workflow is defined by the unrendered templates, the schema and the engine: its fingerprint is the
hash of that definition. It is made once: looked up by the fingerprint its title carries, else created with
an ``Idempotency-Key`` derived from it, which makes Skyvern answer every later create, however concurrent,
with the same workflow. A changed prompt, url, schema or engine is another fingerprint, so another workflow
(and a fresh script).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_skyvern.exceptions import SkyvernHTTPError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import SavedWorkflow

BLOCK_LABEL = "prompt"
"""The one block's label: the run's output is keyed ``prompt_output``."""
TITLE_MARK = "airflow-replay"
KEY_PREFIX = "airflow-provider-skyvern-replay-"
EXPRESSION = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
TITLE_PROMPT_CHARS = 60
ENGINES_ON_THE_BLOCK = frozenset(
    {"skyvern-3.0", "openai-cua", "anthropic-cua", "ui-tars", "yutori-navigator"}
)
"""Engines a task block is given; skyvern-1.0 is its own agent, and skyvern-2.0 has no task block of its own
(``task_v2`` takes no extraction schema, and its replay extracts nothing in 1.0.56)."""


class NotReplayable(ValueError):
    """The prompt or url cannot become a workflow (the message names the field)."""


@dataclass(frozen=True)
class PromptWorkflow:
    """The workflow a prompt becomes: its definition, and the Airflow expression behind each parameter."""

    definition: dict[str, Any]
    expressions: dict[str, str]
    """Workflow parameter key -> the Jinja expression (``ds``, ``params.city``) Airflow renders for it."""
    fingerprint: str

    @property
    def title(self) -> str:
        return str(self.definition["title"])

    @property
    def search_key(self) -> str:
        return f"{TITLE_MARK}:{self.fingerprint[:16]}"

    @property
    def idempotency_key(self) -> str:
        return KEY_PREFIX + self.fingerprint

    def parameters(self, render: Any) -> dict[str, str]:
        """The run's parameters: each expression rendered by ``render`` (Airflow's, with the task's context)."""
        return {
            key: _as_text(render("{{ " + expression + " }}")) for key, expression in self.expressions.items()
        }

    def made_for(self, workflow: SavedWorkflow) -> bool:
        return workflow.title.endswith(f"[{self.search_key}]") and workflow.deleted_at is None


def check_template(field: str, value: Any) -> None:
    """What parse time can say: text (templates welcome), and no ``{% %}`` statement."""
    if value is None and field == "url":
        raise NotReplayable(
            "url: replay_as_code=True needs the page to start from: the workflow's task block opens it (a "
            "task run without one has Skyvern's AI pick it from the prompt, which a cached script cannot)"
        )
    if not isinstance(value, str):
        raise NotReplayable(
            f"{field}: replay_as_code=True makes a Skyvern workflow from the {field}'s text, so it must be a "
            f"string (a Jinja template is fine), got {type(value).__name__}"
        )
    if "{%" in value:
        raise NotReplayable(
            f"{field}: replay_as_code=True turns each {{{{ expression }}}} into a workflow parameter, but a "
            "{% statement %} cannot be one; compute the value in an upstream task or a param instead"
        )


def plan(
    prompt: str,
    url: str,
    *,
    schema: Any,
    engine: str | None,
    block_options: Mapping[str, Any],
) -> PromptWorkflow:
    """The workflow for the unrendered ``prompt`` and ``url``; ``block_options`` are the task block's other
    fields (error codes, model, ...)."""
    check_template("prompt", prompt)
    check_template("url", url)
    keys: dict[str, str] = {}  # expression -> key

    def to_parameter(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if not expression:
            raise NotReplayable("prompt: an empty {{ }} cannot become a workflow parameter")
        if expression not in keys:
            keys[expression] = _unique_key(expression, set(keys.values()))
        return "{{ " + keys[expression] + " }}"

    block_prompt = EXPRESSION.sub(to_parameter, prompt)
    block_url = EXPRESSION.sub(to_parameter, url)
    url_keys = [keys[e] for e in _expressions(url)]
    block: dict[str, Any] = {
        "block_type": "task",
        "label": BLOCK_LABEL,
        "url": block_url,
        "navigation_goal": block_prompt,
        "data_extraction_goal": block_prompt,
        "data_schema": schema,
        **{name: value for name, value in block_options.items() if value is not None},
    }
    if engine in ENGINES_ON_THE_BLOCK:
        block["engine"] = engine
    body = {
        "run_with": "code",
        "ai_fallback": True,
        "cache_key": "-".join("{{ " + key + " }}" for key in dict.fromkeys(url_keys)) or "default",
        "workflow_definition": {
            "parameters": [
                {"parameter_type": "workflow", "key": key, "workflow_parameter_type": "string"}
                for key in keys.values()
            ],
            "blocks": [{name: value for name, value in block.items() if value is not None}],
        },
    }
    fingerprint = hashlib.sha256(
        json.dumps({"engine": engine, **body}, sort_keys=True, default=str).encode()
    ).hexdigest()
    label = " ".join(prompt.split())
    if len(label) > TITLE_PROMPT_CHARS:
        label = label[: TITLE_PROMPT_CHARS - 1] + "…"
    definition = {
        "title": f"{label} [{TITLE_MARK}:{fingerprint[:16]}]",
        "description": (
            "Made by airflow-provider-skyvern for SkyvernRunTaskOperator(replay_as_code=True): one task block "
            "equivalent to the prompt, found again by the fingerprint in its title. Editing it changes what "
            "every run of that task does."
        ),
        **body,
    }
    return PromptWorkflow(definition, {key: expression for expression, key in keys.items()}, fingerprint)


def find_or_create(hook: SkyvernHook, workflow: PromptWorkflow, log: Any) -> SavedWorkflow:
    """The workflow made for this fingerprint: the oldest one found by its title, else created, once."""
    found = _oldest(hook, workflow)
    if found is not None:
        return found
    try:
        made = hook.create_workflow(workflow.definition, idempotency_key=workflow.idempotency_key)
    except SkyvernHTTPError as exc:
        if exc.http_status != 409:  # 409: another task is creating it with the same key right now
            raise
        found = _oldest(hook, workflow)
        if found is None:
            raise
        return found
    if made.deleted_at is not None:
        # Skyvern keeps a deleted workflow's id for its key: a new one is made without it (found by title later)
        log.warning(
            "Skyvern workflow %s made for this prompt was deleted; making a new one (the script starts afresh)",
            made.workflow_permanent_id,
        )
        made = hook.create_workflow(workflow.definition)
    log.info(
        "Replay as code: Skyvern workflow %s is this prompt's (fingerprint %s); its first run records the "
        "script the next ones replay",
        made.workflow_permanent_id,
        workflow.fingerprint[:16],
    )
    return made


def block_extraction(output: Any) -> Any:
    """What the prompt's block extracted: the task's return value, as a plain task run's output would be."""
    if not isinstance(output, Mapping):
        return output
    block = output.get(f"{BLOCK_LABEL}_output")
    return block.get("extracted_information") if isinstance(block, Mapping) else None


def _oldest(hook: SkyvernHook, workflow: PromptWorkflow) -> SavedWorkflow | None:
    found = [w for w in hook.list_workflows(search_key=workflow.search_key) if workflow.made_for(w)]
    found.sort(key=lambda w: (w.created_at is None, w.created_at, w.workflow_permanent_id))
    return found[0] if found else None


def _expressions(text: str) -> list[str]:
    return [match.group(1).strip() for match in EXPRESSION.finditer(text)]


def _unique_key(expression: str, taken: set[str]) -> str:
    key = re.sub(r"\W+", "_", expression).strip("_").lower()[:40] or "value"
    if not key[0].isalpha():
        key = f"p_{key}"
    unique, number = key, 2
    while unique in taken:
        unique, number = f"{key}_{number}", number + 1
    return unique


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
