"""Finding the Skyvern run an earlier try of the same task instance started, so it is not paid for twice.

Two memories, because Skyvern has no idempotency key:

* Airflow 3.3+: the task state store keeps the run id across tries; it is written as soon as the run
  exists and forgotten once the run's result was handed on or the run ended badly.
* every version: the run's title carries a tag derived from (dag_id, task_id, run_id, map_index), and
  ``GET /v1/runs?search_key=<tag>`` finds runs started by a try that died before the store was written,
  or by a POST whose answer was lost (timeout, 500 after the run was created).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_fixed

from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import RunListItem

STATE_KEY = "skyvern_run_id"
RECONCILE_ATTEMPTS = 3
RECONCILE_WAIT_SECONDS = 2.0


def run_tag(ti: Any) -> str:
    """Stable across tries of one task instance, different for every other one; >= 3 chars for search."""
    identity = "\x1f".join(
        str(part) for part in (ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))
    )
    return "airflow-" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def tagged_title(title: str | None, default: str, tag: str) -> str:
    """The user's title is kept as is; the tag is appended in brackets."""
    return f"{title or default} [{tag}]"


class RunMemory:
    """The run id of this task instance in the task state store (Airflow 3.3+); a no-op where absent."""

    def __init__(self, context: Any) -> None:
        self._store = context.get("task_state_store") if hasattr(context, "get") else None

    @property
    def available(self) -> bool:
        return self._store is not None

    def recall(self) -> str | None:
        if self._store is None:
            return None
        value = self._store.get(STATE_KEY)
        return value if isinstance(value, str) and value else None

    def remember(self, run_id: str) -> None:
        if self._store is not None:
            self._store.set(STATE_KEY, run_id)

    def forget(self) -> None:
        if self._store is not None:
            self._store.delete(STATE_KEY)


def tagged_runs(hook: SkyvernHook, tag: str) -> list[RunListItem]:
    """Runs whose title carries ``tag``, newest first (Skyvern's order), filtered exactly on the title."""
    return [item for item in hook.list_runs(search_key=tag, page_size=20) if tag in (item.title or "")]


def find_new_run(hook: SkyvernHook, tag: str, known_run_ids: Sequence[str]) -> str | None:
    """After an ambiguous POST failure: the run it created, if any; Skyvern may list it a moment later."""
    known = set(known_run_ids)

    def newest_unknown() -> str | None:
        fresh = [item.run_id for item in tagged_runs(hook, tag) if item.run_id not in known]
        return fresh[0] if fresh else None

    retrying = Retrying(
        retry=retry_if_result(lambda run_id: run_id is None),
        stop=stop_after_attempt(RECONCILE_ATTEMPTS),
        wait=wait_fixed(RECONCILE_WAIT_SECONDS),
        sleep=hook._sleep,
        retry_error_callback=lambda state: None,
    )
    result: str | None = retrying(newest_unknown)
    return result
