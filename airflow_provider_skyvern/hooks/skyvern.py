"""SkyvernHook: the only module that speaks HTTP to Skyvern.

Each endpoint is described once as an :class:`ApiCall` (method, path, body, parser, whether it creates a
billable resource); a sync and an async executor send it through one ``httpx`` client per hook (the async
one per event loop), under the retry policy and time budget of :mod:`airflow_provider_skyvern.hooks.retry`.
The API key travels only through :class:`ApiKeyAuth`, never in a client's default headers.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import anyio
import httpx
from pydantic import TypeAdapter, ValidationError
from tenacity import AsyncRetrying, Retrying

from airflow_provider_skyvern import (
    CONN_TYPE,
    DEFAULT_BASE_URL,
    DEFAULT_CONN_ID,
    __version__,
    get_provider_info,
)
from airflow_provider_skyvern.compat import BaseHook, amask_secret, mask_secret
from airflow_provider_skyvern.exceptions import (
    SkyvernAuthError,
    SkyvernConnectionError,
    SkyvernError,
    SkyvernHTTPError,
    SkyvernNotFoundError,
    SkyvernRequestRefusedLocally,
    SkyvernResponseError,
    SkyvernServerError,
    SkyvernTransportError,
    describe_error_body,
    http_error_class,
    one_line,
)
from airflow_provider_skyvern.hooks.clock import SYSTEM_CLOCK, Clock
from airflow_provider_skyvern.hooks.pool import POOL_LIMITS, SHARED_CLIENTS, Lease
from airflow_provider_skyvern.hooks.retry import CallBudget, retry_arguments
from airflow_provider_skyvern.models import (
    Artifact,
    ArtifactType,
    BrowserSession,
    CreateBrowserSessionRequest,
    RunListItem,
    RunResponse,
    RunStatus,
    TaskRunRequest,
    TaskRunResponse,
    TimelineEntry,
    WebhookReplayResponse,
    WorkflowRunRequest,
    WorkflowRunResponse,
    parse_run_response,
)
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_skyvern.run_block_requests import DownloadFilesRequest, LoginRequest

T = TypeVar("T")
QueryParams = list[tuple[str, str | int | float | bool | None]]

DEFAULT_REQUEST_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_TOTAL_TIMEOUT = 180.0
KILL_CANCEL_TIMEOUT = 3.0
"""A cancel sent while the task is being killed: one attempt, well inside the supervisor's 5 s grace."""
USER_AGENT = f"airflow-provider-skyvern/{__version__}"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")  # noqa: S104 - a host name, not a bind
DOWNLOAD_TIME_BUDGET = 24 * 3600.0
"""A download's retries stop at the connection's ``max_retries``; time alone (each read has its own
``request_timeout``) stops them only after this long, or at the caller's ``deadline``."""
# Errors httpx raises before any byte of the request left this machine: a retry cannot duplicate work.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class ApiCall(Generic[T]):
    """One Skyvern request, independent of sync/async transport."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: QueryParams = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    creates: bool = False
    """Creates a billable resource: retried only when nothing can have been created."""


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook needs from an Airflow connection; ``repr`` never shows the key."""

    base_url: str
    api_key: str = field(repr=False)
    request_timeout: float
    max_retries: int
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    """Seconds one call may take, every retry and wait included."""

    @classmethod
    def from_connection(cls, conn: Connection) -> ConnectionSettings:
        api_key = clean_api_key(conn.password, conn.conn_id)
        extra = conn.extra_dejson
        base_url = _base_url(conn.host, conn.port)
        if base_url.endswith("/v1"):
            raise SkyvernConnectionError(
                f"Skyvern connection {conn.conn_id!r}: base URL {base_url} ends in /v1, but the provider adds "
                f"/v1 itself; set the host to {base_url.removesuffix('/v1')}"
            )
        return cls(
            base_url=base_url,
            api_key=api_key,
            request_timeout=_extra_number(extra, "request_timeout", DEFAULT_REQUEST_TIMEOUT, conn.conn_id),
            max_retries=int(_extra_number(extra, "max_retries", DEFAULT_MAX_RETRIES, conn.conn_id)),
            total_timeout=_extra_number(extra, "total_timeout", DEFAULT_TOTAL_TIMEOUT, conn.conn_id),
        )


def clean_api_key(password: str | None, conn_id: str) -> str:
    """
    The key without the whitespace around it (a secret file written by ``echo``, a Kubernetes secret mount,
    a paste); a key still holding a character an HTTP header cannot carry fails here, before any request,
    with a line that names the connection and the kind of character, never the value.
    """
    api_key = (password or "").strip()
    if not api_key:
        raise SkyvernConnectionError(
            f"Skyvern connection {conn_id!r} has no API key: set its password (API key) field"
        )
    odd = _odd_character(api_key)
    if odd is not None:
        raise SkyvernConnectionError(
            f"Skyvern connection {conn_id!r}: its API key (password) holds {odd} inside, which no Skyvern API "
            "key has; set the key again (the value is not shown)"
        )
    return api_key


