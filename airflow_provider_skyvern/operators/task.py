"""The Skyvern operators: SkyvernRunTaskOperator (one natural-language task) and, from
:mod:`.workflow`, SkyvernRunWorkflowOperator (a saved multi-step workflow). Both share
:class:`~.base.SkyvernRunOperatorBase`.

Airflow imports this module on every parse of a DAG file that uses the operator, so at module level it
imports only what constructing and checking an operator needs; the hook, the trigger and the reattach
machinery are imported where the task runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ValidationError

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.compat import conf
from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.operators.base import (
    RUN_TEMPLATE_FIELDS,
    SkyvernRunFailedError,
    SkyvernRunOperatorBase,
)
from airflow_provider_skyvern.requests.task import TaskRunRequest

if TYPE_CHECKING:
    from airflow_provider_skyvern.models import RunResponse
    from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator
    from airflow_provider_skyvern.runs.kinds import RunKind
    from airflow_provider_skyvern.runs.prompt_workflow import Template

__all__ = ["SkyvernRunFailedError", "SkyvernRunTaskOperator", "SkyvernRunWorkflowOperator"]


def __getattr__(name: str) -> Any:
    """The workflow operator on first use: a DAG file with only task operators does not pay for it."""
    if name == "SkyvernRunWorkflowOperator":
        from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator

        return SkyvernRunWorkflowOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


OutputValidation = Literal["warn", "fail"]


class SkyvernRunTaskOperator(SkyvernRunOperatorBase):
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
        second one (tags the title; see docs/reattach.md). False always starts a fresh run and keeps the title as is.
    :param cancel_on_kill: cancel the Skyvern run when the task is killed, marked failed/success or cleared
        while it waits (default True). A trigger moved to another triggerer is never a kill.
    :param output_validation: when ``data_extraction_schema`` is set and the output breaks it: ``"warn"``
        (default: log, push ``output_schema_errors``, hand the output on) or ``"fail"``.
    :param replay_as_code: learn once, then replay as code: the prompt becomes a Skyvern workflow of one
        task block, made once and found again by the fingerprint (of the unrendered prompt and url, the
        schema and the engine) in its title; each ``{{ expression }}`` of the prompt and url becomes a
        workflow parameter, the url's ones its cache key. Its first run is an agent run Skyvern records a
        script from; every later run replays the script (``run_with="code"``), the AI taking over where the
        page changed (``ai_fallback``). The return value is what the block extracted; XCom ``script_run``
        and ``ai_fallback_streak`` say what ran (see docs/replay.md: what it costs, saves, cannot do).
    :param on_ai_fallback: with ``replay_as_code``, when the AI took over from the cached script: ``allow``
        (default: logged), ``warn`` or ``fail``; from 2 DAG runs in a row the log says to review the script.
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
        *RUN_TEMPLATE_FIELDS,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "prompt": "md",
        "data_extraction_schema": "json",
        "proxy_location": "json",
        "error_code_mapping": "json",
        "model": "json",
        "extra_http_headers": "json",
    }
    checked_arguments: ClassVar[tuple[str, ...]] = (
        *("prompt", "url", "engine", "max_steps", "data_extraction_schema", "proxy_location"),
        *("browser_session_id", "publish_workflow", "webhook_url", "error_code_mapping"),
        *("totp_identifier", "totp_url", "title", "model", "user_agent", "extra_http_headers"),
        *("include_action_history_in_verification", "max_screenshot_scrolls", "browser_address"),
        *("run_with", "timeout", "poll_interval", "output_validation", "on_ai_fallback"),
    )

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
        replay_as_code: bool = False,
        on_ai_fallback: str = "allow",
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
        self.output_validation = output_validation
        self.replay_as_code = replay_as_code
        self.on_ai_fallback = on_ai_fallback
        self._replay_templates: tuple[Template, Template] | None = None
        """The prompt and url as written (Airflow renders the attributes before ``execute``): the workflow's;
        taken again as Airflow renders them (:meth:`_do_render_template_fields`)."""
        self._replay_env: Any = None
        self._replay_target: tuple[str, dict[str, str]] | None = None
        if replay_as_code:
            from airflow_provider_skyvern.runs.prompt_workflow import Template

            self._replay_templates = (Template("prompt", prompt), Template("url", url))
            self._check_replayable()
        if isinstance(data_extraction_schema, type):  # a pydantic model class cannot be templated
            try:
                self.data_extraction_schema = check.normalize_schema(data_extraction_schema)
            except check.InvalidParameter as exc:
                raise ValueError(f"{type(self).__name__}(task_id={self.task_id!r}) {exc}") from None
        self._check_now()

    # ---- what this kind of run says ---------------------------------------------------------------------

    @classmethod
    def _check_given(cls, values: Mapping[str, Any]) -> None:
        if "output_validation" in values:
            check.check_choice("output_validation", values["output_validation"], ("warn", "fail"))
        check.check_choice("on_ai_fallback", values.get("on_ai_fallback"), check.ON_AI_FALLBACK_VALUES)
        _task_request(values, only_known=True)

    def _check_replayable(self) -> None:
        try:
            _check_replay_arguments({name: getattr(self, name) for name in _REPLAY_CHECKED})
        except check.InvalidParameter as exc:
            raise ValueError(f"{type(self).__name__}(task_id={self.task_id!r}) {exc}") from None

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """With ``replay_as_code``, what the partial values already say is checked as for the operator."""
        if kwargs.get("replay_as_code"):
            try:
                _check_replay_arguments({name: kwargs[name] for name in _REPLAY_CHECKED if name in kwargs})
            except check.InvalidParameter as exc:
                raise ValueError(f"{cls.__name__}.partial(task_id={kwargs.get('task_id')!r}) {exc}") from None
        return super().partial(**kwargs)

    def _do_render_template_fields(
        self, parent: Any, template_fields: Any, context: Any, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        """``replay_as_code``: the prompt and url as Airflow is about to render them (a mapped value from an
        upstream task is in ``seen_oids``: Airflow renders it not, nor do we; a template file is read)."""
        if parent is self and self.replay_as_code:
            from airflow_provider_skyvern.runs.prompt_workflow import Template

            templates = []
            for name in ("prompt", "url"):
                value = getattr(self, name)
                literal = id(value) in seen_oids
                is_file = (
                    isinstance(value, str)
                    and bool(self.template_ext)
                    and value.endswith(tuple(self.template_ext))
                )
                if is_file and not literal and jinja_env.loader is not None:
                    value = jinja_env.loader.get_source(jinja_env, value)[0]
                templates.append(Template(name, value, literal))
            self._replay_templates = (templates[0], templates[1])
            self._replay_env = jinja_env
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)

    def _build_request(self) -> TaskRunRequest:
        """The rendered request; a bad value is a ``check.InvalidParameter`` naming the field."""
        return _task_request({name: getattr(self, name) for name in _REQUEST_ARGUMENTS}, only_known=False)

    def _most_steps_per_run(self) -> int | None:
        return self.max_steps if isinstance(self.max_steps, int) else None

    def _run_kind(self) -> RunKind:
        from airflow_provider_skyvern.runs.kinds import TaskRun

        request = self._build_request()
        if self._replay_target is None:
            return TaskRun(request, user_agent=self.user_agent)
        return self._replay_kind(request, *self._replay_target)

    def _prepare(self, context: Any) -> None:
        """``replay_as_code``: the prompt's workflow, found or made once, and this run's parameters."""
        if not self.replay_as_code:
            return
        from airflow_provider_skyvern.compat import AirflowFailException
        from airflow_provider_skyvern.exceptions import SkyvernError, SkyvernHTTPError
        from airflow_provider_skyvern.runs import prompt_workflow

        request = self._build_request()  # a bad rendered value is said before anything is made
        assert self._replay_templates is not None  # set with replay_as_code
        env = self._replay_env or self.get_template_env()
        try:
            workflow = prompt_workflow.plan(
                *self._replay_templates,
                schema=request.data_extraction_schema,
                engine=request.engine.value if request.engine is not None else None,
                block_options={
                    "error_code_mapping": request.error_code_mapping,
                    "include_action_history_in_verification": request.include_action_history_in_verification,
                    "model": request.model,
                },
                env=env,
            )
            parameters = prompt_workflow.render_parameters(workflow, env, context)  # before anything is made
        except prompt_workflow.NotReplayable as exc:
            raise check.InvalidParameter(exc.field, exc.problem) from None
        except Exception as exc:  # what Airflow would say of a template it cannot render
            raise AirflowFailException(
                f"{type(self).__name__}: replay_as_code: rendering the prompt's parameters failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        try:
            saved = prompt_workflow.find_or_create(self.hook, workflow, self.log)
        except prompt_workflow.NotReplayable as exc:
            raise AirflowFailException(f"{type(self).__name__}: {exc}") from None
        except SkyvernHTTPError as exc:
            if 400 <= exc.http_status < 500 and exc.http_status not in (408, 409, 429):
                raise AirflowFailException(f"Skyvern refused this prompt's replay workflow: {exc}") from None
            raise exc.reworded(f"Finding or making this prompt's replay workflow failed: {exc}") from None
        except SkyvernError as exc:
            raise exc.reworded(f"Finding or making this prompt's replay workflow failed: {exc}") from None
        self._replay_target = (saved.workflow_permanent_id, parameters)

    def _replay_kind(self, request: TaskRunRequest, workflow_id: str, parameters: dict[str, str]) -> RunKind:
        """A run of the prompt's workflow carrying what the task run would have said of this run."""
        from airflow_provider_skyvern.requests.workflow import WorkflowRunRequest
        from airflow_provider_skyvern.runs.kinds import WorkflowRun

        carried = request.model_dump(
            include={
                "title",
                "proxy_location",
                "webhook_url",
                "totp_identifier",
                "totp_url",
                "browser_session_id",
                "extra_http_headers",
                "max_screenshot_scrolls",
                "browser_address",
            },
            exclude_none=True,
        )
        run = WorkflowRunRequest(
            workflow_id=workflow_id, parameters=parameters, run_with="code", ai_fallback=True, **carried
        )
        return WorkflowRun(run, user_agent=self.user_agent, max_steps_override=request.max_steps)

    def _keeps_title(self) -> bool:
        return False if self.replay_as_code else super()._keeps_title()

    def _return_value(self, run: RunResponse) -> Any:
        if not self.replay_as_code:
            return run.output
        from airflow_provider_skyvern.runs.prompt_workflow import block_extraction

        return block_extraction(run.output)

    def _extra_xcoms(self, run: RunResponse) -> dict[str, Any]:
        if not self.replay_as_code:
            return {}
        from airflow_provider_skyvern.runs.replay import script_run_xcom

        return {"script_run": script_run_xcom(run)}

    def _check_output(self, context: Any, run: RunResponse) -> None:
        if self.replay_as_code:
            from airflow_provider_skyvern.runs import replay

            replay.judge(
                context,
                run,
                task_id=self.task_id,
                run_with="code",
                on_ai_fallback=self.on_ai_fallback,
                log=self.log,
                push=lambda values: self._push(context, values),
            )
        problems = check.output_schema_errors(self._schema_for_output(), self._return_value(run))
        if not problems:
            return
        self._push(context, {"output_schema_errors": problems})
        summary = f"Skyvern run {run.run_id} output does not match data_extraction_schema: {'; '.join(problems[:3])}"
        if self.output_validation == "fail":
            raise SkyvernRunFailedError(summary)
        self.log.warning("%s (output_validation='warn': handing the output on)", summary)

    def _schema_for_output(self) -> dict[str, Any] | list[Any] | None:
        try:
            return check.normalize_schema(self.data_extraction_schema)
        except check.InvalidParameter:
            return None


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
        "totp_identifier": check.check_header_value("totp_identifier", value("totp_identifier")),
        "totp_url": check.check_url("totp_url", value("totp_url")),
        "title": value("title"),
        "model": value("model"),
        "extra_http_headers": check.check_header_map("extra_http_headers", value("extra_http_headers")),
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


