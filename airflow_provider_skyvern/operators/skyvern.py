"""SkyvernRunTaskOperator: run one Skyvern task from a DAG and hand its output to downstream tasks.

Airflow imports this module on every parse of a DAG file that uses the operator, so at module level it
imports only what constructing and checking an operator needs; the hook, the trigger and the reattach
machinery are imported where the task runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.sdk import BaseOperator
from pydantic import ValidationError

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.compat import AirflowException, AirflowFailException, conf
from airflow_provider_skyvern.enums import RunStatus
from airflow_provider_skyvern.exceptions import SkyvernBadRequestError, SkyvernError, one_line
from airflow_provider_skyvern.links.skyvern import APP_URL_XCOM_KEY, SkyvernRunLink
from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.requests import TaskRunRequest
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING:
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
    from airflow_provider_skyvern.models import RunResponse
    from airflow_provider_skyvern.operators.claim import RunClaim
    from airflow_provider_skyvern.operators.reattach import SubmissionLedger
    from airflow_provider_skyvern.triggers.events import RunEvent

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
    :param timeout: seconds to wait before the run is canceled and the task fails (default 1800). A
        shorter ``execution_timeout`` binds the same way, in both modes.
    :param poll_interval: the longest gap between status polls, in seconds (default 30). Polls start 1 s
        apart and spread out to about a tenth of the run's age, so a short run is noticed within a second
        and a long one costs few requests.
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
        prompt: str | None,
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
        poll_interval: float = 30,
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
        self.skyvern_app_url: str | None = None
        """The run's page in Skyvern's UI once a run exists: what :class:`SkyvernRunLink` shows."""
        self._active_run_id: str | None = None
        try:
            if isinstance(data_extraction_schema, type):  # a pydantic model class cannot be templated
                self.data_extraction_schema = check.normalize_schema(data_extraction_schema)
            _check_arguments({name: getattr(self, name) for name in _CHECKED_ARGUMENTS})
        except check.InvalidParameter as exc:
            raise ValueError(f"{type(self).__name__}(task_id={self.task_id!r}) {exc}") from None

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``.partial(...).expand(...)`` builds no operator at parse time: check the partial values now."""
        try:
            _check_arguments({name: kwargs[name] for name in _CHECKED_ARGUMENTS if name in kwargs})
        except check.InvalidParameter as exc:
            raise ValueError(f"{cls.__name__}.partial(task_id={kwargs.get('task_id')!r}) {exc}") from None
        return super().partial(**kwargs)

    # ---- request --------------------------------------------------------------------------------------

    def _build_request(self) -> TaskRunRequest:
        """The rendered request; a bad value is a ``check.InvalidParameter`` naming the field."""
        return _task_request({name: getattr(self, name) for name in _REQUEST_ARGUMENTS}, only_known=False)

    @cached_property
    def hook(self) -> SkyvernHook:
        from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

        return SkyvernHook(self.skyvern_conn_id)

    # ---- execution ------------------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        from airflow_provider_skyvern.operators.claim import RunClaim
        from airflow_provider_skyvern.operators.reattach import RunStateUnknown

        try:
            request = self._build_request()
        except check.InvalidParameter as exc:
            raise AirflowFailException(f"{type(self).__name__}: {exc} (after rendering templates)") from None
        claim = RunClaim(self.hook, context, request, reattach=self.reattach, log=self.log)
        try:
            run = claim.earlier_run()
        except RunStateUnknown:  # already says what is known and what is not
            raise
        except SkyvernError as exc:
            message = f"Looking for a Skyvern run an earlier try of this task started failed: {exc}"
            raise exc.reworded(message) from None
        if run is None:
            run = self._submit(claim)
        self._active_run_id, self.skyvern_app_url = run.run_id, run.app_url
        self._push(context, run_id=run.run_id, **{APP_URL_XCOM_KEY: run.app_url})

        if not self.wait_for_completion:
            claim.handed_on()  # whoever waits now owns the run: a clear starts a new one, never adopts it
            return run.run_id
        if run.is_terminal:
            return self._finish(context, run)
        deadline, limit = self._deadline(context)
        if self.deferrable:
            from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger

            self.defer(
                trigger=SkyvernRunTrigger(
                    run_id=run.run_id,
                    deadline=deadline,
                    poll_interval=self.poll_interval,
                    skyvern_conn_id=self.skyvern_conn_id,
                    cancel_on_kill=self.cancel_on_kill,
                    limit=limit,
                ),
                method_name="execute_complete",
                kwargs={"run_id": run.run_id, "app_url": run.app_url},
                timeout=None,  # the deadline lives in the trigger, so a timeout still reaches execute_complete
            )
        return self._handle_event(context, self._wait_blocking(run.run_id, deadline, limit))

    def execute_complete(
        self, context: Any, event: Any = None, run_id: str | None = None, app_url: str | None = None
    ) -> Any:
        """:param run_id: the run this task deferred on (the event must name it); ``app_url`` its page."""
        from airflow_provider_skyvern.triggers.events import RunEvent

        if run_id is None:  # dag.test() resumes with the event only: the XComs pushed before deferring
            run_id, app_url = self._pulled(context, "run_id"), self._pulled(context, APP_URL_XCOM_KEY)
        self.skyvern_app_url = app_url
        parsed = RunEvent.from_payload(event, expected_run_id=run_id)
        self._active_run_id = parsed.run_id
        return self._handle_event(context, parsed)

    def _pulled(self, context: Any, key: str) -> str | None:
        ti = context["ti"]
        value = ti.xcom_pull(task_ids=self.task_id, key=key, map_indexes=ti.map_index)
        return value if isinstance(value, str) else None

    def on_kill(self) -> None:
        """
        Blocking mode: the worker is being killed, so the remote run must not keep going (and billing).
        One bounded attempt on a fresh client: this runs in a signal handler, and SIGKILL follows soon.
        """
        run_id = self._active_run_id
        if not run_id or not self.cancel_on_kill:
            return
        self.log.info("Task killed: canceling Skyvern run %s", run_id)
        try:
            self.hook.cancel_run_at_once(run_id)
        except Exception as exc:  # the kill goes on regardless; say what happened
            self.log.warning("Could not cancel Skyvern run %s: %s", run_id, exc)
        else:
            self.log.info("Canceled Skyvern run %s", run_id)

    # ---- steps ----------------------------------------------------------------------------------------

    def _submit(self, claim: RunClaim) -> RunResponse:
        from airflow_provider_skyvern.operators.reattach import RunStateUnknown

        try:
            return claim.submit(user_agent=self.user_agent)
        except SkyvernBadRequestError as exc:  # the same request would be refused on every retry
            raise AirflowFailException(f"Skyvern refused to start the run: {exc}") from None
        except RunStateUnknown:
            raise
        except SkyvernError as exc:
            raise exc.reworded(f"Starting the Skyvern run failed: {exc}") from None

    def _deadline(self, context: Any) -> tuple[float, str]:
        """When the wait must end and why: ``timeout`` from now, or the try's ``execution_timeout``."""
        now = self.hook.clock.time()
        deadline, limit = now + self.timeout, f"timeout={self.timeout:g}s"
        if self.execution_timeout is not None:
            started = getattr(context["ti"], "start_date", None)
            since = started.timestamp() if isinstance(started, datetime) else now
            ends = since + self.execution_timeout.total_seconds()
            if ends < deadline:
                deadline, limit = ends, f"execution_timeout={self.execution_timeout}"
        return deadline, limit

    def _wait_blocking(self, run_id: str, deadline: float, limit: str) -> RunEvent:
        """The trigger's policy, synchronously (``deferrable=False``)."""
        from airflow_provider_skyvern.triggers.waiting import RunWatch

        clock = self.hook.clock
        watch = RunWatch(self.log, run_id, deadline, limit=limit, clock=clock)
        while True:
            try:
                event = watch.observe(run=self.hook.get_run(run_id, deadline=deadline))
            except Exception as exc:
                event = watch.observe(error=exc)
            if event is not None:
                return event
            clock.sleep(watch.pause(self.poll_interval))

    def _handle_event(self, context: Any, event: RunEvent) -> Any:
        from airflow_provider_skyvern.operators.reattach import SubmissionLedger

        ledger = SubmissionLedger(context)
        if event.kind == "error":
            if self._next_try_can_reattach(context, ledger):
                after = "the run is left going; the next try reattaches to it"
            elif not self.cancel_on_kill:
                after = "the run is left going (cancel_on_kill=False)"
            else:  # nobody would wait for the run any more
                after = self._cancel(event.run_id)
                ledger.clear()
            raise SkyvernRunFailedError(
                f"Stopped waiting for Skyvern run {event.run_id}: {event.message}; {after}"
            )
        if event.kind == "deadline":
            after = self._cancel(event.run_id)
            ledger.clear()
            limit = event.limit or f"timeout={self.timeout:g}s"
            if event.run_status is None and event.message:
                raise SkyvernRunFailedError(
                    f"Could not read Skyvern run {event.run_id} within {limit}: {event.message}; {after}"
                )
            last = f"last status {event.run_status}" + (
                f", step {event.step_count}" if event.step_count else ""
            )
            if event.message:
                last += f"; {event.message}"
            raise SkyvernRunFailedError(
                f"Skyvern run {event.run_id} did not finish within {limit} ({last}); {after}"
            )
        run = self.hook.get_run(event.run_id)  # fresh presigned URLs
        if not run.is_terminal:
            raise SkyvernRunFailedError(
                f"Skyvern run {run.run_id} is {run.status.value} although the trigger saw it final; failing closed"
            )
        return self._finish(context, run)

    def _next_try_can_reattach(self, context: Any, ledger: SubmissionLedger) -> bool:
        """A retry follows and will find this run: by the state store, or (Airflow < 3.3) by its tag."""
        from airflow_provider_skyvern.operators.reattach import keeps_title

        if not self.reattach or _is_final_try(context):
            return False
        return ledger.available or keeps_title(self._build_request())

    def _push(self, context: Any, **values: Any) -> None:
        """
        Explicit XComs follow ``do_xcom_push`` like the return value does. Airflow 3.0 cannot store a
        ``None`` XCom (its API answers 422, failing the task): there a ``None`` is not pushed, which
        reads the same (pulling a key nobody pushed gives ``None``).
        """
        if not self.do_xcom_push:
            return
        for key, value in values.items():
            if value is not None or AIRFLOW_V_3_1_PLUS:
                context["ti"].xcom_push(key=key, value=value)

    def _finish(self, context: Any, run: RunResponse) -> Any:
        from airflow_provider_skyvern.operators.reattach import SubmissionLedger

        ledger = SubmissionLedger(context)
        self.skyvern_app_url = run.app_url or self.skyvern_app_url
        self._push(context, **_result_xcoms(run))
        self._active_run_id = None
        if run.status is not RunStatus.completed:
            ledger.clear()
            codes = f" [error codes: {', '.join(run.error_codes)}]" if run.error_codes else ""
            reason = one_line(run.failure_reason or "") or "Skyvern gave no reason"
            if run.failure_reason and reason != run.failure_reason:
                self.log.error("Skyvern run %s failure reason, in full:\n%s", run.run_id, run.failure_reason)
            raise SkyvernRunFailedError(f"Skyvern run {run.run_id} ended {run.status.value}: {reason}{codes}")
        problems = check.output_schema_errors(self._schema_for_output(), run.output)
        if problems:
            self._push(context, output_schema_errors=problems)
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

    def _cancel(self, run_id: str) -> str:
        from airflow_provider_skyvern.operators.claim import cancel_run

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


