"""What the login and download operators share: Skyvern's run-block fields, their checks and their XComs.

Skyvern runs a login or a download as a one-block workflow it makes on the fly, so both operators are
workflow runs to the shared machinery (:class:`~.base.SkyvernRunOperatorBase`): the same waiting, timeout,
cancel, reattach and XComs. Imported on DAG parse by :mod:`.login` and :mod:`.download_files`: module level
holds only what constructing and checking an operator needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.compat import conf
from airflow_provider_skyvern.enums import ProxyLocation
from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.operators.base import RUN_TEMPLATE_FIELDS, SkyvernRunOperatorBase

if TYPE_CHECKING:
    from airflow_provider_skyvern.models import RunResponse

COMMON_TEMPLATE_FIELDS = (
    "url",
    "webhook_url",
    "proxy_location",
    "totp_identifier",
    "totp_url",
    "browser_session_id",
    "browser_profile_id",
    "browser_address",
    "extra_http_headers",
    "user_agent",
    *RUN_TEMPLATE_FIELDS,
)
COMMON_RENDERERS = {"extra_http_headers": "json"}
COMMON_CHECKED = (
    *("url", "webhook_url", "proxy_location", "totp_identifier", "totp_url", "browser_session_id"),
    *("browser_profile_id", "start_fresh_browser", "browser_address", "extra_http_headers"),
    *("max_screenshot_scrolling_times", "user_agent", "timeout", "poll_interval"),
)


class SkyvernRunBlockOperatorBase(SkyvernRunOperatorBase):
    """The fields, checks and XComs of Skyvern's run-block endpoints; subclasses add their own fields."""

    def __init__(
        self,
        *,
        url: str | None = None,
        webhook_url: str | None = None,
        proxy_location: str | None = None,
        totp_identifier: str | None = None,
        totp_url: str | None = None,
        browser_session_id: str | None = None,
        browser_profile_id: str | None = None,
        start_fresh_browser: bool | None = None,
        browser_address: str | None = None,
        extra_http_headers: dict[str, str] | None = None,
        max_screenshot_scrolling_times: int | None = None,
        user_agent: str | None = None,
        wait_for_completion: bool = True,
        timeout: float = 1800,
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
        self.url = url
        self.webhook_url = webhook_url
        self.proxy_location = proxy_location
        self.totp_identifier = totp_identifier
        self.totp_url = totp_url
        self.browser_session_id = browser_session_id
        self.browser_profile_id = browser_profile_id
        self.start_fresh_browser = start_fresh_browser
        self.browser_address = browser_address
        self.extra_http_headers = extra_http_headers
        self.max_screenshot_scrolling_times = max_screenshot_scrolling_times
        self.user_agent = user_agent

    checked_arguments: ClassVar[tuple[str, ...]] = COMMON_CHECKED

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.checked_arguments}

    def _extra_xcoms(self, run: RunResponse) -> dict[str, Any]:
        return {"browser_session_id": run.browser_session_id}  # attempt and block outputs: results.py


def common_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The checked shared fields, as request-body keyword arguments (unset ones left out)."""
    value = values.get
    check.check_user_agent(value("user_agent"))
    start_fresh = value("start_fresh_browser")
    if start_fresh is not None and not isinstance(start_fresh, bool):
        raise check.InvalidParameter("start_fresh_browser", f"must be True or False, got {start_fresh!r}")
    fields: dict[str, Any] = {
        "url": check.check_url("url", value("url")),
        "webhook_url": check.check_url("webhook_url", value("webhook_url")),
        "proxy_location": _check_named_proxy(value("proxy_location")),
        "totp_identifier": check.check_header_value("totp_identifier", value("totp_identifier")),
        "totp_url": check.check_url("totp_url", value("totp_url")),
        "browser_session_id": _check_id("browser_session_id", value("browser_session_id")),
        "browser_profile_id": _check_id("browser_profile_id", value("browser_profile_id")),
        "start_fresh_browser": start_fresh,
        "browser_address": check.check_url(
            "browser_address", value("browser_address"), ("http", "https", "ws", "wss")
        ),
        "extra_http_headers": check.check_header_map("extra_http_headers", value("extra_http_headers")),
        "max_screenshot_scrolling_times": check.check_positive(
            "max_screenshot_scrolling_times", value("max_screenshot_scrolling_times"), allow_zero=True
        ),
    }
    return {name: v for name, v in fields.items() if v is not None}


def _check_named_proxy(value: Any) -> ProxyLocation | None:
    if value is None:
        return None
    proxy = ProxyLocation(value) if isinstance(value, (str, ProxyLocation)) else None
    if proxy is None or not proxy.is_known:
        raise check.InvalidParameter(
            "proxy_location",
            f"{value!r} is not accepted; login and download runs take a ProxyLocation name such as "
            "'RESIDENTIAL', 'RESIDENTIAL_GB' or 'NONE' (no geo target or proxy URL)",
        )
    return proxy


def _check_id(parameter: str, value: Any) -> str | None:
    """An id from a rendered template of an XCom nobody pushed reads ``None``: say so, not 404 later."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or value.strip() == "None":
        raise check.InvalidParameter(
            parameter, f"must be a Skyvern id string, got {value!r} (did the task that makes it push it?)"
        )
    return value.strip()