_REPLAY_CHECKED = (
    *("prompt", "url", "run_with", "publish_workflow", "data_extraction_schema", "error_code_mapping"),
    *("model", "engine"),
)


def _check_replay_arguments(values: Mapping[str, Any]) -> None:
    """What ``replay_as_code`` needs of the values given (parse time): a prompt and url it can make a workflow
    of, no ``run_with`` of the user's, and what the fingerprint covers given as is."""
    from airflow_provider_skyvern.runs.prompt_workflow import NotReplayable, Template, plan

    for name in ("run_with", "publish_workflow"):
        if values.get(name) is not None:
            raise check.InvalidParameter(
                name,
                "leave it unset with replay_as_code=True, which runs its own workflow with run_with='code'",
            )
    for name in ("data_extraction_schema", "error_code_mapping", "model", "engine"):
        if name in values and check.is_unresolved(values[name]):
            raise check.InvalidParameter(
                name,
                "with replay_as_code=True it is part of the workflow's fingerprint, so it must be given as is, "
                "not templated or from an upstream task (a value that changes makes a new workflow every run)",
            )
    if "prompt" not in values or "url" not in values:
        return  # mapped (expand): checked when each task runs
    try:
        plan(
            Template("prompt", values["prompt"]),
            Template("url", values["url"]),
            schema=None,
            engine=None,
            block_options={},
        )
    except NotReplayable as exc:
        raise check.InvalidParameter(exc.field, exc.problem) from None


_MISSING: Any = object()
