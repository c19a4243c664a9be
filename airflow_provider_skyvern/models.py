"""Pydantic models of Skyvern's wire format (API.md §2-§3).

Skyvern's server moves faster than any client: responses keep unknown fields (``extra="allow"``) and
enums are open (an unknown value is kept as a pseudo-member instead of failing validation), so a new
server release never breaks a running DAG. Requests omit every field the caller did not set.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)


class OpenEnum(str, Enum):
    """A str enum that accepts unknown values, so a newer server cannot break parsing."""

    @classmethod
    def _missing_(cls, value: object) -> OpenEnum | None:
        if not isinstance(value, str):
            return None
        pseudo = str.__new__(cls, value)
        pseudo._name_ = value
        pseudo._value_ = value
        return pseudo

    @property
    def is_known(self) -> bool:
        return self._name_ in type(self).__members__

    @classmethod
    def known_values(cls) -> list[str]:
        return [member.value for member in cls]


class RunStatus(OpenEnum):
    created = "created"
    queued = "queued"
    running = "running"
    paused = "paused"
    timed_out = "timed_out"
    failed = "failed"
    terminated = "terminated"
    completed = "completed"
    canceled = "canceled"

    @property
    def is_terminal(self) -> bool:
        """Final statuses per Skyvern's TERMINAL_STATUSES; ``paused`` and unknown values are not final."""
        return self in _TERMINAL_STATUSES

    @property
    def is_success(self) -> bool:
        return self is RunStatus.completed


_TERMINAL_STATUSES = frozenset(
    {RunStatus.completed, RunStatus.failed, RunStatus.terminated, RunStatus.canceled, RunStatus.timed_out}
)


class RunEngine(OpenEnum):
    """Wire values are sent; the SDK's Python names (``skyvern_v2``) are accepted on input too."""

    skyvern_v1 = "skyvern-1.0"
    skyvern_v2 = "skyvern-2.0"
    skyvern_v3 = "skyvern-3.0"
    openai_cua = "openai-cua"
    anthropic_cua = "anthropic-cua"
    ui_tars = "ui-tars"
    yutori_navigator = "yutori-navigator"

    @classmethod
    def _missing_(cls, value: object) -> OpenEnum | None:
        if isinstance(value, str) and value in cls.__members__:
            return cls.__members__[value]
        return super()._missing_(value)

    @classmethod
    def accepted_names(cls) -> list[str]:
        return [*cls.__members__, *cls.known_values()]


class ProxyLocation(OpenEnum):
    RESIDENTIAL = "RESIDENTIAL"
    US_CA = "US-CA"
    US_NY = "US-NY"
    US_TX = "US-TX"
    US_FL = "US-FL"
    US_WA = "US-WA"
    RESIDENTIAL_ES = "RESIDENTIAL_ES"
    RESIDENTIAL_IE = "RESIDENTIAL_IE"
    RESIDENTIAL_GB = "RESIDENTIAL_GB"
    RESIDENTIAL_IN = "RESIDENTIAL_IN"
    RESIDENTIAL_JP = "RESIDENTIAL_JP"
    RESIDENTIAL_FR = "RESIDENTIAL_FR"
    RESIDENTIAL_DE = "RESIDENTIAL_DE"
    RESIDENTIAL_NZ = "RESIDENTIAL_NZ"
    RESIDENTIAL_ZA = "RESIDENTIAL_ZA"
    RESIDENTIAL_AR = "RESIDENTIAL_AR"
    RESIDENTIAL_AU = "RESIDENTIAL_AU"
    RESIDENTIAL_BR = "RESIDENTIAL_BR"
    RESIDENTIAL_TR = "RESIDENTIAL_TR"
    RESIDENTIAL_CA = "RESIDENTIAL_CA"
    RESIDENTIAL_MX = "RESIDENTIAL_MX"
    RESIDENTIAL_IT = "RESIDENTIAL_IT"
    RESIDENTIAL_NL = "RESIDENTIAL_NL"
    RESIDENTIAL_PH = "RESIDENTIAL_PH"
    RESIDENTIAL_KR = "RESIDENTIAL_KR"
    RESIDENTIAL_SA = "RESIDENTIAL_SA"
    RESIDENTIAL_ISP = "RESIDENTIAL_ISP"
    NONE = "NONE"


