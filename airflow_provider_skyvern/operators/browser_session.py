"""A Skyvern browser session as an Airflow setup/teardown pair, so the session is closed whatever happens.

A persistent browser session (``pbs_…``) keeps one browser, with its cookies and logins, across several
runs (a login, then downloads) and bills while it is open. :class:`SkyvernCreateBrowserSessionOperator`
opens it as the setup task; :class:`SkyvernCloseBrowserSessionOperator` closes it as the teardown, which
Airflow runs even when a task in between fails. :func:`skyvern_browser_session` makes and wires both.

Imported on DAG parse: module level holds only what constructing and checking the operators needs; the
hook and the request model are imported when a task runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from airflow.sdk import BaseOperator

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.exceptions import SkyvernError, SkyvernNotFoundError
from airflow_provider_skyvern.operators import validation as check

if TYPE_CHECKING:
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
    from airflow_provider_skyvern.models import BrowserSession
    from airflow_provider_skyvern.runs.sessions import SessionLedger

MIN_TIMEOUT_MINUTES = 5
MAX_TIMEOUT_MINUTES = 240
"""Skyvern 1.0.56's limits: below 5 is refused (422), above 240 is cut to 240 (with a ``warning``)."""
DEFAULT_TIMEOUT_MINUTES = 60
EXTENSIONS = ("ad-blocker", "captcha-solver")
SESSION_ID_XCOM_KEY = "browser_session_id"
CANDIDATE_SLACK = timedelta(minutes=5)
"""Sessions created this long before a lost create answer may still be it (clock skew)."""