def _odd_character(text: str) -> str | None:
    """What kind of character makes ``text`` no API key: keys are printable ASCII without spaces."""
    for char in text:
        if "\x21" <= char <= "\x7e":
            continue
        if char in "\r\n":
            return "a line break"
        if char == "\t":
            return "a tab"
        if char == " ":
            return "a space"
        return "a non-ASCII character" if ord(char) > 0x7F else "a control character"
    return None


class ApiKeyAuth(httpx.Auth):
    """Adds ``x-api-key`` to each request as it is sent: no client or hook attribute holds the header."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-api-key"] = self._api_key
        yield request

    def __repr__(self) -> str:
        return "ApiKeyAuth(x-api-key=***)"


class DownloadSink(Protocol):
    """Where :meth:`SkyvernHook.download` puts the bytes; it asks a resumed request from ``size`` on."""

    @property
    def size(self) -> int:
        """Bytes received so far (the next attempt asks for ``Range: bytes=<size>-``)."""
        ...

    def write(self, chunk: bytes) -> None: ...

    def restart(self) -> None:
        """The server sends the whole file again (it ignored the Range): drop every byte received."""
        ...


def redacted_url(url: str) -> str:
    """``url`` without its query and fragment: presigned URLs carry their signature there."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


_DOWNLOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("skyvern_downloading", default=False)


class _RedactDownloadUrls(logging.Filter):
    """httpx logs each request's full URL at INFO (Airflow 3.0 shows it in task logs): for this hook's
    downloads, whose presigned URLs carry a signature in the query, it logs the URL without the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _DOWNLOADING.get() and isinstance(record.args, tuple):
            record.args = tuple(
                redacted_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactDownloadUrls())


class _HideRefusedHeaders(logging.Filter):
    """httpcore's DEBUG trace quotes the header h11 refused (``Illegal header value b'...'``): keep the
    line, not the value, which may be a key or a header a user templated."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Illegal header" in message:
            record.msg, record.args = message.split("Illegal header", 1)[0] + "Illegal header (not shown)", ()
        return True


for _trace_logger in ("httpcore.http11", "httpcore.http2"):  # a parent's filter skips its children's records
    logging.getLogger(_trace_logger).addFilter(_HideRefusedHeaders())


def _base_url(host: str | None, port: int | None) -> str:
    """Host may hold a full URL (``http://localhost:8000``) or a bare host; empty means Skyvern Cloud."""
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        scheme = "http" if host.split(":")[0].split("/")[0] in _LOCAL_HOSTS else "https"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    if port and parts.port is None:
        host = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
    return host.rstrip("/")


def _extra_number(extra: dict[str, Any], key: str, default: float, conn_id: str) -> float:
    value = extra.get(key)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SkyvernConnectionError(
            f"Skyvern connection {conn_id!r}: extra {key!r} must be a number, got {value!r}"
        ) from None
    if number < 0:
        raise SkyvernConnectionError(
            f"Skyvern connection {conn_id!r}: extra {key!r} must be >= 0, got {value!r}"
        )
    return number


def _model_parser(adapter: TypeAdapter[T]) -> Callable[[Any], T]:
    return adapter.validate_python


def _none(_: Any) -> None:
    return None