class RunType(OpenEnum):
    task_v1 = "task_v1"
    task_v2 = "task_v2"
    task_v3 = "task_v3"
    workflow_run = "workflow_run"
    openai_cua = "openai_cua"
    anthropic_cua = "anthropic_cua"
    ui_tars = "ui_tars"
    yutori_navigator = "yutori_navigator"


class ArtifactType(OpenEnum):
    recording = "recording"
    audio = "audio"
    session_replay = "session_replay"
    eval_score = "eval_score"
    eval_trajectory = "eval_trajectory"
    eval_rubrics = "eval_rubrics"
    browser_console_log = "browser_console_log"
    browser_session_action_log = "browser_session_action_log"
    skyvern_log = "skyvern_log"
    skyvern_log_raw = "skyvern_log_raw"
    screenshot = "screenshot"
    screenshot_llm = "screenshot_llm"
    screenshot_action = "screenshot_action"
    screenshot_final = "screenshot_final"
    screenshot_proxy = "screenshot_proxy"
    screenshot_pre_submit = "screenshot_pre_submit"
    llm_prompt = "llm_prompt"
    llm_request = "llm_request"
    llm_response = "llm_response"
    llm_response_parsed = "llm_response_parsed"
    llm_response_rendered = "llm_response_rendered"
    visible_elements_id_css_map = "visible_elements_id_css_map"
    visible_elements_id_frame_map = "visible_elements_id_frame_map"
    visible_elements_tree = "visible_elements_tree"
    visible_elements_tree_trimmed = "visible_elements_tree_trimmed"
    visible_elements_tree_in_prompt = "visible_elements_tree_in_prompt"
    hashed_href_map = "hashed_href_map"
    visible_elements_id_xpath_map = "visible_elements_id_xpath_map"
    html = "html"
    html_scrape = "html_scrape"
    html_action = "html_action"
    html_pre_submit = "html_pre_submit"
    trace = "trace"
    har = "har"
    script_file = "script_file"
    pdf = "pdf"
    step_archive = "step_archive"
    task_archive = "task_archive"
    download = "download"
    unknown = "unknown"


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""Skyvern sometimes serializes timestamps without an offset; they are UTC."""


class _Request(BaseModel):
    """
    Requests reject unknown fields (a typo must not be dropped silently) and send only set, non-null fields.

    A field set to ``None`` counts as not given and is left out rather than sent as ``null``: Skyvern 1.0.56
    answers 422 to a null ``engine``, ``publish_workflow``, ``start_fresh_browser`` or
    ``generate_browser_profile``, and a field left out gets the server's default. Only the keys in
    :attr:`NULL_IS_MEANINGFUL` keep an explicit ``null``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    NULL_IS_MEANINGFUL: ClassVar[frozenset[str]] = frozenset()
    """Wire keys whose explicit ``None`` is sent as ``null``, because the server reads null differently."""

    @model_serializer(mode="wrap")
    def _drop_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {
            key: value for key, value in data.items() if value is not None or key in self.NULL_IS_MEANINGFUL
        }

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


_PROXY_NULL = frozenset({"proxy_location"})
"""``proxy_location=None`` goes out as ``null`` on purpose: Skyvern 1.0.56 reads an omitted proxy_location as
RESIDENTIAL, but a null one as "not chosen", so a workflow run inherits the workflow's saved proxy location
(the only way to get it) and a task gets the server's runtime default. For a browser session both are the same."""


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class GeoTarget(_Request):
    """
    A proxy geo target, normalised as Skyvern 1.0.56's own ``GeoTarget`` does on arrival.

    ``country`` is upper-cased (``us`` -> ``US``) and ``subdivision`` upper-cased without its country prefix
    (``US-CA`` -> ``CA``), so what is sent (and fingerprinted) is what the server keeps. ``is_isp`` is the
    wire key ``isISP``.
    """

    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2 code.")
    subdivision: str | None = Field(
        default=None, max_length=10, description="ISO 3166-2 code without the country prefix, e.g. CA."
    )
    city: str | None = Field(default=None, max_length=100, description="English city name (GeoNames).")
    is_isp: bool | None = Field(default=None, alias="isISP", description="Use an ISP proxy for this target.")

    @field_validator("country")
    @classmethod
    def _upper_country(cls, value: str) -> str:
        return value.upper()

    @field_validator("subdivision")
    @classmethod
    def _subdivision_without_country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.upper()
        return value.split("-", 1)[1] if "-" in value else value


