"""A browser session's life, kept exactly once like a run's: recorded before the create is sent, completed
with the session's id after, so a retry reuses the session instead of opening (and paying for) a second.

Skyvern keeps nothing on a session that could carry this task's tag, so after a lost create answer the only
session a retry may take is the one opened while that create was in flight, with the timeout it asked for,
when it is the only such session; anything else is "could not tell", and no second session is opened.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import BrowserSession
from airflow_provider_skyvern.runs.ledger import RunStateUnknown, run_tag
from airflow_provider_skyvern.runs.moments import unix, utc_text

SESSION_STATE_KEY = "skyvern_browser_session_kept_for_retries"
"""The session a retry of the setup task reuses; deleting it while the task can retry opens a second one."""
CLOSED_STATUSES = frozenset({"failed", "completed", "timeout"})
"""Skyvern 1.0.56's ``PersistentBrowserSessionStatus`` values of a session that can no longer be used."""
SKEW_SECONDS = 5.0
"""Skyvern's ``created_at`` may trail this worker's clock this much when its answer carried no ``Date``."""
CLOCK_FLOOR_SECONDS = 1.0
"""Added to the measured clock difference: ``created_at`` and ``Date`` may come from two server hosts."""
SETTLE_SECONDS = 30.0
"""After the create's own timeout plus this, a session it opened is listed."""


class SessionRecord(BaseModel):
    version: int = 1
    phase: Literal["creating", "created"] = "creating"
    tag: str
    since: float
    """Unix time just before the create was sent."""
    timeout: int
    """The minutes asked for: a session opened for this request says the same."""
    browser_session_id: str | None = None


class SessionLedger:
    """The :class:`SessionRecord` of a setup task instance in the task state store (Airflow 3.3+)."""

    def __init__(self, context: Any, hook: SkyvernHook, log: Any) -> None:
        self._store = context.get("task_state_store") if hasattr(context, "get") else None
        self._tag = run_tag(context)
        self.hook = hook
        self.log = log

    def earlier_session(self) -> BrowserSession | None:
        """The session an earlier try of this clear generation opened and that is still open, if any."""
        record = self._read()
        if record is None or record.tag != self._tag:
            return None  # none, or one of an earlier clear generation, whose teardown was cleared with it
        if record.browser_session_id is not None:
            session = self.hook.get_browser_session(record.browser_session_id)
            if session.status in CLOSED_STATUSES:
                self.log.info(
                    "Skyvern browser session %s of an earlier try is %s: opening a new one",
                    session.browser_session_id,
                    session.status,
                )
                return None
            self.log.info(
                "Reusing Skyvern browser session %s opened by an earlier try", session.browser_session_id
            )
            return session
        return self._opened_by(record)

    def opened_while(self, since: float, until: float, timeout: int) -> list[BrowserSession]:
        """The listed sessions with ``timeout`` opened between ``since`` and ``until`` (this worker's clock),
        compared in the server's clock as measured from the ``Date`` of the list's answer (one request)."""
        listed = self.hook.list_browser_sessions()
        clock = self.hook.server_clock
        if clock is None:
            start, end = since - SKEW_SECONDS, until + SKEW_SECONDS
        else:
            start = since - clock.ahead_at_most - CLOCK_FLOOR_SECONDS
            end = until - clock.ahead_at_least + CLOCK_FLOOR_SECONDS
        return [s for s in listed if start <= unix(s.created_at) <= end and s.timeout == timeout]

    def _opened_by(self, record: SessionRecord) -> BrowserSession | None:
        request_timeout = self.hook.settings.request_timeout
        window_ends = record.since + request_timeout + SKEW_SECONDS
        candidates = self.opened_while(record.since, record.since + request_timeout, record.timeout)
        if len(candidates) == 1 and candidates[0].status not in CLOSED_STATUSES:
            (session,) = candidates
            self.log.warning(
                "Skyvern browser session %s is the only one opened while an earlier try's create was in flight "
                "(its answer was lost): reusing it",
                session.browser_session_id,
            )
            return session
        if not candidates and time.time() >= window_ends + SETTLE_SECONDS:
            return None  # nothing was opened: a new create is safe
        when = utc_text(record.since)
        if candidates:
            ids = ", ".join(f"{s.browser_session_id} ({s.status})" for s in candidates[:5])
            found = f"{len(candidates)} sessions were opened while it was in flight ({ids})"
        else:
            found = f"none is listed yet; a session it opened would be listed by {utc_text(window_ends + SETTLE_SECONDS)}"
        raise RunStateUnknown(
            f"Could not tell whether an earlier try's create ({when}) opened a Skyvern browser session: {found}; "
            "not opening another while that is unknown; the next try looks again"
        )

    def creating(self, timeout: int) -> None:
        self._write(SessionRecord(tag=self._tag, since=time.time(), timeout=timeout))

    def created(self, session: BrowserSession) -> None:
        record = self._read()
        if record is not None:
            self._write(
                record.model_copy(
                    update={"phase": "created", "browser_session_id": session.browser_session_id}
                )
            )

    def forget(self) -> None:
        """The create was refused: nothing was opened."""
        if self._store is not None:
            self._store.delete(SESSION_STATE_KEY)

    def _read(self) -> SessionRecord | None:
        value = self._store.get(SESSION_STATE_KEY) if self._store is not None else None
        if value is None:
            return None
        try:
            return SessionRecord.model_validate(value)
        except ValidationError:
            raise RunStateUnknown(
                f"the task state store holds an unreadable {SESSION_STATE_KEY!r}; delete it once you know no "
                "Skyvern browser session of this task is still open"
            ) from None

    def _write(self, record: SessionRecord) -> None:
        if self._store is not None:
            self._store.set(SESSION_STATE_KEY, record.model_dump(mode="json"))