class SkyvernCreateBrowserSessionOperator(BaseOperator):
    """
    Open a Skyvern persistent browser session (``POST /v1/browser_sessions``) and hand on its id.

    XCom: ``browser_session_id`` (also the return value), ``browser_address`` (its CDP address) and
    ``app_url``. Use it as a setup task, with :class:`SkyvernCloseBrowserSessionOperator` as its teardown
    (:func:`skyvern_browser_session` wires both). A warning in Skyvern's answer (a timeout it capped) is
    logged.

    If the answer to the create request is lost after it was sent, Skyvern may have opened a session
    anyway: the task fails saying it could not tell, and logs the sessions opened since then so they can
    be checked (nothing on the server says which one this task asked for, so none is closed blindly; an
    orphan ends by itself after ``session_timeout``).

    :param session_timeout: how long the session lives unless closed earlier: a ``timedelta`` of whole
        minutes, or an integer of minutes; 5 to 240 minutes (default 60). Make it outlast the tasks that
        use the session (their own ``timeout`` or ``execution_timeout``), or the browser closes under them.
    :param timeout: deprecated: ``session_timeout`` in minutes (every other Airflow ``timeout`` counts seconds).
    :param url: a page to open in the session's browser.
    :param proxy_location: a ProxyLocation name, a geo target dict or ``{"url": ...}`` (templated).
    :param proxy_session_id: keep the same proxy IP across sessions (with ``RESIDENTIAL_ISP``).
    :param extensions: browser extensions: ``ad-blocker``, ``captcha-solver``.
    :param browser_type: ``msedge``, ``chrome`` or ``stealth-chromium``.
    :param browser_profile_id: start from this saved browser profile (``bp_…``).
    :param generate_browser_profile: save the session's browser as a new profile when it closes.
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    """

    template_fields: Sequence[str] = ("url", "proxy_location", "proxy_session_id", "browser_profile_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"proxy_location": "json"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        session_timeout: timedelta | int | None = None,
        timeout: int | None = None,
        url: str | None = None,
        proxy_location: str | dict[str, Any] | None = None,
        proxy_session_id: str | None = None,
        extensions: list[str] | None = None,
        browser_type: str | None = None,
        browser_profile_id: str | None = None,
        generate_browser_profile: bool | None = None,
        skyvern_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.session_timeout = session_timeout
        self._timeout_parameter = "session_timeout"
        """Which argument gave the session's lifetime, so a bad value is reported under the name given."""
        if timeout is not None:
            self._deprecated_timeout(timeout)
        self.url = url
        self.proxy_location = proxy_location
        self.proxy_session_id = proxy_session_id
        self.extensions = extensions
        self.browser_type = browser_type
        self.browser_profile_id = browser_profile_id
        self.generate_browser_profile = generate_browser_profile
        self.skyvern_conn_id = skyvern_conn_id
        self._held: str | None = None
        """The session this try opened or took over: ``on_kill`` closes it."""
        self._in_flight: tuple[float, int] | None = None
        """(Unix time before the create was sent, the minutes it asked for) while its answer is awaited."""
        self._ledger: SessionLedger | None = None
        try:
            self._fields(parse_time=True)
        except check.InvalidParameter as exc:
            raise ValueError(f"{type(self).__name__}(task_id={self.task_id!r}) {exc}") from None

    def _deprecated_timeout(self, minutes: int) -> None:
        """``timeout`` was this operator's minutes: kept working, under a warning that says the new way."""
        from airflow.exceptions import AirflowProviderDeprecationWarning

        name = f"{type(self).__name__}(task_id={self.task_id!r})"
        if self.session_timeout is not None:
            raise ValueError(
                f"{name} session_timeout: give it alone, without the deprecated timeout (minutes)"
            )
        warnings.warn(
            f"{name}: timeout is deprecated, as it counts minutes where every other Airflow timeout counts "
            f"seconds; use session_timeout=timedelta(minutes={minutes!r})",
            AirflowProviderDeprecationWarning,
            stacklevel=3,  # the line that built the operator
        )
        self.session_timeout, self._timeout_parameter = minutes, "timeout"

    @cached_property
    def hook(self) -> SkyvernHook:
        from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

        return SkyvernHook(self.skyvern_conn_id)

    def _fields(self, *, parse_time: bool) -> dict[str, Any]:
        """The checked request fields; at parse time templated values are left for after rendering."""

        def known(name: str) -> Any:
            value = getattr(self, name)
            return None if parse_time and check.is_unresolved(value) else value

        fields = {
            "timeout": session_minutes(self._timeout_parameter, self.session_timeout),
            "url": check.check_url("url", known("url")),
            "proxy_location": check.check_proxy_location(known("proxy_location")),
            "proxy_session_id": known("proxy_session_id"),
            "extensions": _check_extensions(self.extensions),
            "browser_type": check.check_choice("browser_type", self.browser_type, check.BROWSER_TYPES),
            "browser_profile_id": known("browser_profile_id"),
            "generate_browser_profile": self.generate_browser_profile,
        }
        if fields["generate_browser_profile"] is not None and not isinstance(
            fields["generate_browser_profile"], bool
        ):
            raise check.InvalidParameter(
                "generate_browser_profile", f"must be True or False, got {self.generate_browser_profile!r}"
            )
        return {name: value for name, value in fields.items() if value is not None}

    def execute(self, context: Any) -> str:
        from airflow_provider_skyvern.compat import AirflowFailException
        from airflow_provider_skyvern.hooks.retry import may_have_created
        from airflow_provider_skyvern.models import CreateBrowserSessionRequest
        from airflow_provider_skyvern.runs.sessions import SessionLedger

        try:
            request = CreateBrowserSessionRequest(**self._fields(parse_time=False))
        except check.InvalidParameter as exc:
            raise AirflowFailException(f"{type(self).__name__}: {exc} (after rendering templates)") from None
        ledger = SessionLedger(context, self.hook, self.log)
        self._ledger = ledger
        session = ledger.earlier_session()  # a retry reuses the session its earlier try opened
        if session is not None:
            self._held = session.browser_session_id
        else:
            session = self._create(request, ledger, may_have_created)
        if session.warning:
            self.log.warning("Skyvern: %s (browser session %s)", session.warning, session.browser_session_id)
        self.log.info(
            "Opened Skyvern browser session %s (%s, timeout %s minutes): %s",
            session.browser_session_id,
            session.status,
            session.timeout,
            session.app_url or "(no app URL)",
        )
        ti = context["ti"]
        ti.xcom_push(key=SESSION_ID_XCOM_KEY, value=session.browser_session_id)
        for key in ("browser_address", "app_url"):
            value = getattr(session, key)
            if value is not None:
                ti.xcom_push(key=key, value=value)
        return session.browser_session_id

    def _create(self, request: Any, ledger: Any, may_have_created: Any) -> BrowserSession:
        """One create, recorded (Airflow 3.3+) before it is sent and completed with the session's id after."""
        timeout = request.timeout or DEFAULT_TIMEOUT_MINUTES
        asked = min(timeout, MAX_TIMEOUT_MINUTES)
        ledger.creating(asked)
        since = datetime.now(timezone.utc)
        self._in_flight = (since.timestamp(), asked)
        try:
            session: BrowserSession = self.hook.create_browser_session(request)
            self._held = session.browser_session_id
        except SkyvernError as exc:
            self._in_flight = None
            if not may_have_created(exc):
                ledger.forget()
                raise exc.reworded(f"Opening a Skyvern browser session failed: {exc}") from None
            self._log_candidates(since)
            raise exc.reworded(
                f"{exc}; could not tell whether a Skyvern browser session was created. The next try reuses it "
                "when it is the only session opened meanwhile (Airflow 3.3+), and opens no second one while "
                f"that is unknown; if one was opened and nothing takes it, it ends by itself after its timeout "
                f"({timeout} minutes)"
            ) from None
        self._in_flight = None
        ledger.created(session)
        return session

    def on_kill(self) -> None:
        """
        Marked failed, or cleared, while it runs: nothing else would close this try's session before its
        timeout (a failed setup leaves its teardown upstream_failed; a cleared setup's next try opens its own).
        So the session it opened or took over is closed, or, when the signal came while the create awaited its
        answer, the only session with the asked timeout opened since the create was sent.
        """
        session_id = self._held if self._held is not None else self._opened_in_flight()
        if session_id is None:
            return
        try:
            self.hook.close_browser_session(session_id)
        except SkyvernError as exc:
            self.log.warning(
                "The task was stopped and a Skyvern browser session may be left open: closing %s failed: %s; "
                "it ends by itself after its timeout",
                session_id,
                exc,
            )
            return
        self.log.info(
            "Closed Skyvern browser session %s: the task was stopped before its teardown could close it",
            session_id,
        )

    def _opened_in_flight(self) -> str | None:
        """The session the create awaiting its answer opened, when it is provably that one (else it says so)."""
        if self._in_flight is None or self._ledger is None:
            return None
        since, minutes = self._in_flight
        try:
            opened = self._ledger.opened_while(since, datetime.now(timezone.utc).timestamp(), minutes)
        except SkyvernError as exc:
            opened, found = [], f"could not list them: {exc}"
        else:
            found = ", ".join(s.browser_session_id for s in opened) or "none is listed yet"
        if len(opened) == 1:
            return opened[0].browser_session_id
        self.log.warning(
            "The task was stopped while its create awaited Skyvern's answer: a Skyvern browser session may be "
            "left open (opened since then with its timeout: %s); it ends by itself after its timeout "
            "(%s minutes)",
            found,
            minutes,
        )
        return None

    def _log_candidates(self, since: datetime) -> None:
        """Best effort: the sessions opened since the lost request, for a person to check."""
        try:
            sessions = self.hook.list_browser_sessions()
        except SkyvernError as exc:
            self.log.warning("Could not list Skyvern browser sessions to look for it: %s", exc)
            return
        recent = [s for s in sessions if _opened_since(s, since - CANDIDATE_SLACK)]
        if recent:
            self.log.warning(
                "Skyvern browser sessions opened since the lost request (one may be this task's): %s",
                ", ".join(f"{s.browser_session_id} ({s.status})" for s in recent),
            )
        else:
            self.log.warning("No Skyvern browser session opened since the lost request is listed (yet)")


class SkyvernCloseBrowserSessionOperator(BaseOperator):
    """
    Close a Skyvern browser session (``POST /v1/browser_sessions/{id}/close``): the teardown of
    :class:`SkyvernCreateBrowserSessionOperator`.

    Closing is idempotent: a session already closed, or one Skyvern no longer knows (404, e.g. it timed
    out and was cleaned up), counts as closed and the task succeeds. No id at all (the setup pushed none)
    is logged and succeeds too: there is nothing to close.

    :param browser_session_id: the session to close (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='session_create', key='browser_session_id') }}"`` or the create task's
        ``output``.
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    """

    template_fields: Sequence[str] = ("browser_session_id",)
    ui_color = "#e8f0fe"

    def __init__(
        self, *, browser_session_id: Any, skyvern_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not (check.is_unresolved(browser_session_id) or isinstance(browser_session_id, str)):
            raise ValueError(
                f"{type(self).__name__}(task_id={self.task_id!r}) browser_session_id: must be a session id "
                f"string, a template or an XComArg, got {browser_session_id!r}"
            )
        self.browser_session_id = browser_session_id
        self.skyvern_conn_id = skyvern_conn_id

    @cached_property
    def hook(self) -> SkyvernHook:
        from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

        return SkyvernHook(self.skyvern_conn_id)

    def execute(self, context: Any) -> None:
        session_id = self.browser_session_id
        if not isinstance(session_id, str) or session_id.strip() in ("", "None"):
            self.log.warning(
                "No Skyvern browser session id to close (got %r: the setup task pushed none); nothing to close",
                session_id,
            )
            return
        session_id = session_id.strip()
        try:
            self.hook.close_browser_session(session_id)
        except SkyvernNotFoundError as exc:
            if exc.no_such_endpoint:
                raise
            self.log.info(
                "Skyvern browser session %s not found (%s): already gone, nothing to close", session_id, exc
            )
            return
        try:
            status: str | None = self.hook.get_browser_session(session_id).status
        except SkyvernError as exc:  # closed all the same; the status is only for the log
            status = f"status unknown: {exc}"
        self.log.info("Closed Skyvern browser session %s (%s)", session_id, status)


class BrowserSessionTasks(NamedTuple):
    """What :func:`skyvern_browser_session` made: wire ``create >> [your tasks] >> close``."""

    create: SkyvernCreateBrowserSessionOperator
    close: SkyvernCloseBrowserSessionOperator
    browser_session_id: str
    """A template rendering to the session's id: pass it as ``browser_session_id=`` to tasks in between."""


def skyvern_browser_session(
    task_id_prefix: str = "browser_session",
    *,
    skyvern_conn_id: str = DEFAULT_CONN_ID,
    on_failure_fail_dagrun: bool = False,
    **create_kwargs: Any,
) -> BrowserSessionTasks:
    """
    A session-opening setup task ``<prefix>_create`` and its closing teardown ``<prefix>_close``.

    Airflow runs the teardown once the tasks between them are done, whether they succeeded or failed, so
    the session (which bills while open) is closed. The close task finds the id through the create task's
    XCom only.

    :param task_id_prefix: the two task ids' prefix (inside a TaskGroup, the group's prefix comes first).
    :param skyvern_conn_id: Airflow connection of type ``skyvern``, for both tasks.
    :param on_failure_fail_dagrun: a failed close fails the DAG run (Airflow's teardown option; default False).
    :param create_kwargs: :class:`SkyvernCreateBrowserSessionOperator` arguments (``session_timeout``,
        ``url``, ...).
    """
    create = SkyvernCreateBrowserSessionOperator(
        task_id=f"{task_id_prefix}_create", skyvern_conn_id=skyvern_conn_id, **create_kwargs
    )
    create.as_setup()  # type: ignore[no-untyped-call]  # untyped in the Task SDK
    session_id = f"{{{{ ti.xcom_pull(task_ids='{create.task_id}', key='{SESSION_ID_XCOM_KEY}') }}}}"
    close = SkyvernCloseBrowserSessionOperator(
        task_id=f"{task_id_prefix}_close", browser_session_id=session_id, skyvern_conn_id=skyvern_conn_id
    )
    close.as_teardown(setups=create, on_failure_fail_dagrun=on_failure_fail_dagrun)
    return BrowserSessionTasks(create, close, session_id)


def session_minutes(parameter: str, value: Any) -> int:
    """
    The session's lifetime in Skyvern's whole minutes, within Skyvern's limits: checked where the DAG is
    written rather than met as a 422 (or a silent cap).
    """
    if value is None:
        return DEFAULT_TIMEOUT_MINUTES
    minutes = value
    if isinstance(value, timedelta):
        minutes, rest = divmod(value, timedelta(minutes=1))
        if rest:
            raise check.InvalidParameter(parameter, f"Skyvern keeps a session for whole minutes, got {value}")
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int)
        or not (MIN_TIMEOUT_MINUTES <= minutes <= MAX_TIMEOUT_MINUTES)
    ):
        shown = str(value) if isinstance(value, timedelta) else repr(value)
        raise check.InvalidParameter(
            parameter,
            f"must be {MIN_TIMEOUT_MINUTES} to {MAX_TIMEOUT_MINUTES} minutes (a timedelta, or an integer of "
            f"minutes), got {shown}",
        )
    return minutes


def _check_extensions(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or any(v not in EXTENSIONS for v in value):
        raise check.InvalidParameter(
            "extensions", f"must be a list of {', '.join(EXTENSIONS)}, got {value!r}"
        )
    return list(value)


def _opened_since(session: BrowserSession, since: datetime) -> bool:
    return session.created_at >= since