ProxySetting = ProxyLocation | GeoTarget | dict[str, Any]
"""A named proxy pool, a geographic target, or (self-hosted) ``{"url": "http://user:pass@host:port"}``."""


class TaskRunRequest(_Request):
    """Body of ``POST /v1/run/tasks``."""

    NULL_IS_MEANINGFUL = _PROXY_NULL

    prompt: str
    url: str | None = None
    engine: RunEngine | None = None
    title: str | None = None
    proxy_location: ProxySetting | None = None
    data_extraction_schema: dict[str, Any] | list[Any] | str | None = None
    error_code_mapping: dict[str, str] | None = None
    max_steps: int | None = None
    webhook_url: str | None = None
    totp_identifier: str | None = None
    totp_url: str | None = None
    browser_session_id: str | None = None
    browser_profile_id: str | None = None
    start_fresh_browser: bool | None = None
    model: dict[str, Any] | None = None
    extra_http_headers: dict[str, str] | None = None
    cdp_connect_headers: dict[str, str] | None = None
    publish_workflow: bool | None = None
    include_action_history_in_verification: bool | None = None
    max_screenshot_scrolls: int | None = None
    browser_address: str | None = None
    run_with: str | None = None
    file_ids: list[str] | None = None


class WorkflowRunRequest(_Request):
    """
    Body of ``POST /v1/run/agents`` (an agent is a workflow).

    ``workflow_id`` (the ``wpid_…`` id) goes out as ``agent_id``, the key of SDK 1.0.56 and the published
    OpenAPI; like the server, the model also takes ``agent_id`` on input.
    """

    NULL_IS_MEANINGFUL = _PROXY_NULL

    workflow_id: str = Field(
        validation_alias=AliasChoices("agent_id", "workflow_id"), serialization_alias="agent_id"
    )
    parameters: dict[str, Any] | None = None
    title: str | None = None
    proxy_location: ProxySetting | None = None
    webhook_url: str | None = None
    totp_url: str | None = None
    totp_identifier: str | None = None
    browser_session_id: str | None = None
    browser_profile_id: str | None = None
    reuse_browser_session: bool | None = None
    start_fresh_browser: bool | None = None
    max_screenshot_scrolls: int | None = None
    max_elapsed_time_minutes: int | None = Field(default=None, ge=1, le=480)
    extra_http_headers: dict[str, str] | None = None
    cdp_connect_headers: dict[str, str] | None = None
    browser_address: str | None = None
    ai_fallback: bool | None = None
    run_with: str | None = None
    run_metadata: dict[str, str] | None = None
    browser_type: str | None = None
    file_ids: list[str] | None = None


class CreateBrowserSessionRequest(_Request):
    """Body of ``POST /v1/browser_sessions``; ``timeout`` is in minutes (server caps it at 240)."""

    NULL_IS_MEANINGFUL = _PROXY_NULL

    url: str | None = None
    timeout: int | None = Field(default=None, ge=5)
    proxy_location: ProxySetting | None = None
    proxy_session_id: str | None = None
    extensions: list[str] | None = None
    browser_type: str | None = None
    browser_profile_id: str | None = None
    generate_browser_profile: bool | None = None


class FileInfo(_Response):
    url: str
    checksum: str | None = None
    filename: str | None = None
    file_size: int | None = None
    modified_at: UtcDatetime | None = None
    artifact_id: str | None = None


class ScriptRunResponse(_Response):
    ai_fallback_triggered: bool = False
    script_id: str | None = None
    script_revision_id: str | None = None


