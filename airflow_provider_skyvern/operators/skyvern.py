"""SkyvernRunTaskOperator: run one Skyvern task from a DAG and hand its output to downstream tasks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar, Literal

from airflow.sdk import BaseOperator

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.compat import AirflowException, AirflowFailException, conf
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.links.skyvern import APP_URL_XCOM_KEY, SkyvernRunLink
from airflow_provider_skyvern.models import RunResponse, RunStatus, TaskRunRequest
from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.operators.claim import RunClaim, cancel_run
from airflow_provider_skyvern.operators.reattach import SubmissionLedger, keeps_title
from airflow_provider_skyvern.triggers.events import RunEvent
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from airflow_provider_skyvern.triggers.waiting import RunWatch

OutputValidation = Literal["warn", "fail"]


class SkyvernRunFailedError(AirflowException):
    """The Skyvern run ended failed, terminated, canceled or timed out, or did not finish in time."""


class SkyvernRunTaskOperator(BaseOperator):
    """
    Start a Skyvern task (natural-language browser automation), wait for it, return its output.

    Parameters mirror Skyvern's ``run_task`` (same names, same meaning). The return value (XCom
    ``return_value``) is the run's ``output``; XCom also gets ``run_id``, ``status``, ``app_url``,
    ``recording_url``, ``screenshot_urls``, ``downloaded_files``, ``step_count`` and ``failure_reason``.

    :param prompt: what Skyvern should do, in plain words.
    :param url: starting page (http/https).
    :param engine: ``skyvern_v2`` (default), ``skyvern_v1``, ``skyvern_v3``, ``openai_cua``,
        ``anthropic_cua``, ``ui_tars``, ``yutori_navigator`` (wire values like ``skyvern-2.0`` also work).
    :param max_steps: cap on AI steps (cost); the run ends ``timed_out`` when reached.
    :param data_extraction_schema: JSON Schema of the output: a dict, a JSON string, or a pydantic model class.
    :param proxy_location: a ProxyLocation name, a geo target dict, or ``{"url": ...}`` (self-hosted).
    :param wait_for_completion: wait for the run and return its output (default); False returns the run id.
    :param timeout: seconds to wait before the run is canceled and the task fails (default 1800).
    :param poll_interval: seconds between status polls (default 10).
    :param deferrable: wait in the triggerer instead of a worker slot (default ``[operators] default_deferrable``).
    :param reattach: adopt the run an earlier try of this task instance started instead of paying for a
        second one (tags the title; see the README). False always starts a fresh run and keeps the title as is.
    :param cancel_on_kill: cancel the Skyvern run when the task is killed, marked failed/success or cleared
        while it waits (default True). A trigger moved to another triggerer is never a kill.
    :param output_validation: when ``data_extraction_schema`` is set and the output breaks it: ``"warn"``
        (default: log, push ``output_schema_errors``, hand the output on) or ``"fail"``.
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.

    ``browser_session_id``, ``publish_workflow``, ``webhook_url``, ``error_code_mapping``,
    ``totp_identifier``, ``totp_url``, ``title``, ``model``, ``user_agent``, ``extra_http_headers``,
    ``include_action_history_in_verification``, ``max_screenshot_scrolls``, ``browser_address`` and
    ``run_with`` are passed to Skyvern as documented for ``run_task``.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "url",
        "title",
        "engine",
        "data_extraction_schema",
        "proxy_location",
        "browser_session_id",
        "webhook_url",
        "error_code_mapping",
        "totp_identifier",
        "totp_url",
        "model",
        "user_agent",
        "extra_http_headers",
        "browser_address",
        "run_with",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "prompt": "md",
        "data_extraction_schema": "json",
        "proxy_location": "json",
        "error_code_mapping": "json",
        "model": "json",
        "extra_http_headers": "json",
    }
    operator_extra_links = (SkyvernRunLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        prompt: str,
        url: str | None = None,
        engine: str | None = "skyvern_v2",
        max_steps: int | None = None,
        data_extraction_schema: dict[str, Any] | list[Any] | str | type[Any] | None = None,
        proxy_location: str | dict[str, Any] | None = None,
        browser_session_id: str | None = None,
        publish_workflow: bool | None = None,
        webhook_url: str | None = None,
        error_code_mapping: dict[str, str] | None = None,
        totp_identifier: str | None = None,
        totp_url: str | None = None,
        title: str | None = None,
        model: dict[str, Any] | None = None,
        user_agent: str | None = None,
        extra_http_headers: dict[str, str] | None = None,
        include_action_history_in_verification: bool | None = None,
        max_screenshot_scrolls: int | None = None,
        browser_address: str | None = None,
        run_with: str | None = None,
        wait_for_completion: bool = True,
        timeout: float = 1800,
        poll_interval: float = 10,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        reattach: bool = True,
        cancel_on_kill: bool = True,
        output_validation: OutputValidation = "warn",
        skyvern_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.url = url
        self.engine = engine
        self.max_steps = max_steps
        self.data_extraction_schema = data_extraction_schema
        self.proxy_location = proxy_location
        self.browser_session_id = browser_session_id
        self.publish_workflow = publish_workflow
        self.webhook_url = webhook_url
        self.error_code_mapping = error_code_mapping
        self.totp_identifier = totp_identifier
        self.totp_url = totp_url
        self.title = title
        self.model = model
        self.user_agent = user_agent
        self.extra_http_headers = extra_http_headers
        self.include_action_history_in_verification = include_action_history_in_verification
        self.max_screenshot_scrolls = max_screenshot_scrolls
        self.browser_address = browser_address
        self.run_with = run_with
        self.wait_for_completion = wait_for_completion
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.reattach = reattach
        self.cancel_on_kill = cancel_on_kill
        self.output_validation = output_validation
        self.skyvern_conn_id = skyvern_conn_id
        self._active_run_id: str | None = None
        try:
            check.check_positive("timeout", timeout, integer=False)
            check.check_positive("poll_interval", poll_interval, integer=False)
            check.check_choice("output_validation", output_validation, ("warn", "fail"))
            if isinstance(data_extraction_schema, type):  # a pydantic model class cannot be templated
                self.data_extraction_schema = check.normalize_schema(data_extraction_schema)
            self._build_request(only_known=True)
        except check.InvalidParameter as exc:
            raise ValueError(f"{type(self).__name__}(task_id={self.task_id!r}) {exc}") from None

    # ---- request --------------------------------------------------------------------------------------

    def _build_request(self, *, only_known: bool) -> TaskRunRequest:
        """Checks every argument; with ``only_known`` (DAG parse time) templated ones are skipped."""

        def value(name: str) -> Any:
            raw = getattr(self, name)
            return None if only_known and check.is_template(raw) else raw

        fields: dict[str, Any] = {
            "prompt": check.check_prompt(value("prompt")) if value("prompt") is not None else "-",
            "url": check.check_url("url", value("url")),
            "engine": check.check_engine(value("engine")),
            "max_steps": check.check_positive("max_steps", self.max_steps),
            "data_extraction_schema": check.normalize_schema(value("data_extraction_schema")),
            "proxy_location": check.check_proxy_location(value("proxy_location")),
            "browser_session_id": value("browser_session_id"),
            "publish_workflow": self.publish_workflow,
            "webhook_url": check.check_url("webhook_url", value("webhook_url")),
            "error_code_mapping": check.check_string_map("error_code_mapping", value("error_code_mapping")),
            "totp_identifier": value("totp_identifier"),
            "totp_url": check.check_url("totp_url", value("totp_url")),
            "title": value("title"),
            "model": value("model"),
            "extra_http_headers": check.check_string_map("extra_http_headers", value("extra_http_headers")),
            "include_action_history_in_verification": self.include_action_history_in_verification,
            "max_screenshot_scrolls": check.check_positive(
                "max_screenshot_scrolls", self.max_screenshot_scrolls, allow_zero=True
            ),
            "browser_address": check.check_url(
                "browser_address", value("browser_address"), ("http", "https", "ws", "wss")
            ),
            "run_with": check.check_choice("run_with", value("run_with"), check.RUN_WITH_VALUES),
        }
        check.check_user_agent(value("user_agent"))
        return TaskRunRequest(**{name: v for name, v in fields.items() if v is not None})

    @cached_property
    def hook(self) -> SkyvernHook:
        return SkyvernHook(self.skyvern_conn_id)

    # ---- execution ------------------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        try:
            request = self._build_request(only_known=False)
        except check.InvalidParameter as exc:
            raise AirflowFailException(f"{type(self).__name__}: {exc} (after rendering templates)") from None
        claim = RunClaim(self.hook, context, request, reattach=self.reattach, log=self.log)
        run = claim.earlier_run() or claim.submit(user_agent=self.user_agent)
        self._active_run_id = run.run_id
        context["ti"].xcom_push(key="run_id", value=run.run_id)
        context["ti"].xcom_push(key=APP_URL_XCOM_KEY, value=run.app_url)

        if not self.wait_for_completion:
            claim.handed_on()  # whoever waits now owns the run: a clear starts a new one, never adopts it
            return run.run_id
        if run.is_terminal:
            return self._finish(context, run)
        deadline = time.time() + self.timeout
        if self.deferrable:
            self.defer(
                trigger=SkyvernRunTrigger(
                    run_id=run.run_id,
                    deadline=deadline,
                    poll_interval=self.poll_interval,
                    skyvern_conn_id=self.skyvern_conn_id,
                    cancel_on_kill=self.cancel_on_kill,
                ),
                method_name="execute_complete",
                timeout=None,  # the deadline lives in the trigger, so a timeout still reaches execute_complete
            )
        return self._handle_event(context, self._wait_blocking(run.run_id, deadline))

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        expected = context["ti"].xcom_pull(
            task_ids=self.task_id, key="run_id", map_indexes=context["ti"].map_index
        )
        parsed = RunEvent.from_payload(event, expected_run_id=expected if isinstance(expected, str) else None)
        self._active_run_id = parsed.run_id
        return self._handle_event(context, parsed)

    def on_kill(self) -> None:
        """Blocking mode: the worker is being killed, so the remote run must not keep going (and billing)."""
        if self._active_run_id and self.cancel_on_kill:
            self.log.info("Task killed: canceling Skyvern run %s", self._active_run_id)
            self._cancel(self._active_run_id)

    # ---- steps ----------------------------------------------------------------------------------------

    def _wait_blocking(self, run_id: str, deadline: float) -> RunEvent:
        """The trigger's policy, synchronously (``deferrable=False``)."""
        watch = RunWatch(self.log, run_id, deadline)
        while True:
            try:
                event = watch.observe(run=self.hook.get_run(run_id))
            except SkyvernError as exc:
                event = watch.observe(error=exc)
            if event is not None:
                return event
            self.hook.pause(watch.pause(self.poll_interval))

    def _handle_event(self, context: Any, event: RunEvent) -> Any:
        ledger = SubmissionLedger(context)
        if event.kind == "error":
            if self._next_try_can_reattach(context, ledger):
                after = "the run is left going; the next try reattaches to it"
            elif not self.cancel_on_kill:
                after = "the run is left going (cancel_on_kill=False)"
            else:  # nobody would wait for the run any more
                canceled = self._cancel(event.run_id)
                ledger.clear()
                after = "it was canceled" if canceled else "canceling it failed too, it may still be going"
            raise SkyvernRunFailedError(
                f"Stopped waiting for Skyvern run {event.run_id}: {event.message}; {after}"
            )
        if event.kind == "deadline":
            canceled = self._cancel(event.run_id)
            ledger.clear()
            last = f"last status {event.run_status}" + (
                f", step {event.step_count}" if event.step_count else ""
            )
            after = "it was canceled" if canceled else "canceling it failed, it may still be going"
            raise SkyvernRunFailedError(
                f"Skyvern run {event.run_id} did not finish within timeout={self.timeout:g}s ({last}); {after}"
            )
        run = self.hook.get_run(event.run_id)  # fresh presigned URLs
        if not run.is_terminal:
            raise SkyvernRunFailedError(
                f"Skyvern run {run.run_id} is {run.status.value} although the trigger saw it final; failing closed"
            )
        return self._finish(context, run)

    def _next_try_can_reattach(self, context: Any, ledger: SubmissionLedger) -> bool:
        """A retry follows and will find this run: by the state store, or (Airflow < 3.3) by its tag."""
        if not self.reattach or _is_final_try(context):
            return False
        return ledger.available or keeps_title(self._build_request(only_known=False))

    def _finish(self, context: Any, run: RunResponse) -> Any:
        ti = context["ti"]
        ledger = SubmissionLedger(context)
        for key, value in _result_xcoms(run).items():
            ti.xcom_push(key=key, value=value)
        self._active_run_id = None
        if run.status is not RunStatus.completed:
            ledger.clear()
            codes = f" [error codes: {', '.join(run.error_codes)}]" if run.error_codes else ""
            reason = run.failure_reason or "Skyvern gave no reason"
            raise SkyvernRunFailedError(f"Skyvern run {run.run_id} ended {run.status.value}: {reason}{codes}")
        problems = check.output_schema_errors(self._schema_for_output(), run.output)
        if problems:
            ti.xcom_push(key="output_schema_errors", value=problems)
            summary = f"Skyvern run {run.run_id} output does not match data_extraction_schema: {'; '.join(problems[:3])}"
            if self.output_validation == "fail":
                ledger.clear()
                raise SkyvernRunFailedError(summary)
            self.log.warning("%s (output_validation='warn': handing the output on)", summary)
        ledger.clear()
        self.log.info("Skyvern run %s completed in %s steps", run.run_id, run.step_count)
        return run.output

    def _schema_for_output(self) -> dict[str, Any] | list[Any] | None:
        try:
            return check.normalize_schema(self.data_extraction_schema)
        except check.InvalidParameter:
            return None

    def _cancel(self, run_id: str) -> bool:
        return cancel_run(self.hook, run_id, self.log)


def _is_final_try(context: Any) -> bool:
    """No retry follows this try (Airflow retries while ``try_number <= max_tries``)."""
    ti = context["ti"]
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    return not (isinstance(try_number, int) and isinstance(max_tries, int) and try_number <= max_tries)


def _result_xcoms(run: RunResponse) -> dict[str, Any]:
    return {
        "status": run.status.value,
        "recording_url": run.recording_url,
        "screenshot_urls": run.screenshot_urls or [],
        "downloaded_files": [
            {"url": f.url, "filename": f.filename, "checksum": f.checksum, "size": f.file_size}
            for f in run.downloaded_files or []
        ],
        "step_count": run.step_count,
        "failure_reason": run.failure_reason,
    }
