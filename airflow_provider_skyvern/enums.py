"""Skyvern's enums, open so that a value a newer server adds is kept instead of failing (API.md §2).

Kept apart from the pydantic models: a DAG file that constructs operators needs these, not the models.
"""

from __future__ import annotations

from enum import Enum


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