_REQUEST_ARGUMENTS = (
    "prompt",
    "url",
    "engine",
    "max_steps",
    "data_extraction_schema",
    "proxy_location",
    "browser_session_id",
    "publish_workflow",
    "webhook_url",
    "error_code_mapping",
    "totp_identifier",
    "totp_url",
    "title",
    "model",
    "user_agent",
    "extra_http_headers",
    "include_action_history_in_verification",
    "max_screenshot_scrolls",
    "browser_address",
    "run_with",
)
_CHECKED_ARGUMENTS = (*_REQUEST_ARGUMENTS, "timeout", "poll_interval", "output_validation")


def _check_arguments(values: Mapping[str, Any]) -> None:
    """What DAG parsing can check: the given values that are neither templates nor upstream XComs."""
    known = {name: value for name, value in values.items() if not check.is_unresolved(value)}
    for name in ("timeout", "poll_interval"):
        if name in known:
            check.check_positive(name, known[name], integer=False)
    if "output_validation" in known:
        check.check_choice("output_validation", known["output_validation"], ("warn", "fail"))
    _task_request(known, only_known=True)


def _task_request(values: Mapping[str, Any], *, only_known: bool) -> TaskRunRequest:
    """
    Checks every request argument and builds the request. With ``only_known`` (DAG parse time) the
    values not given here (templates, XComs, mapped arguments) are skipped and the prompt may be missing.
    """
    value = values.get
    prompt = values.get("prompt", _MISSING)
    fields: dict[str, Any] = {
        "prompt": "-" if only_known and prompt is _MISSING else check.check_prompt(prompt),
        "url": check.check_url("url", value("url")),
        "engine": check.check_engine(value("engine")),
        "max_steps": check.check_positive("max_steps", value("max_steps")),
        "data_extraction_schema": check.normalize_schema(value("data_extraction_schema")),
        "proxy_location": check.check_proxy_location(value("proxy_location")),
        "browser_session_id": value("browser_session_id"),
        "publish_workflow": value("publish_workflow"),
        "webhook_url": check.check_url("webhook_url", value("webhook_url")),
        "error_code_mapping": check.check_string_map("error_code_mapping", value("error_code_mapping")),
        "totp_identifier": value("totp_identifier"),
        "totp_url": check.check_url("totp_url", value("totp_url")),
        "title": value("title"),
        "model": value("model"),
        "extra_http_headers": check.check_string_map("extra_http_headers", value("extra_http_headers")),
        "include_action_history_in_verification": value("include_action_history_in_verification"),
        "max_screenshot_scrolls": check.check_positive(
            "max_screenshot_scrolls", value("max_screenshot_scrolls"), allow_zero=True
        ),
        "browser_address": check.check_url(
            "browser_address", value("browser_address"), ("http", "https", "ws", "wss")
        ),
        "run_with": check.check_choice("run_with", value("run_with"), check.RUN_WITH_VALUES),
    }
    check.check_user_agent(value("user_agent"))
    try:
        return TaskRunRequest(**{name: v for name, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise check.invalid_from(exc) from None


_MISSING: Any = object()
