"""Looking among Skyvern's runs for the one a submission created, when its POST's answer was lost.

Never adopt what cannot be proven this task instance's:

* a kind whose tag Skyvern keeps (a title-keeping engine's title, a workflow run's ``run_metadata``) is
  listed by that tag, so only this task instance's runs are ever read;
* a kind that keeps no tag (skyvern-2.0 tasks; a workflow run whose ``run_metadata`` had no room) can only
  be told by *when* it was created and *what* it echoes: a run is adopted only if it was created after the
  POST began (in the server's clock, measured from its ``Date`` header, not a flat allowance) and it is
  the only run with this request created then. Anything else is "could not tell": nothing is started.

One look costs at most :data:`MAX_LOOK_REQUESTS` requests, whatever else the organisation runs: one list
filtered on the server (tag, run type, workflow), its rows compared first (type, workflow, created_at),
and only a plausible candidate read with GET. A candidate that cannot be read is "unknown", never a
failure of the try on its own account.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_provider_skyvern.exceptions import SkyvernError, SkyvernHTTPError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import RunListItem, RunResponse, RunType
from airflow_provider_skyvern.runs.ledger import (
    RUN_TAG_KEY,
    UNRECOGNISABLE,
    RunStateUnknown,
    Submission,
)
from airflow_provider_skyvern.runs.moments import unix

CLOCK_FLOOR_SECONDS = 1.0
"""Added to the measured clock difference: ``created_at`` and ``Date`` may come from two server hosts."""
SETTLE_SECONDS = 120.0
"""After a POST's own timeout plus this, a run it created is listed (a v1 run without url asks the LLM
inside the POST, so its row can appear seconds after the client gave up)."""
LIST_PAGE_SIZE = 100  # Skyvern's maximum
MAX_LOOK_REQUESTS = 5
"""Requests one look may send (list pages and candidate GETs together); retries of one are not counted."""
CANDIDATE_READ_SECONDS = 15.0
"""How long one candidate's GET may take, its retries included."""
RECONCILE_ATTEMPTS = 4
RECONCILE_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class Window:
    """When, in the server's clock (Unix time), a run the submission created can have been created."""

    start: float
    end: float
    measured: bool
    """False: the server sent no ``Date``, so its clock could not be compared with this worker's."""

    def holds(self, item: RunListItem) -> bool:
        return self.start <= _created_at(item) <= self.end


@dataclass
class Look:
    """One look's requests, counted against :data:`MAX_LOOK_REQUESTS`."""

    sent: int = 0
    read_failures: list[str] = field(default_factory=list)

    @property
    def left(self) -> int:
        return MAX_LOOK_REQUESTS - self.sent