class RunResponse(_Response):
    """Fields common to every run type (server ``BaseRunResponse``)."""

    run_id: str
    status: RunStatus
    run_type: RunType | None = None
    output: dict[str, Any] | list[Any] | str | None = None
    downloaded_files: list[FileInfo] | None = None
    recording_url: str | None = None
    recording_archived: bool | None = None
    screenshot_urls: list[str] | None = None
    failure_reason: str | None = None
    created_at: UtcDatetime
    modified_at: UtcDatetime
    queued_at: UtcDatetime | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    app_url: str | None = None
    browser_session_id: str | None = None
    browser_profile_id: str | None = None
    max_screenshot_scrolls: int | None = None
    script_run: ScriptRunResponse | None = None
    errors: list[dict[str, Any]] | None = None
    step_count: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def error_codes(self) -> list[str]:
        """Error codes Skyvern attached to a failed run (from ``errors`` entries)."""
        return [str(err["error_code"]) for err in self.errors or [] if err.get("error_code")]


class TaskRunResponse(RunResponse):
    TASK_RUN_TYPES: ClassVar[frozenset[str]] = frozenset(
        {"task_v1", "task_v2", "task_v3", "openai_cua", "anthropic_cua", "ui_tars", "yutori_navigator"}
    )
    run_request: dict[str, Any] | None = None


class WorkflowRunResponse(RunResponse):
    run_type: RunType | None = RunType.workflow_run
    run_with: str | None = None
    ai_fallback: bool | None = None
    script_id: str | None = None
    run_request: dict[str, Any] | None = None
    attempt: int | None = None
    retry_pending: bool | None = None
    next_attempt_at: UtcDatetime | None = None

    @property
    def is_terminal(self) -> bool:
        """A workflow waiting for an automatic retry is not finished yet."""
        return self.status.is_terminal and not self.retry_pending


def parse_run_response(payload: Any) -> RunResponse:
    """``GET /v1/runs/{id}``: the model is chosen by ``run_type``; an unknown run type still parses."""
    run_type = payload.get("run_type") if isinstance(payload, dict) else None
    if run_type == RunType.workflow_run:
        return WorkflowRunResponse.model_validate(payload)
    if run_type in TaskRunResponse.TASK_RUN_TYPES:
        return TaskRunResponse.model_validate(payload)
    return RunResponse.model_validate(payload)


class RunListItem(_Response):
    """One row of ``GET /v1/runs``."""

    task_run_id: str
    run_id: str
    task_run_type: RunType
    status: RunStatus
    title: str | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    created_at: UtcDatetime
    workflow_permanent_id: str | None = None
    workflow_deleted: bool | None = None
    trigger_type: str | None = None


class Artifact(_Response):
    artifact_id: str
    artifact_type: ArtifactType
    uri: str
    organization_id: str
    created_at: UtcDatetime
    modified_at: UtcDatetime
    run_id: str | None = None
    task_id: str | None = None
    step_id: str | None = None
    workflow_run_id: str | None = None
    browser_session_id: str | None = None
    checksum: str | None = None
    file_size: int | None = None
    signed_url: str | None = None
    archived: bool | None = None


class TimelineEntry(_Response):
    """One node of ``GET /v1/runs/{id}/timeline``; ``block`` and ``thought`` keep Skyvern's full objects."""

    type: Literal["thought", "block"] | str
    block: dict[str, Any] | None = None
    thought: dict[str, Any] | None = None
    children: list[TimelineEntry] | None = None
    created_at: UtcDatetime
    modified_at: UtcDatetime


class WebhookReplayResponse(_Response):
    run_id: str
    run_type: str
    default_webhook_url: str | None = None
    target_webhook_url: str | None = None
    payload: str
    headers: dict[str, str]
    status_code: int | None = None
    latency_ms: int | None = None
    response_body: str | None = None
    error: str | None = None


class BrowserSession(_Response):
    browser_session_id: str
    organization_id: str
    status: str | None = None
    timeout: int | None = None
    browser_address: str | None = None
    app_url: str | None = None
    created_at: UtcDatetime
    modified_at: UtcDatetime
    started_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    warning: str | None = None
