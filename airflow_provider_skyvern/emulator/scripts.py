"""Replay as code: how Skyvern 1.0.56 picks agent or cached script for a workflow run, and the scripts.

What the real server does (``skyvern/forge/sdk/workflow/service.py`` and
``skyvern/services/workflow_script_service.py``; docs/emulator.md "Replay as code" has the citations):

* A run is a code run when its ``run_with`` is ``code``, or it has none and the workflow's is
  (``WorkflowService.should_run_script``). The workflow's value is copied onto the run at creation, so
  ``GET /v1/runs/{id}`` shows the effective ``run_with``.
* The cache key value is the workflow's ``cache_key`` template rendered over the run's parameters;
  ``default`` or empty gets ``:<domain of the first block url>``, and a code run of a workflow with
  ``code_version >= 2`` (what a new workflow gets) gets ``:v2`` (``resolve_cache_key_value``).
* No script for that value: the run runs as an agent and, once completed (or terminated with
  ``generate_script_on_terminal``), a script is generated for it, without the LLM
  (``generate_script_if_needed``). Agent runs generate one too, under their key without ``:v2``.
* A script for that value: the run replays it and ``script_run`` says which
  (``_mark_script_run_loaded``); when a block's script fails the agent takes over
  (``ai_fallback_triggered`` true; no new revision: inline regeneration is disabled in 1.0.56) unless the
  run's own ``ai_fallback`` is false (``_execute_single_block``'s gate reads the run's value only, so a
  workflow's false alone does not stop it); then the run fails.

The emulator decides all this when a run is created, from the runs before it, so every run's state stays
a pure function of time: the scripts that exist at time t are those recorded by runs that had ended by t.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

RUN_WITH_VALUES = ("agent", "code")
LEGACY_RUN_WITH = {"ai": "agent", "code_v2": "code"}
TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
REPLAY_STEPS = 2
"""Steps of a replay: the cached code runs the blocks without asking the LLM what to do next."""
REPLAY_SHARE = 0.4
"""A replay takes this share of the agent run's time (the real one took 9.7 s against 13.3 s)."""
SCRIPT_FAILURE = "Block result is None"
"""The run's ``failure_reason`` when a block's script fails and the run's ``ai_fallback`` is false: the
block keeps no result (service.py ``_execute_single_block``; seen on the real server)."""

SCRIPT_BLOCK_ERROR = (
    "Input text failed: no selector was provided and no intention was given to locate the element"
)
"""What the failed block's output says: the real cached script's error on a page without its element."""

if TYPE_CHECKING:
    from airflow_provider_skyvern.emulator.lifecycle import Plan

Mode = Literal["agent", "generate", "replay", "fallback", "script_failed"]


def normalize_run_with(value: Any) -> str:
    """``validators.normalize_run_with``: None and unknown values are ``agent``; legacy names mapped."""
    if value is None:
        return "agent"
    text = str(value)
    text = LEGACY_RUN_WITH.get(text, text)
    return text if text in RUN_WITH_VALUES else "agent"


@dataclass(frozen=True)
class ScriptSettings:
    """A workflow's code settings as ``POST /v1/workflows`` stores them (1.0.56 defaults)."""

    run_with: str = "agent"
    ai_fallback: bool = True
    cache_key: str | None = "default"
    adaptive_caching: bool = False
    code_version: int | None = 2
    """The database's server default: every new workflow is "code 2.0" unless it says 1."""
    generate_script_on_terminal: bool = False
    first_block_url: str | None = None

    @classmethod
    def of(cls, definition: dict[str, Any]) -> ScriptSettings:
        blocks = (definition.get("workflow_definition") or {}).get("blocks") or []
        url = next((b["url"] for b in blocks if isinstance(b, dict) and isinstance(b.get("url"), str)), None)
        version = definition.get("code_version", 2)
        return cls(
            run_with=normalize_run_with(definition.get("run_with")),
            ai_fallback=bool(definition.get("ai_fallback", True)),
            cache_key=definition.get("cache_key", "default"),
            adaptive_caching=bool(definition.get("adaptive_caching", False)),
            code_version=None if version is None else int(version),
            generate_script_on_terminal=bool(definition.get("generate_script_on_terminal", False)),
            first_block_url=url,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_with": self.run_with,
            "ai_fallback": self.ai_fallback,
            "cache_key": self.cache_key,
            "adaptive_caching": self.adaptive_caching,
            "code_version": self.code_version,
            "generate_script_on_terminal": self.generate_script_on_terminal,
        }

    def adaptive(self, run_with: str) -> bool:
        """``is_adaptive_caching_from_effective_state``: only code runs, by ``code_version`` first."""
        if run_with != "code":
            return False
        if self.code_version is not None:
            return self.code_version >= 2
        return self.adaptive_caching

    def cache_key_value(self, parameters: dict[str, Any], run_with: str) -> str:
        """``resolve_cache_key_value`` (tolerant mode): ``{{ name }}`` rendered, an unknown name empty."""
        rendered = TEMPLATE.sub(lambda m: _text(parameters.get(m.group(1))), self.cache_key or "")
        if rendered in ("default", ""):
            rendered_url = TEMPLATE.sub(
                lambda m: _text(parameters.get(m.group(1))), self.first_block_url or ""
            )
            domain = urllib.parse.urlsplit(rendered_url).hostname or ""
            if domain:
                rendered = f"{rendered}:{domain}" if rendered else domain
        if self.adaptive(run_with):
            rendered = f"{rendered}:v2" if rendered else "v2"
        return rendered