@dataclass
class RunFinder:
    """Finds the run a submission created, through what the real server can filter and echo."""

    hook: SkyvernHook
    sleep: Callable[[float], None]
    unmeasured_skew: float = 300.0
    """Without a ``Date`` header: how far apart the clocks may be when concluding that none was created."""

    def created_by(self, submission: Submission) -> RunResponse | None:
        """The run ``submission`` created, or None when none is listed; RunStateUnknown when it could not
        tell (more than one candidate, one that cannot be read, one that cannot be proven this task's)."""
        if not submission.findable:
            raise RunStateUnknown(UNRECOGNISABLE)
        look = Look()
        listed = self._list(submission, look)
        window = self._window(submission)
        candidates = [item for item in listed if window.holds(item) and _may_be(item, submission)]
        if not candidates:
            return None
        if submission.tag_kept_in != "title" and not window.measured:
            raise RunStateUnknown(
                f"{_runs(len(candidates))} of this kind created around then, and Skyvern's answer carried no "
                "Date header to compare its clock with this worker's"
            )
        if len(candidates) > look.left:
            raise RunStateUnknown(
                f"{_runs(len(candidates))} that could be this submission's were created around then; "
                f"not reading more than {look.left} of them"
            )
        matches = [run for run in (self._read(item, look) for item in candidates) if run is not None]
        ours = [run for run in matches if submission.describes(run)]
        if look.read_failures and len(ours) <= 1:
            raise RunStateUnknown(
                f"{_runs(len(look.read_failures))} that could be this submission's could not be read "
                f"({'; '.join(look.read_failures)})"
            )
        if len(ours) > 1:
            ids = ", ".join(run.run_id for run in ours[:5])
            raise RunStateUnknown(f"{len(ours)} Skyvern runs ({ids}) match this submission's request")
        return ours[0] if ours else None

    def tagged(self, submission: Submission) -> list[RunListItem]:
        """Listed runs carrying the submission's tag where Skyvern keeps it, newest first (one request)."""
        if submission.tag_kept_in == "run_metadata":
            return self.hook.list_runs(
                run_types=[RunType.workflow_run],
                tags=[f"{RUN_TAG_KEY}:{submission.tag}"],
                search_key=submission.search_key,
                page_size=LIST_PAGE_SIZE,
            )
        listed = self.hook.list_runs(search_key=submission.tag, page_size=LIST_PAGE_SIZE)
        return [item for item in listed if submission.tag in (item.title or "")]

    def settles_at(self, submission: Submission, request_timeout: float) -> float:
        """This worker's time by which any run the POST created is listed."""
        return submission.since + request_timeout + SETTLE_SECONDS

    def settled(self, submission: Submission, request_timeout: float) -> bool:
        return time.time() >= self.settles_at(submission, request_timeout)

    def reconcile(self, submission: Submission) -> RunResponse | None:
        """Right after an ambiguous POST: a few looks, since Skyvern may list the run a moment later."""
        for attempt in range(RECONCILE_ATTEMPTS):
            found = self.created_by(submission)
            if found is not None or attempt == RECONCILE_ATTEMPTS - 1:
                return found
            self.sleep(RECONCILE_WAIT_SECONDS)
        return None  # pragma: no cover - the loop always returns

    # ---- one look ---------------------------------------------------------------------------------------

    def _list(self, submission: Submission, look: Look) -> list[RunListItem]:
        """
        The rows to compare, narrowed by the tag where Skyvern keeps it. A title is in the row itself, so
        the tag is proven; a ``run_metadata`` tag is only the server's filter (a server that ignored the
        ``tags`` parameter would list every run of the workflow), so those rows still pass the rule for
        kinds that keep no tag: created after the POST began, and the only one with this request.
        """
        if submission.tag_kept_in is not None:
            try:
                look.sent += 1
                items = self.tagged(submission)
            except SkyvernHTTPError as exc:
                # A server that refuses the tags filter (Skyvern Cloud gates it per organisation: 403
                # "Workflow tagging is not enabled"): the run is told as a kind that keeps no tag.
                if submission.tag_kept_in != "run_metadata" or exc.http_status not in (400, 403, 422):
                    raise
            else:
                self._check_complete(items, submission)
                return items
        look.sent += 1
        run_types = [RunType.workflow_run] if submission.is_workflow else [RunType.task_v2]
        items = self.hook.list_runs(
            search_key=submission.search_key, run_types=run_types, page_size=LIST_PAGE_SIZE
        )
        self._check_complete(items, submission)
        return items

    def _check_complete(self, items: list[RunListItem], submission: Submission) -> None:
        """One page must reach back past the window's start, or some candidates were not seen."""
        if len(items) < LIST_PAGE_SIZE:
            return
        if _created_at(items[-1]) >= self._window(submission).start:
            raise RunStateUnknown(
                f"more than {LIST_PAGE_SIZE} Skyvern runs of this kind were created around the submission; "
                "could not look through them all"
            )

    def _window(self, submission: Submission) -> Window:
        timeout = self.hook.settings.request_timeout
        clock = self.hook.server_clock
        if clock is None:
            slack = self.unmeasured_skew
            return Window(submission.since - slack, self.settles_at(submission, timeout) + slack, False)
        return Window(
            submission.since - clock.ahead_at_most - CLOCK_FLOOR_SECONDS,
            self.settles_at(submission, timeout) - clock.ahead_at_least + CLOCK_FLOOR_SECONDS,
            True,
        )

    def _read(self, item: RunListItem, look: Look) -> RunResponse | None:
        look.sent += 1
        try:
            return self.hook.get_run(item.run_id, deadline=time.time() + CANDIDATE_READ_SECONDS)
        except SkyvernError as exc:
            look.read_failures.append(f"{item.run_id}: {exc}")
            return None


def _runs(count: int) -> str:
    return f"{count} Skyvern run{'s' if count != 1 else ''}"


def _created_at(item: RunListItem) -> float:
    return unix(item.created_at)


def _may_be(item: RunListItem, submission: Submission) -> bool:
    """The listed row's own fields agree with the submission: its type, workflow and tag."""
    if submission.is_workflow:  # a workflow run of that workflow
        return item.task_run_type.value == "workflow_run" and item.workflow_permanent_id in (
            None,
            submission.search_key,
        )
    if submission.tag_kept_in == "title":
        return submission.tag in (item.title or "")
    return item.task_run_type.value == "task_v2"
