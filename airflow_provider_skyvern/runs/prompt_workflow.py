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
from datetime import datetime
from typing import TYPE_CHECKING, Any

import jinja2

from airflow_provider_skyvern.exceptions import SkyvernHTTPError
from airflow_provider_skyvern.models import SavedWorkflow

if TYPE_CHECKING:
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

BLOCK_LABEL = "prompt"
"""The one block's label: the run's output is keyed ``prompt_output``."""
TITLE_MARK = "airflow-replay"
KEY_PREFIX = "airflow-provider-skyvern-replay-"
TITLE_PROMPT_CHARS = 60
MAX_REMAKES = 3
ENGINES_ON_THE_BLOCK = frozenset(
    {"skyvern-3.0", "openai-cua", "anthropic-cua", "ui-tars", "yutori-navigator"}
)
"""Engines a task block is given; skyvern-1.0 is its own agent, and skyvern-2.0 has no task block of its own
(``task_v2`` takes no extraction schema, and its replay extracts nothing in 1.0.56)."""
TAKEN_KEYS = frozenset(
    {
        BLOCK_LABEL,  # Skyvern puts the block's own data under its label in the Jinja context
        f"{BLOCK_LABEL}_output",
        *("current_item", "current_value", "current_index", "current_date", "workflow_title", "workflow_id"),
        *("workflow_permanent_id", "workflow_run_id", "workflow_run_outputs", "workflow_run_summary"),
    }
)
"""Parameter keys Skyvern 1.0.56 refuses or shadows (``RESERVED_PARAMETER_KEYS``, the block's label)."""
SKYVERN_JINJA = ("{{", "{%", "{#")
DEFAULT_ENV = jinja2.Environment()  # noqa: S701 - its lexer reads templates; it renders nothing to HTML


class NotReplayable(ValueError):
    """The prompt or url cannot become a workflow: ``field`` says which, ``problem`` what."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


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

    def made_for(self, workflow: SavedWorkflow) -> bool:
        return workflow.title.endswith(f"[{self.search_key}]") and workflow.deleted_at is None


@dataclass(frozen=True)
class Template:
    """The prompt or url as the DAG gave it: a Jinja template of Airflow's, or (``literal``) text that is not
    one (a mapped value from an upstream task, which Airflow does not render either)."""

    field: str
    text: Any
    literal: bool = False


def check_template(template: Template) -> None:
    """What parse time can say: text, a url given, and only ``{{ expressions }}`` (see :func:`plan`)."""
    if template.text is None and template.field == "url":
        raise NotReplayable(
            "url",
            "replay_as_code=True needs the page to start from: the workflow's task block opens it (a "
            "task run without one has Skyvern's AI pick it from the prompt, which a cached script cannot)",
        )
    if not isinstance(template.text, str):
        raise NotReplayable(
            template.field,
            f"replay_as_code=True makes a Skyvern workflow from the {template.field}'s text, so "
            f"it must be a string (a Jinja template is fine), got {type(template.text).__name__}",
        )
    _block_text(template, {}, DEFAULT_ENV)


def plan(
    prompt: Template,
    url: Template,
    *,
    schema: Any,
    engine: str | None,
    block_options: Mapping[str, Any],
    env: jinja2.Environment | None = None,
) -> PromptWorkflow:
    """The workflow for the unrendered ``prompt`` and ``url``; ``block_options`` are the task block's other
    fields (error codes, model, ...); ``env`` the DAG's Jinja environment (its delimiters)."""
    for template in (prompt, url):
        check_template(template)
    env = env or DEFAULT_ENV
    keys: dict[str, str] = {}  # expression -> key
    block_prompt, prompt_keys = _block_text(prompt, keys, env)
    if (not prompt_keys and not block_prompt.strip()) or (prompt_keys and not _words(prompt, env)):
        raise NotReplayable(
            "prompt",
            "replay_as_code=True needs the prompt's own words: a prompt made only of {{ expressions }} "
            "is another task every run, which one cached script cannot replay",
        )
    block_url, url_keys = _block_text(url, keys, env)
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
        # the url as the block opens it: one script per page (the prompt's parameters only change what is
        # typed or read); without parameters Skyvern keys it by the url's domain
        "cache_key": block_url if url_keys else "default",
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
    label = " ".join(str(prompt.text).split())
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