def _text(value: Any) -> str:
    """How Jinja prints a value: None (undefined) as nothing, booleans as Python writes them."""
    return "" if value is None else str(value)


@dataclass(frozen=True)
class ScriptRevision:
    """One revision of a cached script: what ``script_run`` names, and the run that recorded it."""

    script_id: str
    script_revision_id: str
    version: int
    workflow_permanent_id: str
    cache_key_value: str
    run_id: str
    created: float

    def script_run(self, ai_fallback_triggered: bool) -> dict[str, Any]:
        return {
            "ai_fallback_triggered": ai_fallback_triggered,
            "script_id": self.script_id,
            "script_revision_id": self.script_revision_id,
        }

    def to_json(self, created_at: str | None) -> dict[str, Any]:
        return {
            "script_id": self.script_id,
            "script_revision_id": self.script_revision_id,
            "version": self.version,
            "workflow_permanent_id": self.workflow_permanent_id,
            "cache_key_value": self.cache_key_value,
            "run_id": self.run_id,
            "created_at": created_at,
        }


@dataclass(frozen=True)
class ScriptPlan:
    """What a workflow run does with scripts, decided when it is created."""

    mode: Mode
    run_with: str
    """The run's ``run_with``: the request's, else the workflow's (copied onto the run at creation)."""
    ai_fallback: bool | None
    """The run's own ``ai_fallback`` as the response shows it: the request's (forced true for a code run of
    a code 2.0 workflow), None when the request had none (the workflow's then applies)."""
    cache_key_value: str
    loaded: ScriptRevision | None = None
    """The revision it replays (replay, fallback, script_failed)."""
    generate_on_terminal: bool = False

    @property
    def records(self) -> bool:
        """Whether it may record a script (the first one for its key) when it ends. A fallback records no
        new revision: 1.0.56 disabled that (``script_service._regenerate_script_block_after_ai_fallback``
        returns at once, "skipping script regeneration after AI fallback")."""
        return self.mode in ("agent", "generate")


def plan_scripts(
    settings: ScriptSettings,
    request: dict[str, Any],
    page_changed: bool,
    lookup: Callable[[str], ScriptRevision | None],
) -> ScriptPlan:
    """Agent, generate, replay, fallback or a failed replay, as 1.0.56 would run this request.

    ``lookup`` gives the latest revision for a cache key value when the run starts (None: a miss).
    """
    given = request.get("run_with")
    run_with = settings.run_with if given is None else normalize_run_with(given)
    ai_fallback = request.get("ai_fallback")
    code_version = settings.code_version
    if code_version is None and settings.adaptive_caching:
        code_version = 2
    if ai_fallback is False and (code_version or 0) >= 2 and run_with == "code":
        # setup_workflow_run copies the workflow's run_with onto the request first, then forces the fallback
        ai_fallback = True
    key = settings.cache_key_value(request.get("parameters") or {}, run_with)
    common: dict[str, Any] = {
        "run_with": run_with,
        "ai_fallback": ai_fallback,
        "cache_key_value": key,
        "generate_on_terminal": settings.generate_script_on_terminal,
    }
    if run_with != "code":
        return ScriptPlan("agent", **common)
    existing = lookup(key)
    if existing is None:
        return ScriptPlan("generate", **common)
    if not page_changed:
        return ScriptPlan("replay", loaded=existing, **common)
    if (
        ai_fallback is not False
    ):  # only the run's own false stops the agent (service.py, ai_fallback is False)
        return ScriptPlan("fallback", loaded=existing, **common)
    return ScriptPlan("script_failed", loaded=existing, **common)


def timed(plan: Plan, script: ScriptPlan) -> Plan:
    """The run's clock for its script mode: a replay is short and takes few steps; a fallback takes the
    replay's time and then the agent's, with the agent's steps (1.0.56 counted 2 steps for a 2-action block
    both when the agent recorded it and when it took over from the failed script); a replay that may not
    fall back fails after the script's time."""
    steps, seconds = min(plan.steps, REPLAY_STEPS), plan.seconds * REPLAY_SHARE
    if script.mode == "replay":
        return replace(plan, steps=steps, seconds=seconds)
    if script.mode == "fallback":
        return replace(plan, seconds=plan.seconds * (1 + REPLAY_SHARE))
    if script.mode == "script_failed":
        outcome = "failed" if plan.outcome == "completed" else plan.outcome
        return replace(plan, outcome=outcome, steps=steps, seconds=seconds)
    return plan


def fallback_at(started: float, finished: float) -> float:
    """When a fallback run's script fails and the agent takes over: after the replay's share of its time."""
    return started + (finished - started) * REPLAY_SHARE / (1 + REPLAY_SHARE)