def _path_id(value: str, name: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return quote(value, safe="")


_TASK_RUN = _model_parser(TypeAdapter(TaskRunResponse))
_WORKFLOW_RUN = _model_parser(TypeAdapter(WorkflowRunResponse))
_ANY_RUN = parse_run_response
_TIMELINE = _model_parser(TypeAdapter(list[TimelineEntry]))
_ARTIFACTS = _model_parser(TypeAdapter(list[Artifact]))
_ARTIFACT = _model_parser(TypeAdapter(Artifact))
_RUN_LIST = _model_parser(TypeAdapter(list[RunListItem]))
_WEBHOOK_REPLAY = _model_parser(TypeAdapter(WebhookReplayResponse))
_BROWSER_SESSION = _model_parser(TypeAdapter(BrowserSession))
_BROWSER_SESSIONS = _model_parser(TypeAdapter(list[BrowserSession]))


class SkyvernHook(BaseHook):
    """
    Talks to Skyvern Cloud or a self-hosted Skyvern with the API key of an Airflow connection.

    Every call exists in a sync form (``get_run``) and an async form (``aget_run``) for triggers. The hook
    keeps one ``httpx.Client``, created on first use; async calls borrow one of the event loop's clients for
    this endpoint, shared with every other hook on the loop (:mod:`.pool`). Close or give them back with
    :meth:`close` / :meth:`aclose` (or use the hook as a context manager). A call gives up after
    the connection's ``total_timeout`` (retries and waits included) or at its ``deadline``, whichever is
    first.

    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    :param clock: what the hook reads the time from and sleeps on (tests pass their own).
    """

    conn_name_attr = "skyvern_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Skyvern"

    def __init__(self, skyvern_conn_id: str = DEFAULT_CONN_ID, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__()
        self.skyvern_conn_id = skyvern_conn_id
        self.clock = clock
        self._settings: ConnectionSettings | None = None
        self._client: httpx.Client | None = None
        self._lease: Lease | None = None
        self._lease_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"SkyvernHook(skyvern_conn_id={self.skyvern_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """For Airflow < 3.2, which reads the form from the hook; 3.2+ reads the same provider info."""
        (connection_type,) = get_provider_info()["connection-types"]
        behaviour: dict[str, Any] = connection_type["ui-field-behaviour"]
        return {key.replace("-", "_"): value for key, value in behaviour.items()}

    # ---- connection and clients -------------------------------------------------------------------

    @property
    def settings(self) -> ConnectionSettings:
        """Resolved synchronously; async code must call :meth:`aget_settings` first."""
        if self._settings is None:
            # Airflow's connection lookup registers the key with the log masker (sync and async alike), as
            # stored: a key trimmed of a newline or space is registered as sent, too.
            conn = self.get_connection(self.skyvern_conn_id)
            settings = ConnectionSettings.from_connection(conn)
            if settings.api_key != conn.password:
                mask_secret(settings.api_key)
            self._settings = settings
        return self._settings

    async def aget_settings(self) -> ConnectionSettings:
        if self._settings is None:
            if AIRFLOW_V_3_1_PLUS:
                conn = await self.aget_connection(self.skyvern_conn_id)
                settings = ConnectionSettings.from_connection(conn)
                if settings.api_key != conn.password:
                    await amask_secret(settings.api_key)
                self._settings = settings
            else:  # pragma: no cover - Airflow 3.0: no async lookup. asgiref, as Airflow's own triggers do:
                # asyncio.to_thread would run the triggerer's comms on another loop, and 3.0's mask_secret
                # refuses to run on the event loop's thread.
                from asgiref.sync import sync_to_async

                await sync_to_async(lambda: self.settings)()
        assert self._settings is not None
        return self._settings

    @staticmethod
    def _client_options(settings: ConnectionSettings) -> dict[str, Any]:
        return {
            "base_url": settings.base_url,
            "auth": ApiKeyAuth(settings.api_key),
            "headers": {"User-Agent": USER_AGENT},
            "timeout": httpx.Timeout(settings.request_timeout),
            # Not followed: the key would go to whatever host a redirect names.
            "follow_redirects": False,
        }

    def get_conn(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(**self._client_options(self.settings))
        return self._client

    async def aget_conn(self) -> httpx.AsyncClient:
        """The running loop's shared client for this endpoint; one made on another loop is never reused."""
        return (await self._alease()).client

    async def _alease(self) -> Lease:
        settings = await self.aget_settings()
        loop = asyncio.get_running_loop()  # from here on no await: concurrent first calls share one client
        if self._lease is None or self._lease_loop is not loop:
            self._lease = SHARED_CLIENTS.acquire(
                self._endpoint(settings),
                lambda ssl_context: httpx.AsyncClient(
                    **self._client_options(settings), limits=POOL_LIMITS, verify=ssl_context
                ),
            )
            self._lease_loop = loop
        return self._lease

    @staticmethod
    def _endpoint(settings: ConnectionSettings) -> tuple[str, str]:
        return SHARED_CLIENTS.endpoint(settings.base_url, settings.api_key)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Give the shared client back (the last hook on the loop closes it)."""
        lease, self._lease = self._lease, None
        loop, self._lease_loop = self._lease_loop, None
        if lease is not None and self._settings is not None and loop is asyncio.get_running_loop():
            await SHARED_CLIENTS.release(self._endpoint(self._settings), lease)

    def __enter__(self) -> SkyvernHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> SkyvernHook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- executors ----------------------------------------------------------------------------------

    def call(self, api_call: ApiCall[T], *, deadline: float | None = None) -> T:
        """Send ``api_call`` under the retry policy, within ``total_timeout`` and ``deadline`` (Unix time)."""
        settings = self.settings
        client = self.get_conn()
        budget = CallBudget.start(self.clock, settings.total_timeout, deadline)
        retrying = Retrying(
            sleep=self.clock.sleep,
            **retry_arguments(
                creates=api_call.creates, max_retries=settings.max_retries, budget=budget, logger=self.log
            ),
        )

        def attempt() -> httpx.Response:
            timeout = budget.attempt_timeout(settings.request_timeout)
            try:
                response = client.request(**_request_arguments(api_call), timeout=timeout)
            except httpx.TransportError as exc:
                raise _transport_error(api_call, exc, settings.base_url) from None
            _raise_for_status(api_call, response, settings.base_url)
            return response

        try:
            response: httpx.Response = retrying(attempt)
        except SkyvernError as exc:
            raise _gave_up(exc, retrying.statistics, budget) from None
        return _parse(api_call, response)

    async def acall(self, api_call: ApiCall[T], *, deadline: float | None = None) -> T:
        """:meth:`call` for the event loop; each attempt is also cut off at its timeout as a whole."""
        settings = await self.aget_settings()
        lease = await self._alease()
        budget = CallBudget.start(self.clock, settings.total_timeout, deadline)
        retrying = AsyncRetrying(
            sleep=self.clock.asleep,
            **retry_arguments(
                creates=api_call.creates, max_retries=settings.max_retries, budget=budget, logger=self.log
            ),
        )

        async def attempt() -> httpx.Response:
            timeout = budget.attempt_timeout(settings.request_timeout)
            sending = False
            try:
                # anyio, not asyncio.wait_for: on Python < 3.12 wait_for can swallow the triggerer's cancel
                with anyio.fail_after(timeout):
                    # A free slot first: httpcore rescans its whole queue on every request event.
                    async with lease.slots:
                        sending = True
                        response = await lease.client.request(**_request_arguments(api_call), timeout=timeout)
            except httpx.TransportError as exc:
                raise _transport_error(api_call, exc, settings.base_url) from None
            except TimeoutError:  # a server trickling bytes (httpx times each read, not the whole) or no slot
                late: httpx.TransportError = (
                    httpx.ReadTimeout(f"no complete answer within {timeout:.1f} s")
                    if sending
                    else httpx.PoolTimeout(f"no free connection within {timeout:.1f} s")
                )
                raise _transport_error(api_call, late, settings.base_url) from None
            _raise_for_status(api_call, response, settings.base_url)
            return response

        try:
            response: httpx.Response = await retrying(attempt)
        except SkyvernError as exc:
            raise _gave_up(exc, retrying.statistics, budget) from None
        return _parse(api_call, response)

    def cancel_run_at_once(self, run_id: str, timeout: float = KILL_CANCEL_TIMEOUT) -> None:
        """
        One cancel attempt on a fresh client, no retries: for ``on_kill``, which runs in a signal handler
        that may have interrupted this hook's own client mid-request (its pool lock is not reentrant).
        """
        settings = self.settings
        api_call = _cancel_run_call(run_id)
        with httpx.Client(**self._client_options(settings)) as client:
            try:
                response = client.request(**_request_arguments(api_call), timeout=timeout)
            except httpx.TransportError as exc:
                raise _transport_error(api_call, exc, settings.base_url) from None
        _raise_for_status(api_call, response, settings.base_url)

    # ---- files --------------------------------------------------------------------------------------

    def download(
        self,
        url: str,
        sink: DownloadSink,
        *,
        deadline: float | None = None,
    ) -> None:
        """
        Stream ``url`` (a run's presigned file URL) into ``sink``, one network read (64 KiB) at a time.

        A stream that breaks is resumed with ``Range: bytes=<sink.size>-`` under the hook's retry policy
        (a 206 continues, a 200 starts over through ``sink.restart()``). The API key goes only to the
        Skyvern API itself (``<base URL>/v1/...``, e.g. ``/v1/artifacts/{id}/content``); a presigned URL
        on any other host or path gets no key and may redirect. Errors name the URL without its query.
        """
        settings = self.settings
        client = self.get_conn()
        target = urlsplit(url)
        if target.scheme not in ("http", "https"):
            raise SkyvernError(
                f"Skyvern file {redacted_url(url)} is not reachable over HTTP (a self-hosted Skyvern with "
                "local storage hands out file:// URIs): configure S3 or Azure storage on the server"
            )
        to_api = _is_api_url(url, settings.base_url)
        shown = redacted_url(url)
        budget = CallBudget.start(self.clock, DOWNLOAD_TIME_BUDGET, deadline)
        retrying = Retrying(
            sleep=self.clock.sleep,
            **retry_arguments(
                creates=False, max_retries=settings.max_retries, budget=budget, logger=self.log
            ),
        )

        def attempt() -> None:
            offset = sink.size
            # identity: a Range counts encoded bytes, so a compressed body could not be resumed
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                self.log.info("Resuming the download of %s at byte %d", shown, offset)
            try:
                with client.stream(
                    "GET",
                    url,
                    headers=headers,
                    timeout=budget.attempt_timeout(settings.request_timeout),
                    auth=httpx.USE_CLIENT_DEFAULT if to_api else None,
                    follow_redirects=not to_api,
                ) as response:
                    if _already_complete(response, offset):
                        return
                    if not response.is_success:
                        response.read()
                        raise _download_error(shown, response, to_api)
                    if response.status_code == 206 and not _starts_at(response, offset):
                        sink.restart()  # not the part asked for: the next attempt asks for the whole file
                        raise httpx.RemoteProtocolError(f"asked for bytes {offset}-, answered another range")
                    if offset and response.status_code != 206:
                        sink.restart()  # the server ignored the Range and sends the whole file again
                    _pour(response, sink)
                    if response.status_code == 206 and not _range_reached_end(response, sink.size):
                        raise httpx.RemoteProtocolError(
                            f"the body ended at byte {sink.size}, short of its range"
                        )
            except httpx.LocalProtocolError:  # its text quotes the offending header
                raise SkyvernRequestRefusedLocally("GET", shown) from None
            except httpx.TransportError as exc:
                raise SkyvernTransportError("GET", shown, exc, request_sent=True) from None

        downloading = _DOWNLOADING.set(True)
        try:
            retrying(attempt)
        except SkyvernError as exc:
            raise _gave_up(exc, retrying.statistics, budget) from None
        finally:
            _DOWNLOADING.reset(downloading)

    def artifact_content_url(self, artifact_id: str) -> str:
        """``<base URL>/v1/artifacts/{id}/content``: the artifact's bytes, sent only with the API key."""
        return f"{self.settings.base_url}/v1/artifacts/{_path_id(artifact_id, 'artifact_id')}/content"

    # ---- endpoints (sync) ---------------------------------------------------------------------------

    def run_task(self, request: TaskRunRequest, *, user_agent: str | None = None) -> TaskRunResponse:
        """Start a task run (``POST /v1/run/tasks``); never blindly retried, see module retry."""
        return self.call(_run_task_call(request, user_agent))

    def run_workflow(
        self,
        request: WorkflowRunRequest,
        *,
        user_agent: str | None = None,
        max_steps_override: int | None = None,
        template: bool | None = None,
    ) -> WorkflowRunResponse:
        """
        Start a workflow (agent) run: ``POST /v1/run/agents``, the path of SDK 1.0.56 and the OpenAPI.

        ``template`` is sent as ``?template=true`` / ``?template=false`` when given, as the SDK does; left
        ``None``, the query is omitted and the server's default (false) applies.
        """
        return self.call(_run_workflow_call(request, user_agent, max_steps_override, template))

    def run_login(self, request: LoginRequest, *, user_agent: str | None = None) -> WorkflowRunResponse:
        """
        Log in with a stored credential (``POST /v1/run/tasks/login``). Skyvern builds a one-block
        workflow for it: the answer is a workflow run (``wr_…``). Never blindly retried, like every create.
        """
        return self.call(_run_block_call("login", request, user_agent))

    def run_download_files(
        self, request: DownloadFilesRequest, *, user_agent: str | None = None
    ) -> WorkflowRunResponse:
        """Download files (``POST /v1/run/tasks/download_files``); a workflow run, as for :meth:`run_login`."""
        return self.call(_run_block_call("download_files", request, user_agent))

    def get_run(self, run_id: str, *, deadline: float | None = None) -> RunResponse:
        """``deadline`` (Unix time) bounds the call, retries included, for a wait that must end on time."""
        return self.call(_get_run_call(run_id), deadline=deadline)

    def cancel_run(self, run_id: str) -> None:
        self.call(_cancel_run_call(run_id))

    def get_run_timeline(self, run_id: str, *, deadline: float | None = None) -> list[TimelineEntry]:
        """Workflow runs and skyvern-2.0 tasks only: Skyvern answers 400 for a skyvern-1.0 task."""
        return self.call(_timeline_call(run_id), deadline=deadline)

    def get_run_artifacts(self, run_id: str, artifact_types: ArtifactTypes = None) -> list[Artifact]:
        """A run's artifacts; ``artifact_types`` (one type or several) filters them, ``None`` lists all."""
        return self.call(_artifacts_call(run_id, artifact_types))

    def get_artifact(self, artifact_id: str) -> Artifact:
        return self.call(_artifact_call(artifact_id))

    def retry_run_webhook(self, run_id: str, webhook_url: str | None = None) -> WebhookReplayResponse:
        return self.call(_retry_webhook_call(run_id, webhook_url))

    def list_runs(
        self,
        *,
        search_key: str | None = None,
        statuses: Sequence[RunStatus | str] = (),
        page: int = 1,
        page_size: int = 10,
    ) -> list[RunListItem]:
        return self.call(_list_runs_call(search_key, statuses, page, page_size))

    def create_browser_session(self, request: CreateBrowserSessionRequest | None = None) -> BrowserSession:
        return self.call(_create_session_call(request or CreateBrowserSessionRequest()))

    def get_browser_session(self, browser_session_id: str) -> BrowserSession:
        return self.call(_get_session_call(browser_session_id))

    def list_browser_sessions(self) -> list[BrowserSession]:
        """``GET /v1/browser_sessions``: the organisation's sessions as the server lists them."""
        return self.call(_list_sessions_call())

    def close_browser_session(self, browser_session_id: str) -> None:
        self.call(_close_session_call(browser_session_id))

    # ---- endpoints (async) --------------------------------------------------------------------------

    async def arun_task(self, request: TaskRunRequest, *, user_agent: str | None = None) -> TaskRunResponse:
        return await self.acall(_run_task_call(request, user_agent))

    async def arun_workflow(
        self,
        request: WorkflowRunRequest,
        *,
        user_agent: str | None = None,
        max_steps_override: int | None = None,
        template: bool | None = None,
    ) -> WorkflowRunResponse:
        return await self.acall(_run_workflow_call(request, user_agent, max_steps_override, template))

    async def arun_login(
        self, request: LoginRequest, *, user_agent: str | None = None
    ) -> WorkflowRunResponse:
        return await self.acall(_run_block_call("login", request, user_agent))

    async def arun_download_files(
        self, request: DownloadFilesRequest, *, user_agent: str | None = None
    ) -> WorkflowRunResponse:
        return await self.acall(_run_block_call("download_files", request, user_agent))

    async def aget_run(self, run_id: str, *, deadline: float | None = None) -> RunResponse:
        return await self.acall(_get_run_call(run_id), deadline=deadline)

    async def acancel_run(self, run_id: str) -> None:
        await self.acall(_cancel_run_call(run_id))

    async def aget_run_timeline(self, run_id: str, *, deadline: float | None = None) -> list[TimelineEntry]:
        return await self.acall(_timeline_call(run_id), deadline=deadline)

    async def aget_run_artifacts(self, run_id: str, artifact_types: ArtifactTypes = None) -> list[Artifact]:
        return await self.acall(_artifacts_call(run_id, artifact_types))

    async def aget_artifact(self, artifact_id: str) -> Artifact:
        return await self.acall(_artifact_call(artifact_id))

    async def aretry_run_webhook(self, run_id: str, webhook_url: str | None = None) -> WebhookReplayResponse:
        return await self.acall(_retry_webhook_call(run_id, webhook_url))

    async def alist_runs(
        self,
        *,
        search_key: str | None = None,
        statuses: Sequence[RunStatus | str] = (),
        page: int = 1,
        page_size: int = 10,
    ) -> list[RunListItem]:
        return await self.acall(_list_runs_call(search_key, statuses, page, page_size))

    async def acreate_browser_session(
        self, request: CreateBrowserSessionRequest | None = None
    ) -> BrowserSession:
        return await self.acall(_create_session_call(request or CreateBrowserSessionRequest()))

    async def aget_browser_session(self, browser_session_id: str) -> BrowserSession:
        return await self.acall(_get_session_call(browser_session_id))

    async def alist_browser_sessions(self) -> list[BrowserSession]:
        return await self.acall(_list_sessions_call())

    async def aclose_browser_session(self, browser_session_id: str) -> None:
        await self.acall(_close_session_call(browser_session_id))

    # ---- Airflow UI ---------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated call (``GET /v1/runs?page_size=1``); a rejected key is said plainly."""
        try:
            self.list_runs(page_size=1)
        except SkyvernAuthError:
            return False, (
                f"Skyvern at {self.settings.base_url} rejected the API key (HTTP 403): "
                "check the connection's API key and base URL"
            )
        except Exception as exc:
            return False, str(exc)
        finally:
            self.close()
        return True, f"Connected to Skyvern at {self.settings.base_url}"


# ---- request descriptions -----------------------------------------------------------------------------


ArtifactTypes = ArtifactType | str | Iterable[ArtifactType | str] | None
"""One artifact type or several (each sent as a repeated ``artifact_type`` query key)."""


def _agent_headers(user_agent: str | None) -> dict[str, str]:
    return {"x-user-agent": user_agent} if user_agent else {}


def _run_task_call(request: TaskRunRequest, user_agent: str | None) -> ApiCall[TaskRunResponse]:
    return ApiCall(
        "POST",
        "/v1/run/tasks",
        _TASK_RUN,
        json=request.to_wire(),
        headers=_agent_headers(user_agent),
        creates=True,
    )


def _run_workflow_call(
    request: WorkflowRunRequest, user_agent: str | None, max_steps_override: int | None, template: bool | None
) -> ApiCall[WorkflowRunResponse]:
    headers = _agent_headers(user_agent)
    if max_steps_override is not None:
        headers["x-max-steps-override"] = str(max_steps_override)
    # /v1/run/workflows (body key workflow_id) is a hidden alias on the server; this is the public route.
    return ApiCall(
        "POST",
        "/v1/run/agents",
        _WORKFLOW_RUN,
        json=request.to_wire(),
        params=[] if template is None else [("template", "true" if template else "false")],
        headers=headers,
        creates=True,
    )


def _run_block_call(
    block: str, request: LoginRequest | DownloadFilesRequest, user_agent: str | None
) -> ApiCall[WorkflowRunResponse]:
    return ApiCall(
        "POST",
        f"/v1/run/tasks/{block}",
        _WORKFLOW_RUN,
        json=request.to_wire(),
        headers=_agent_headers(user_agent),
        creates=True,
    )


def _get_run_call(run_id: str) -> ApiCall[RunResponse]:
    return ApiCall("GET", f"/v1/runs/{_path_id(run_id, 'run_id')}", _ANY_RUN)


def _cancel_run_call(run_id: str) -> ApiCall[None]:
    return ApiCall("POST", f"/v1/runs/{_path_id(run_id, 'run_id')}/cancel", _none)


def _timeline_call(run_id: str) -> ApiCall[list[TimelineEntry]]:
    return ApiCall("GET", f"/v1/runs/{_path_id(run_id, 'run_id')}/timeline", _TIMELINE)


def _artifacts_call(run_id: str, artifact_types: ArtifactTypes) -> ApiCall[list[Artifact]]:
    # A str is itself an iterable (of letters): one type given bare must not become one filter per letter.
    types = (artifact_types,) if isinstance(artifact_types, str) else artifact_types or ()
    params: QueryParams = [("artifact_type", str(ArtifactType(t).value)) for t in types]
    return ApiCall("GET", f"/v1/runs/{_path_id(run_id, 'run_id')}/artifacts", _ARTIFACTS, params=params)


def _artifact_call(artifact_id: str) -> ApiCall[Artifact]:
    return ApiCall("GET", f"/v1/artifacts/{_path_id(artifact_id, 'artifact_id')}", _ARTIFACT)


def _retry_webhook_call(run_id: str, webhook_url: str | None) -> ApiCall[WebhookReplayResponse]:
    body = {"webhook_url": webhook_url} if webhook_url else None
    # Not `creates`, but a replay delivers a webhook: like a create, it is retried only when unsent.
    return ApiCall(
        "POST",
        f"/v1/runs/{_path_id(run_id, 'run_id')}/retry_webhook",
        _WEBHOOK_REPLAY,
        json=body,
        creates=True,
    )


def _list_runs_call(
    search_key: str | None, statuses: Sequence[RunStatus | str], page: int, page_size: int
) -> ApiCall[list[RunListItem]]:
    params: QueryParams = [("page", page), ("page_size", page_size)]
    params += [("status", str(RunStatus(s).value)) for s in statuses]
    if search_key:
        params.append(("search_key", search_key))
    return ApiCall("GET", "/v1/runs", _RUN_LIST, params=params)


def _create_session_call(request: CreateBrowserSessionRequest) -> ApiCall[BrowserSession]:
    return ApiCall("POST", "/v1/browser_sessions", _BROWSER_SESSION, json=request.to_wire(), creates=True)


def _get_session_call(browser_session_id: str) -> ApiCall[BrowserSession]:
    return ApiCall(
        "GET", f"/v1/browser_sessions/{_path_id(browser_session_id, 'browser_session_id')}", _BROWSER_SESSION
    )


def _list_sessions_call() -> ApiCall[list[BrowserSession]]:
    return ApiCall("GET", "/v1/browser_sessions", _BROWSER_SESSIONS)


def _close_session_call(browser_session_id: str) -> ApiCall[None]:
    return ApiCall(
        "POST", f"/v1/browser_sessions/{_path_id(browser_session_id, 'browser_session_id')}/close", _none
    )


# ---- response handling --------------------------------------------------------------------------------


def _is_api_url(url: str, base_url: str) -> bool:
    """Same scheme, host and port as the connection and a path under its ``/v1``: the key may go there."""
    target, base = urlsplit(url), urlsplit(base_url)
    same_origin = (target.scheme, target.netloc.lower()) == (base.scheme, base.netloc.lower())
    return same_origin and target.path.startswith(base.path.rstrip("/") + "/v1/")


def _content_range(response: httpx.Response) -> tuple[int | None, int | None, int | None]:
    """``Content-Range: bytes a-b/n`` (or ``bytes */n``) as (a, b, n); unknown parts are None."""
    value = response.headers.get("content-range", "")
    unit, _, spec = value.partition(" ")
    if unit.strip().lower() != "bytes":
        return None, None, None
    span, _, total = spec.partition("/")
    size = int(total) if total.strip().isdigit() else None
    first, _, last = span.partition("-")
    if first.strip().isdigit() and last.strip().isdigit():
        return int(first), int(last), size
    return None, None, size


def _pour(response: httpx.Response, sink: DownloadSink) -> None:
    """The body into ``sink`` piece by piece, as httpcore reads it (at most 64 KiB each): writing a piece
    while it is still in the CPU's cache costs less than gathering 1 MiB first (bench/README.md)."""
    for piece in response.iter_bytes():
        sink.write(piece)


_XML_ERROR = re.compile(r"<Code>([^<]*)</Code>(?:.*?<Message>([^<]*)</Message>)?", re.DOTALL)


def _download_error(shown_url: str, response: httpx.Response, to_api: bool) -> SkyvernHTTPError:
    """A file server's refusal, its status and reason. Of an S3/GCS XML error only ``Code`` and ``Message``
    are kept: the rest (``SignatureProvided``, ``StringToSign``, ``AWSAccessKeyId``) echoes the URL's
    credentials."""
    xml = _XML_ERROR.search(response.text) if "<Error" in response.text[:200] else None
    if xml is not None:
        detail = one_line(": ".join(part for part in xml.groups() if part))
    else:
        detail = describe_error_body(_json_or_none(response), response.text)
    if to_api:
        error_class = http_error_class(response.status_code)
    else:  # not Skyvern: its key hints would mislead
        error_class = SkyvernServerError if response.status_code >= 500 else SkyvernHTTPError
        if response.status_code in (400, 403):
            detail += " (a presigned URL expired or was refused: read the run again for fresh URLs)"
    return error_class("GET", shown_url, response.status_code, detail, retry_after=_retry_after(response))


def _starts_at(response: httpx.Response, offset: int) -> bool:
    return _content_range(response)[0] == offset


def _range_reached_end(response: httpx.Response, size: int) -> bool:
    _, last, _ = _content_range(response)
    return last is None or size >= last + 1


def _already_complete(response: httpx.Response, offset: int) -> bool:
    """A 416 to ``bytes=<offset>-`` whose ``Content-Range: bytes */<offset>`` says nothing is left."""
    return bool(offset) and response.status_code == 416 and _content_range(response)[2] == offset


def _request_arguments(api_call: ApiCall[Any]) -> dict[str, Any]:
    return {
        "method": api_call.method,
        "url": api_call.path,
        "json": api_call.json,
        "params": api_call.params,
        "headers": api_call.headers,
    }


def _transport_error(
    api_call: ApiCall[Any], exc: httpx.TransportError, base_url: str
) -> SkyvernTransportError | SkyvernRequestRefusedLocally:
    if isinstance(exc, httpx.LocalProtocolError):  # its text quotes the offending header, key included
        return SkyvernRequestRefusedLocally(api_call.method, f"{base_url}{api_call.path}")
    return SkyvernTransportError(
        api_call.method,
        api_call.path,
        exc,
        request_sent=not isinstance(exc, _NOT_SENT_ERRORS),
        base_url=base_url,
    )


def _gave_up(exc: SkyvernError, statistics: dict[str, Any], budget: CallBudget) -> SkyvernError:
    """The last error, saying how long the call tried when it tried more than once or ran out of time."""
    attempts, elapsed = int(statistics.get("attempt_number", 1)), budget.elapsed()
    if attempts <= 1 and elapsed < 1.0:  # one quick answer: nothing worth adding
        return exc
    plural = "s" if attempts > 1 else ""
    return exc.reworded(f"{exc}; gave up after {attempts} attempt{plural} in {elapsed:.1f} s")


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


def _raise_for_status(api_call: ApiCall[Any], response: httpx.Response, base_url: str) -> None:
    if response.is_success:
        return
    body = _json_or_none(response)
    error_class = http_error_class(response.status_code)
    error = error_class(
        api_call.method,
        api_call.path,
        response.status_code,
        describe_error_body(body, response.text),
        retry_after=_retry_after(response),
        body=body,
    )
    if isinstance(error, SkyvernNotFoundError) and error.no_such_endpoint:
        raise error.reworded(
            f"{error} (no such endpoint at {base_url}: check the Skyvern connection's base URL, which is "
            "the server's root without /v1)"
        )
    raise error


def _parse(api_call: ApiCall[T], response: httpx.Response) -> T:
    if not response.content:
        payload: Any = None
    else:
        try:
            payload = response.json()
        except ValueError:
            raise SkyvernResponseError(
                api_call.method, api_call.path, f"not JSON: {response.text[:200]!r}"
            ) from None
    try:
        return api_call.parse(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "body"
        raise SkyvernResponseError(
            api_call.method,
            api_call.path,
            f"{exc.error_count()} field error(s), first {location}: {first['msg']}",
        ) from None
