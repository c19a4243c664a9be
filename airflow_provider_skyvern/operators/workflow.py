"""SkyvernRunWorkflowOperator: run a saved Skyvern workflow (agent) with parameters from a DAG.

Imported on every DAG parse (through :mod:`.skyvern`): module level holds only what constructing and
checking the operator needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.compat import conf
from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.operators.base import RUN_TEMPLATE_FIELDS, SkyvernRunOperatorBase
from airflow_provider_skyvern.requests.workflow import WorkflowRunRequest

if TYPE_CHECKING:
    from airflow_provider_skyvern.models import RunResponse
    from airflow_provider_skyvern.runs.kinds import RunKind


class SkyvernRunWorkflowOperator(SkyvernRunOperatorBase):
    """
    Start a saved Skyvern workflow (``POST /v1/run/agents``), wait for it, return its output.

    The return value (XCom ``return_value``) is the run's ``output``: a dict keyed by
    ``<block label>_output`` plus Skyvern's aggregated ``extracted_information``. XCom also gets
    ``block_outputs`` (the same outputs keyed by block label), ``attempt``, ``run_id``, ``status``,
    ``app_url``, ``recording_url``, ``screenshot_urls``, ``downloaded_files``, ``step_count`` and
    ``failure_reason``. A workflow with a retry policy that reports a final status with ``retry_pending``
    is still running: the task waits for the attempt that really ends it.

    :param workflow_id: the workflow's permanent id (``wpid_…``), as shown in Skyvern's UI.
    :param parameters: the workflow's input parameters by key (templated; values are type-checked by
        Skyvern, a missing required one is refused).
    :param title: sent as given; Skyvern 1.0.56 shows the workflow's own title instead.
    :param proxy_location: a ProxyLocation name, a geo target dict, or ``{"url": ...}``; left unset, it is
        sent as ``null`` so the workflow's saved proxy location applies (Skyvern reads a missing one as
        ``RESIDENTIAL``).
    :param webhook_url: called by Skyvern when the run ends (overrides the workflow's webhook).
    :param totp_identifier: the identifier Skyvern matches 2FA codes pushed to it by.
    :param totp_url: an endpoint Skyvern polls for 2FA codes.
    :param browser_session_id: run in this persistent browser session (``pbs_…``).
    :param browser_profile_id: start the browser from this saved profile (``bp_…``).
    :param reuse_browser_session: keep the browser session of the workflow's previous run.
    :param start_fresh_browser: start from a clean browser, no saved memory or session.
    :param max_screenshot_scrolls: how many scrolls a full-page screenshot may take.
    :param extra_http_headers: headers the browser sends to every site it visits.
    :param browser_address: CDP address (http/https/ws/wss) of a browser of your own.
    :param ai_fallback: let a cached script fall back to the AI agent when it fails.
    :param run_with: ``agent`` or ``code`` (unset: the workflow's setting). ``code`` replays the script
        Skyvern cached from an earlier agent run of the same cache key (the first run records it); XCom
        ``script_run`` says what happened (``ai_fallback_triggered``, ``script_id``, ``script_revision_id``;
        None for an agent run) and the log says it in words.
    :param on_ai_fallback: when the AI took over from the cached script (the page changed): ``allow`` (the
        default: the log says so), ``warn`` (a warning), ``fail`` (the task fails, its XComs pushed). XCom
        ``ai_fallback_streak`` counts the DAG runs in a row where it did; from 2 the log says to review the
        script.
    :param run_metadata: string key/value tags on the run, for filtering in Skyvern.
    :param max_elapsed_time_minutes: Skyvern ends the run ``timed_out`` after this (1-480; server default 240).
    :param browser_type: ``msedge``, ``chrome`` or ``stealth-chromium`` (unset: the workflow's setting).
    :param max_steps_override: cap on AI steps per block, sent as the ``x-max-steps-override`` header.
    :param template: run a workflow template (``?template=true``) rather than one of your own.
    :param user_agent: sent as ``x-user-agent`` (never ``skyvern-ui``, which truncates outputs).
    :param wait_for_completion: wait for the run and return its output (default); False returns the run id.
    :param timeout: seconds to wait before the run is canceled and the task fails (default 3600). A
        shorter ``execution_timeout`` binds the same way, in both modes.
    :param poll_interval: the longest gap between status polls, in seconds (default 30); polls adapt to
        the run's age as for the task operator.
    :param deferrable: wait in the triggerer instead of a worker slot (default ``[operators] default_deferrable``).
    :param reattach: a retry adopts the run an earlier try of this task instance started (Airflow 3.3+
        task state store; see docs/reattach.md) instead of paying for a second one.
    :param cancel_on_kill: cancel the Skyvern run when the task is killed, marked failed/success or cleared
        while it waits (default True).
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    """

    template_fields: Sequence[str] = (
        "workflow_id",
        "parameters",
        "title",
        "proxy_location",
        "webhook_url",
        "totp_identifier",
        "totp_url",
        "browser_session_id",
        "browser_profile_id",
        "extra_http_headers",
        "browser_address",
        "run_with",
        "run_metadata",
        "browser_type",
        "user_agent",
        *RUN_TEMPLATE_FIELDS,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "parameters": "json",
        "proxy_location": "json",
        "extra_http_headers": "json",
        "run_metadata": "json",
    }
    checked_arguments: ClassVar[tuple[str, ...]] = (
        *("workflow_id", "parameters", "title", "proxy_location", "webhook_url", "totp_identifier"),
        *("totp_url", "browser_session_id", "browser_profile_id", "reuse_browser_session"),
        *("start_fresh_browser", "max_screenshot_scrolls", "extra_http_headers", "browser_address"),
        *("ai_fallback", "run_with", "run_metadata", "max_elapsed_time_minutes", "browser_type"),
        *("max_steps_override", "template", "user_agent", "timeout", "poll_interval", "on_ai_fallback"),
    )

    def __init__(
        self,
        *,
        workflow_id: str,
        parameters: dict[str, Any] | str | None = None,
        title: str | None = None,
        proxy_location: str | dict[str, Any] | None = None,
        webhook_url: str | None = None,
        totp_identifier: str | None = None,
        totp_url: str | None = None,
        browser_session_id: str | None = None,
        browser_profile_id: str | None = None,
        reuse_browser_session: bool | None = None,
        start_fresh_browser: bool | None = None,
        max_screenshot_scrolls: int | None = None,
        extra_http_headers: dict[str, str] | None = None,
        browser_address: str | None = None,
        ai_fallback: bool | None = None,
        run_with: str | None = None,
        run_metadata: dict[str, str] | None = None,
        max_elapsed_time_minutes: int | None = None,
        browser_type: str | None = None,
        max_steps_override: int | None = None,
        template: bool | None = None,
        user_agent: str | None = None,
        on_ai_fallback: str = "allow",
        wait_for_completion: bool = True,
        timeout: float = 3600,
        poll_interval: float = 30,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        reattach: bool = True,
        cancel_on_kill: bool = True,
        skyvern_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            wait_for_completion=wait_for_completion,
            timeout=timeout,
            poll_interval=poll_interval,
            deferrable=deferrable,
            reattach=reattach,
            cancel_on_kill=cancel_on_kill,
            skyvern_conn_id=skyvern_conn_id,
            **kwargs,
        )
        self.workflow_id = workflow_id
        self.parameters = parameters
        self.title = title
        self.proxy_location = proxy_location
        self.webhook_url = webhook_url
        self.totp_identifier = totp_identifier
        self.totp_url = totp_url
        self.browser_session_id = browser_session_id
        self.browser_profile_id = browser_profile_id
        self.reuse_browser_session = reuse_browser_session
        self.start_fresh_browser = start_fresh_browser
        self.max_screenshot_scrolls = max_screenshot_scrolls
        self.extra_http_headers = extra_http_headers
        self.browser_address = browser_address
        self.ai_fallback = ai_fallback
        self.run_with = run_with
        self.run_metadata = run_metadata
        self.max_elapsed_time_minutes = max_elapsed_time_minutes
        self.browser_type = browser_type
        self.max_steps_override = max_steps_override
        self.template = template
        self.user_agent = user_agent
        self.on_ai_fallback = on_ai_fallback
        self._check_now()

    # ---- what this kind of run says ---------------------------------------------------------------------

    @classmethod
    def _check_given(cls, values: Mapping[str, Any]) -> None:
        _workflow_request(values, only_known=True)
        check.check_positive("max_steps_override", values.get("max_steps_override"))
        check.check_user_agent(values.get("user_agent"))
        check.check_choice("on_ai_fallback", values.get("on_ai_fallback"), check.ON_AI_FALLBACK_VALUES)
        for name in ("template",):
            _check_flag(name, values.get(name))

    def _extra_xcoms(self, run: RunResponse) -> dict[str, Any]:
        from airflow_provider_skyvern.runs.replay import script_run_xcom

        return {"script_run": script_run_xcom(run)}

    def _check_output(self, context: Any, run: RunResponse) -> None:
        """Replay as code: say what ran, count the AI's takeovers in a row, apply ``on_ai_fallback``."""
        from airflow_provider_skyvern.runs import replay

        replay.judge(
            context,
            run,
            task_id=self.task_id,
            run_with=self.run_with,
            on_ai_fallback=self.on_ai_fallback,
            log=self.log,
            push=lambda values: self._push(context, values),
        )

    def _run_kind(self) -> RunKind:
        from airflow_provider_skyvern.runs.kinds import WorkflowRun

        values = {name: getattr(self, name) for name in self.checked_arguments}
        self._check_given(values)
        return WorkflowRun(
            _workflow_request(values, only_known=False),
            user_agent=self.user_agent,
            max_steps_override=self.max_steps_override,
            template=self.template,
        )


def _check_flag(parameter: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise check.InvalidParameter(parameter, f"must be True or False, got {value!r}")


def _check_workflow_id(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("wpid_") or len(value) <= len("wpid_"):
        raise check.InvalidParameter(
            "workflow_id", f"must be a workflow permanent id such as 'wpid_123', got {value!r}"
        )
    return value


def _check_parameters(value: Any) -> dict[str, Any] | None:
    """A mapping by parameter key; a rendered template may give it as a JSON object string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise check.InvalidParameter(
                "parameters", f"is a string but not a JSON object ({exc.msg} at column {exc.colno})"
            ) from None
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise check.InvalidParameter(
            "parameters", f"must be a mapping of parameter keys to values, got {value!r:.80}"
        )
    return dict(value)


def _workflow_request(values: Mapping[str, Any], *, only_known: bool) -> WorkflowRunRequest:
    """
    Checks every request argument and builds the request. With ``only_known`` (DAG parse time) the
    values not given here (templates, XComs, mapped arguments) are skipped and the workflow id may be missing.
    """
    value = values.get
    workflow_id = values.get("workflow_id", _MISSING)
    fields: dict[str, Any] = {
        "workflow_id": "wpid_-"
        if only_known and workflow_id is _MISSING
        else _check_workflow_id(workflow_id),
        "parameters": _check_parameters(value("parameters")),
        "title": value("title"),
        "proxy_location": check.check_proxy_location(value("proxy_location")),
        "webhook_url": check.check_url("webhook_url", value("webhook_url")),
        "totp_identifier": check.check_header_value("totp_identifier", value("totp_identifier")),
        "totp_url": check.check_url("totp_url", value("totp_url")),
        "browser_session_id": value("browser_session_id"),
        "browser_profile_id": value("browser_profile_id"),
        "reuse_browser_session": value("reuse_browser_session"),
        "start_fresh_browser": value("start_fresh_browser"),
        "max_screenshot_scrolls": check.check_positive(
            "max_screenshot_scrolls", value("max_screenshot_scrolls"), allow_zero=True
        ),
        "extra_http_headers": check.check_header_map("extra_http_headers", value("extra_http_headers")),
        "browser_address": check.check_url(
            "browser_address", value("browser_address"), ("http", "https", "ws", "wss")
        ),
        "ai_fallback": value("ai_fallback"),
        "run_with": check.check_choice("run_with", value("run_with"), check.RUN_WITH_VALUES),
        "run_metadata": check.check_string_map("run_metadata", value("run_metadata")),
        "max_elapsed_time_minutes": _check_minutes(value("max_elapsed_time_minutes")),
        "browser_type": check.check_choice("browser_type", value("browser_type"), check.BROWSER_TYPES),
    }
    for flag in ("reuse_browser_session", "start_fresh_browser", "ai_fallback"):
        _check_flag(flag, fields[flag])
    given = {name: v for name, v in fields.items() if v is not None}
    # Sent as null, not left out: Skyvern 1.0.56 reads a missing proxy_location as RESIDENTIAL and only
    # a null one as "not chosen", which applies the workflow's saved proxy location.
    given.setdefault("proxy_location", None)
    try:
        return WorkflowRunRequest(**given)
    except ValidationError as exc:
        raise check.invalid_from(exc) from None


def _check_minutes(value: Any) -> int | None:
    minutes = check.check_positive("max_elapsed_time_minutes", value)
    if minutes is not None and minutes > 480:
        raise check.InvalidParameter("max_elapsed_time_minutes", f"must be 1 to 480 minutes, got {minutes!r}")
    return minutes  # type: ignore[no-any-return]


_MISSING: Any = object()
