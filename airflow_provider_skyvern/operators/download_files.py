"""SkyvernDownloadFilesOperator: have Skyvern navigate a site and download files, from a DAG.

Imported on DAG parse: module level holds only what constructing and checking the operator needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.operators.run_block import (
    COMMON_CHECKED,
    COMMON_RENDERERS,
    COMMON_TEMPLATE_FIELDS,
    SkyvernRunBlockOperatorBase,
    common_fields,
)
from airflow_provider_skyvern.requests.run_block import DownloadFilesRequest

if TYPE_CHECKING:
    from airflow_provider_skyvern.runs.kinds import RunKind

PLACEHOLDER_GOAL = "-"
"""Stands in for a templated goal at DAG parse time, so the other fields can still be checked."""


class SkyvernDownloadFilesOperator(SkyvernRunBlockOperatorBase):
    """
    Have Skyvern navigate a site and download files (``POST /v1/run/tasks/download_files``), wait for it.

    Skyvern runs it as a one-block workflow it makes for the request, so this is a workflow run
    (``wr_…``) with everything the other run operators do. The files are in the XCom ``downloaded_files``:
    a list of ``{"url", "filename", "checksum", "size"}`` (``url`` is presigned and expires, 24 h on
    Skyvern Cloud; ``checksum`` is the SHA-256). XCom also gets ``run_id``, ``status``, ``app_url``,
    ``recording_url``, ``screenshot_urls``, ``step_count``, ``failure_reason``, ``attempt`` and
    ``browser_session_id``; the return value is the run's ``output``.

    :param navigation_goal: what to do to reach and download the files, in plain words (required).
    :param download_suffix: the downloaded file's name; may hold ``{{ original_filename }}``, which Skyvern
        fills in (not an Airflow template field, so it reaches Skyvern as written).
    :param download_timeout: seconds Skyvern waits for a download to finish.
    :param max_steps_per_run: cap on AI steps for the download block (cost).
    :param url: the page to start on (http/https).
    :param webhook_url: called by Skyvern when the run ends.
    :param proxy_location: a ProxyLocation name such as ``RESIDENTIAL_GB`` or ``NONE`` (these endpoints take
        no geo target); unset, Skyvern's default (``RESIDENTIAL``) applies.
    :param totp_identifier: the identifier Skyvern matches 2FA codes pushed to it by.
    :param totp_url: an endpoint Skyvern polls for 2FA codes.
    :param browser_session_id: run in this persistent browser session (``pbs_…``), e.g. the XCom of
        :func:`~airflow_provider_skyvern.operators.browser_session.skyvern_browser_session`'s setup task.
    :param browser_profile_id: start the browser from this saved profile (``bp_…``).
    :param start_fresh_browser: start from a clean browser, no saved memory or session.
    :param browser_address: CDP address (http/https/ws/wss) of a browser of your own.
    :param extra_http_headers: headers the browser sends to every site it visits.
    :param max_screenshot_scrolling_times: how many scrolls a full-page screenshot may take.
    :param user_agent: sent as ``x-user-agent`` (never ``skyvern-ui``, which truncates outputs).
    :param wait_for_completion: wait for the run and return its output (default); False returns the run id.
    :param timeout: seconds to wait before the run is canceled and the task fails (default 1800). A
        shorter ``execution_timeout`` binds the same way, in both modes.
    :param poll_interval: the longest gap between status polls, in seconds (default 30).
    :param deferrable: wait in the triggerer instead of a worker slot (default ``[operators] default_deferrable``).
    :param reattach: a retry adopts the run an earlier try started when its id was recorded (Airflow 3.3+
        task state store). Skyvern's login and download runs cannot be found by looking, so when an
        earlier try's answer was lost the retry fails saying it could not tell whether a run was created
        instead of starting a second one (docs/reattach.md).
    :param cancel_on_kill: cancel the Skyvern run when the task is killed, marked failed/success or cleared
        while it waits (default True).
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    """

    template_fields: Sequence[str] = (*COMMON_TEMPLATE_FIELDS, "navigation_goal")
    template_fields_renderers: ClassVar[dict[str, str]] = {**COMMON_RENDERERS, "navigation_goal": "md"}
    checked_arguments: ClassVar[tuple[str, ...]] = (
        *COMMON_CHECKED,
        "navigation_goal",
        "download_suffix",
        "download_timeout",
        "max_steps_per_run",
    )

    def __init__(
        self,
        *,
        navigation_goal: str,
        download_suffix: str | None = None,
        download_timeout: float | None = None,
        max_steps_per_run: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.navigation_goal = navigation_goal
        self.download_suffix = download_suffix
        self.download_timeout = download_timeout
        self.max_steps_per_run = max_steps_per_run
        self._check_now()

    @classmethod
    def _check_given(cls, values: Mapping[str, Any]) -> None:
        _download_request(values)

    def _run_kind(self) -> RunKind:
        from airflow_provider_skyvern.runs.kinds import DownloadFilesRun

        return DownloadFilesRun(_download_request(self._values()), user_agent=self.user_agent)


def _download_request(values: Mapping[str, Any]) -> DownloadFilesRequest:
    """At DAG parse time ``values`` holds only the known ones (not templates or XComs): the others are skipped."""
    fields = common_fields(values)
    goal = values.get("navigation_goal", PLACEHOLDER_GOAL)
    if not isinstance(goal, str) or not goal.strip():
        raise check.InvalidParameter(
            "navigation_goal", "must be a non-empty string saying what to download and how to get there"
        )
    fields["navigation_goal"] = goal
    suffix = values.get("download_suffix")
    if suffix is not None:
        if not isinstance(suffix, str) or not suffix.strip():
            raise check.InvalidParameter("download_suffix", f"must be a non-empty string, got {suffix!r}")
        fields["download_suffix"] = suffix
    timeout = check.check_positive("download_timeout", values.get("download_timeout"), integer=False)
    steps = check.check_positive("max_steps_per_run", values.get("max_steps_per_run"))
    fields.update(
        {k: v for k, v in (("download_timeout", timeout), ("max_steps_per_run", steps)) if v is not None}
    )
    try:
        return DownloadFilesRequest(**fields)
    except ValidationError as exc:
        raise check.invalid_from(exc) from None
