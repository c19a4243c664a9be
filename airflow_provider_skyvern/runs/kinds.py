"""What the shared run machinery (:mod:`.claim`) needs to know about one kind of Skyvern run.

A kind holds the rendered request and says how to start it, how to fingerprint it for the submission
ledger, and where (if anywhere) Skyvern keeps a tag a later try could search for. Everything else - remembering,
reattaching, waiting, cancelling, completing - is the same for every kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from airflow_provider_skyvern.models import (
    DownloadFilesRequest,
    LoginRequest,
    RunResponse,
    TaskRunRequest,
    WorkflowRunRequest,
)
from airflow_provider_skyvern.runs.ledger import Submission, TagKeptIn, tagged_metadata, tagged_title

if TYPE_CHECKING:
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook


class RunKind(ABC):
    """One rendered, checked request of some kind of run."""

    @property
    def tag_kept_in(self) -> TagKeptIn | None:
        """Where Skyvern keeps the tag :meth:`tagged` adds, so a later try can find the run by it."""
        return self.submission("").tag_kept_in

    @property
    def keeps_title(self) -> bool:
        """Without a task state store a later try can find the run by its tag: only a title is read back
        from the run itself (a ``run_metadata`` tag is the server's filter, not proof)."""
        return self.tag_kept_in == "title"

    @abstractmethod
    def submission(self, tag: str) -> Submission:
        """The ledger record of submitting this request for the task instance tagged ``tag``."""

    @abstractmethod
    def tagged(self, label: str, tag: str) -> RunKind:
        """The request to send: carrying the tag wherever Skyvern keeps it (``label`` is the default title)."""

    @abstractmethod
    def start(self, hook: SkyvernHook) -> RunResponse:
        """One run-creating POST."""


@dataclass(frozen=True)
class TaskRun(RunKind):
    request: TaskRunRequest
    user_agent: str | None = None

    def submission(self, tag: str) -> Submission:
        return Submission.of(self.request, tag)

    def tagged(self, label: str, tag: str) -> TaskRun:
        title = tagged_title(self.request.title, label, tag)
        return replace(self, request=self.request.model_copy(update={"title": title}))

    def start(self, hook: SkyvernHook) -> RunResponse:
        return hook.run_task(self.request, user_agent=self.user_agent)


@dataclass(frozen=True)
class WorkflowRun(RunKind):
    """Skyvern shows a workflow run under the workflow's own title; the tag rides in ``run_metadata``."""

    request: WorkflowRunRequest
    user_agent: str | None = None
    max_steps_override: int | None = None
    template: bool | None = None
    tag: str | None = None
    """Set by :meth:`tagged`: the request's ``run_metadata`` then carries it."""

    @property
    def tag_kept_in(self) -> TagKeptIn | None:
        return "run_metadata" if self.tag is not None else super().tag_kept_in

    def submission(self, tag: str) -> Submission:
        return Submission.of_workflow(
            self.request, tag, max_steps_override=self.max_steps_override, template=self.template
        )

    def tagged(self, label: str, tag: str) -> WorkflowRun:
        if self.tag_kept_in is None:  # the user's run_metadata has no room (or already has our key)
            return self
        metadata = tagged_metadata(self.request.run_metadata, tag)
        return replace(self, request=self.request.model_copy(update={"run_metadata": metadata}), tag=tag)

    def start(self, hook: SkyvernHook) -> RunResponse:
        return hook.run_workflow(
            self.request,
            user_agent=self.user_agent,
            max_steps_override=self.max_steps_override,
            template=self.template,
        )


@dataclass(frozen=True)
class LoginRun(RunKind):
    """``POST /v1/run/tasks/login``: a workflow run of a workflow made for it, which keeps no title and
    echoes nothing a later try could recognise it by (:attr:`~.reattach.Submission.findable`)."""

    request: LoginRequest
    user_agent: str | None = None

    def submission(self, tag: str) -> Submission:
        return Submission.of_run_block(self.request, tag, "login")

    def tagged(self, label: str, tag: str) -> LoginRun:
        return self

    def start(self, hook: SkyvernHook) -> RunResponse:
        return hook.run_login(self.request, user_agent=self.user_agent)


@dataclass(frozen=True)
class DownloadFilesRun(RunKind):
    """``POST /v1/run/tasks/download_files``: as :class:`LoginRun`, a workflow run nothing can find again."""

    request: DownloadFilesRequest
    user_agent: str | None = None

    def submission(self, tag: str) -> Submission:
        return Submission.of_run_block(self.request, tag, "download_files")

    def tagged(self, label: str, tag: str) -> DownloadFilesRun:
        return self

    def start(self, hook: SkyvernHook) -> RunResponse:
        return hook.run_download_files(self.request, user_agent=self.user_agent)