def render_parameters(
    workflow: PromptWorkflow, env: jinja2.Environment, context: Mapping[str, Any]
) -> dict[str, str]:
    """Each parameter's expression rendered as text, as a task run's prompt would show it: through the DAG's
    environment (its macros and filters) but never as a native object (``1.50`` stays ``1.50``)."""
    values = {}
    for key, expression in workflow.expressions.items():
        template = env.from_string("{{ " + expression + " }}")
        pieces = template.root_render_func(template.new_context(dict(context), shared=True))
        values[key] = "".join(_as_text(piece) for piece in pieces)
    return values


def _block_text(template: Template, keys: dict[str, str], env: jinja2.Environment) -> tuple[str, list[str]]:
    """The text as the block says it: each ``{{ expression }}`` its parameter's ``{{ key }}`` (new keys added
    to ``keys``), comments dropped, literal text kept literal for Skyvern's own Jinja; the keys it uses."""
    text = str(template.text)
    if template.literal:
        return _literal(text), []
    parts: list[str] = []
    used: list[str] = []
    try:
        env.parse(text)  # what the lexer alone lets through (an unclosed {{ )
        tokens = iter(env.lexer.tokeniter(text, None))
        for _, kind, value in tokens:
            if kind == "data":
                parts.append(_literal(value))
            elif kind == "variable_begin":
                expression = "".join(v for _, t, v in _until(tokens, "variable_end")).strip()
                if expression not in keys:
                    keys[expression] = _unique_key(expression, {*keys.values(), *TAKEN_KEYS})
                parts.append("{{ " + keys[expression] + " }}")
                used.append(keys[expression])
            elif kind in ("block_begin", "linestatement_begin"):
                raise NotReplayable(
                    template.field,
                    "replay_as_code=True turns each {{ expression }} into a workflow "
                    "parameter, but a {% statement %} cannot be one; compute the value in an upstream task or "
                    "a param instead",
                )
    except jinja2.TemplateSyntaxError as exc:
        raise NotReplayable(
            template.field, f"not a Jinja template Airflow can render ({exc.message})"
        ) from None
    return "".join(parts), list(dict.fromkeys(used))


def _until(tokens: Any, end: str) -> Any:
    for item in tokens:
        if item[1] == end:
            return
        yield item


def _words(template: Template, env: jinja2.Environment) -> bool:
    """Literal text besides the expressions."""
    return any(t == "data" and v.strip() for _, t, v in env.lexer.tokeniter(str(template.text), None))


def _literal(text: str) -> str:
    """Text Skyvern's Jinja must not read as a template (it renders a block's goal and url)."""
    return "{% raw %}" + text + "{% endraw %}" if any(mark in text for mark in SKYVERN_JINJA) else text


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
    for _ in range(MAX_REMAKES):
        if made.deleted_at is None:
            break
        # Skyvern keeps a deleted workflow's id for its key: another key, derived from the deleted one, so
        # every task that finds it deleted makes the same new one
        log.warning(
            "Skyvern workflow %s made for this prompt was deleted; making a new one (the script starts afresh)",
            made.workflow_permanent_id,
        )
        key = f"{workflow.idempotency_key}-after-{made.workflow_permanent_id}"
        made = hook.create_workflow(workflow.definition, idempotency_key=key)
    else:
        raise NotReplayable(
            "replay_as_code",
            f"the Skyvern workflows made for this prompt were deleted {MAX_REMAKES} times in a row; "
            "not making another",
        )
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
    # the list answers each workflow's latest version: its first one's time is original_created_at
    found.sort(key=lambda w: (_made_at(w) is None, _made_at(w), w.workflow_permanent_id))
    return found[0] if found else None


def _made_at(workflow: SavedWorkflow) -> datetime | None:
    return workflow.original_created_at or workflow.created_at


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
