"""SkyvernHook: the only class that speaks HTTP to Skyvern, and the thin layer that joins its parts.

The parts, one job each: :mod:`.connection` (settings read from the Airflow connection), :mod:`.calls`
(the endpoint table: each endpoint described once as an :class:`ApiCall`), :mod:`.responses` (parsing and
error mapping), :mod:`.downloads` (files, resumed with ``Range``), :mod:`.pool` (the event loop's shared
async clients) and :mod:`.retry` (when to try again). A sync and an async executor here send an
:class:`ApiCall` under the retry policy and time budget; each endpoint's method pair is generated from
its one description, so the sync and async lists cannot drift. The API key travels only through
:class:`~.connection.ApiKeyAuth`, never in a client's default headers.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

import anyio
import httpx
from tenacity import AsyncRetrying, Retrying

from airflow_provider_skyvern import CONN_TYPE, DEFAULT_CONN_ID, get_provider_info
from airflow_provider_skyvern.compat import BaseHook, amask_secret, mask_secret
from airflow_provider_skyvern.exceptions import SkyvernAuthError, SkyvernError
from airflow_provider_skyvern.hooks import calls
from airflow_provider_skyvern.hooks.calls import ApiCall, ArtifactTypes, QueryParams, path_id
from airflow_provider_skyvern.hooks.clock import SYSTEM_CLOCK, Clock, ServerClock
from airflow_provider_skyvern.hooks.connection import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    USER_AGENT,
    ApiKeyAuth,
    ConnectionSettings,
    clean_api_key,
    client_options,
)
from airflow_provider_skyvern.hooks.downloads import (
    DOWNLOAD_TIME_BUDGET,
    DownloadSink,
    download,
    redacted_url,
)
from airflow_provider_skyvern.hooks.pool import POOL_LIMITS, SHARED_CLIENTS, Lease
from airflow_provider_skyvern.hooks.responses import gave_up, parse, raise_for_status, transport_error
from airflow_provider_skyvern.hooks.retry import CallBudget, retry_arguments
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "DOWNLOAD_TIME_BUDGET",
    "KILL_CANCEL_TIMEOUT",
    "USER_AGENT",
    "ApiCall",
    "ApiKeyAuth",
    "ArtifactTypes",
    "ConnectionSettings",
    "DownloadSink",
    "QueryParams",
    "SkyvernHook",
    "clean_api_key",
    "redacted_url",
]

T = TypeVar("T")
P = ParamSpec("P")

KILL_CANCEL_TIMEOUT = 3.0
"""A cancel sent while the task is being killed: one attempt, well inside the supervisor's 5 s grace."""


def _earlier(first: float | None, second: float | None) -> float | None:
    return second if first is None else first if second is None else min(first, second)


class _Endpoint(Generic[P, T]):
    """A hook method made from an :mod:`.calls` factory: it describes the call and sends it."""

    def __init__(self, factory: Callable[P, ApiCall[T]]) -> None:
        self.factory = factory
        self.__doc__ = factory.__doc__
        self.name = factory.__name__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    def _named(self, method: Callable[..., Any]) -> None:
        functools.update_wrapper(method, self.factory)  # signature and docstring of the description
        method.__name__ = self.name
        method.__qualname__ = f"SkyvernHook.{self.name}"


class _Sync(_Endpoint[P, T]):
    @overload
    def __get__(self, hook: None, owner: type[Any]) -> _Sync[P, T]: ...
    @overload
    def __get__(self, hook: SkyvernHook, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, hook: SkyvernHook | None, owner: type[Any]) -> _Sync[P, T] | Callable[P, T]:
        if hook is None:
            return self
        factory = self.factory

        def send(*args: P.args, **kwargs: P.kwargs) -> T:
            return hook.call(factory(*args, **kwargs))

        self._named(send)
        return send


class _Async(_Endpoint[P, T]):
    @overload
    def __get__(self, hook: None, owner: type[Any]) -> _Async[P, T]: ...
    @overload
    def __get__(self, hook: SkyvernHook, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(
        self, hook: SkyvernHook | None, owner: type[Any]
    ) -> _Async[P, T] | Callable[P, Coroutine[Any, Any, T]]:
        if hook is None:
            return self
        factory = self.factory

        async def send(*args: P.args, **kwargs: P.kwargs) -> T:
            return await hook.acall(factory(*args, **kwargs))

        self._named(send)
        return send


def endpoint(factory: Callable[P, ApiCall[T]]) -> tuple[_Sync[P, T], _Async[P, T]]:
    """The sync and the async hook method of one endpoint (``get_run``, ``aget_run``)."""
    return _Sync(factory), _Async(factory)


class SkyvernHook(BaseHook):
    """
    Talks to Skyvern Cloud or a self-hosted Skyvern with the API key of an Airflow connection.

    Every call exists in a sync form (``get_run``) and an async form (``aget_run``) for triggers, both made
    from the one description of the endpoint in :mod:`.calls` (so they take the same arguments). The hook
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
        self._lease_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self.server_clock: ServerClock | None = None
        """This machine's clock against the server's, from the ``Date`` of the last answer that had one."""

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
        return self._read_settings(named=True)

    def _read_settings(self, *, named: bool) -> ConnectionSettings:
        if self._settings is None:
            # Airflow's connection lookup registers the key with the log masker (sync and async alike), as
            # stored: a key trimmed of a newline or space is registered as sent, too.
            conn = self.get_connection(self.skyvern_conn_id)
            settings = ConnectionSettings.from_connection(conn, named=named)
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

    def get_conn(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(**client_options(self.settings))
        return self._client

    async def aget_conn(self) -> httpx.AsyncClient:
        """
        The running loop's shared client for this endpoint, borrowed: other hooks on the loop use it too,
        so do not close it (:meth:`aclose` gives it back). One closed anyway is replaced on the next call.
        """
        return (await self._alease()).client

    async def _alease(self) -> Lease:
        settings = await self.aget_settings()
        loop = asyncio.get_running_loop()  # from here on no await: concurrent first calls share one client
        lease = self._lease
        if lease is not None and self._lease_loop is not None and self._lease_loop() is loop:
            return SHARED_CLIENTS.usable(lease)
        if lease is not None:  # the hook moved to another loop: its first loop's lease has no user left here
            SHARED_CLIENTS.give_up(lease)
        self._lease = SHARED_CLIENTS.acquire(
            self._endpoint(settings),
            lambda ssl_context: httpx.AsyncClient(
                **client_options(settings), limits=POOL_LIMITS, verify=ssl_context
            ),
        )
        self._lease_loop = weakref.ref(loop)  # the lease holds the loop's clients, never the loop itself
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
        if lease is None:
            return
        if loop is not None and loop() is asyncio.get_running_loop():
            await SHARED_CLIENTS.release(lease)
        else:
            SHARED_CLIENTS.give_up(lease)

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
        budget = CallBudget.start(self.clock, settings.total_timeout, _earlier(deadline, api_call.deadline))
        retrying = Retrying(
            sleep=self.clock.sleep,
            **retry_arguments(
                creates=api_call.creates, max_retries=settings.max_retries, budget=budget, logger=self.log
            ),
        )

        def attempt() -> httpx.Response:
            timeout = budget.attempt_timeout(settings.request_timeout)
            sent = self.clock.time()
            try:
                response = client.request(**api_call.request_arguments(), timeout=timeout)
            except httpx.TransportError as exc:
                raise transport_error(api_call, exc, settings.base_url) from None
            self._read_server_clock(response, sent)
            raise_for_status(api_call, response, settings.base_url, settings.conn_id)
            return response

        try:
            response: httpx.Response = retrying(attempt)
        except SkyvernError as exc:
            raise gave_up(exc, retrying.statistics, budget) from None
        return parse(api_call, response)

    async def acall(self, api_call: ApiCall[T], *, deadline: float | None = None) -> T:
        """:meth:`call` for the event loop; each attempt is also cut off at its timeout as a whole."""
        settings = await self.aget_settings()
        lease = await self._alease()
        budget = CallBudget.start(self.clock, settings.total_timeout, _earlier(deadline, api_call.deadline))
        retrying = AsyncRetrying(
            sleep=self.clock.asleep,
            **retry_arguments(
                creates=api_call.creates, max_retries=settings.max_retries, budget=budget, logger=self.log
            ),
        )

        async def attempt() -> httpx.Response:
            timeout = budget.attempt_timeout(settings.request_timeout)
            sending = False
            sent = self.clock.time()
            try:
                # anyio, not asyncio.wait_for: on Python < 3.12 wait_for can swallow the triggerer's cancel
                with anyio.fail_after(timeout):
                    # A free slot first: httpcore rescans its whole queue on every request event.
                    async with lease.slots:
                        sending = True
                        client = SHARED_CLIENTS.usable(lease).client
                        response = await client.request(**api_call.request_arguments(), timeout=timeout)
            except httpx.TransportError as exc:
                raise transport_error(api_call, exc, settings.base_url) from None
            except TimeoutError:  # a server trickling bytes (httpx times each read, not the whole) or no slot
                late: httpx.TransportError = (
                    httpx.ReadTimeout(f"no complete answer within {timeout:.1f} s")
                    if sending
                    else httpx.PoolTimeout(f"no free connection within {timeout:.1f} s")
                )
                raise transport_error(api_call, late, settings.base_url) from None
            self._read_server_clock(response, sent)
            raise_for_status(api_call, response, settings.base_url, settings.conn_id)
            return response

        try:
            response: httpx.Response = await retrying(attempt)
        except SkyvernError as exc:
            raise gave_up(exc, retrying.statistics, budget) from None
        return parse(api_call, response)

    def _read_server_clock(self, response: httpx.Response, sent: float) -> None:
        received = self.clock.time()
        measured = [ServerClock.read(date, sent, received) for date in response.headers.get_list("date")]
        if measured and None not in measured:  # a proxy may add its own Date: the widest bounds hold
            now = ServerClock(
                min(m.ahead_at_least for m in measured if m is not None),
                max(m.ahead_at_most for m in measured if m is not None),
            )
            self.server_clock = now if self.server_clock is None else self.server_clock.narrowed(now)

    def cancel_run_at_once(self, run_id: str, timeout: float = KILL_CANCEL_TIMEOUT) -> None:
        """
        One cancel attempt on a fresh client, no retries: for ``on_kill``, which runs in a signal handler
        that may have interrupted this hook's own client mid-request (its pool lock is not reentrant).
        """
        settings = self.settings
        api_call = calls.cancel_run(run_id)
        with httpx.Client(**client_options(settings)) as client:
            try:
                response = client.request(**api_call.request_arguments(), timeout=timeout)
            except httpx.TransportError as exc:
                raise transport_error(api_call, exc, settings.base_url) from None
        raise_for_status(api_call, response, settings.base_url, settings.conn_id)

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
        download(self.get_conn(), self.settings, url, sink, clock=self.clock, log=self.log, deadline=deadline)

    def artifact_content_url(self, artifact_id: str) -> str:
        """``<base URL>/v1/artifacts/{id}/content``: the artifact's bytes, sent only with the API key."""
        return f"{self.settings.base_url}/v1/artifacts/{path_id(artifact_id, 'artifact_id')}/content"

    # ---- endpoints: each a sync and an async method from one description in .calls ------------------

    run_task, arun_task = endpoint(calls.run_task)
    run_workflow, arun_workflow = endpoint(calls.run_workflow)
    run_login, arun_login = endpoint(calls.run_login)
    run_download_files, arun_download_files = endpoint(calls.run_download_files)
    get_run, aget_run = endpoint(calls.get_run)
    cancel_run, acancel_run = endpoint(calls.cancel_run)
    get_run_timeline, aget_run_timeline = endpoint(calls.get_run_timeline)
    get_run_artifacts, aget_run_artifacts = endpoint(calls.get_run_artifacts)
    get_artifact, aget_artifact = endpoint(calls.get_artifact)
    retry_run_webhook, aretry_run_webhook = endpoint(calls.retry_run_webhook)
    list_runs, alist_runs = endpoint(calls.list_runs)
    create_browser_session, acreate_browser_session = endpoint(calls.create_browser_session)
    get_browser_session, aget_browser_session = endpoint(calls.get_browser_session)
    list_browser_sessions, alist_browser_sessions = endpoint(calls.list_browser_sessions)
    close_browser_session, aclose_browser_session = endpoint(calls.close_browser_session)
    create_workflow, acreate_workflow = endpoint(calls.create_workflow)
    list_workflows, alist_workflows = endpoint(calls.list_workflows)

    # ---- Airflow UI ---------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """
        One cheap authenticated call (``GET /v1/runs?page_size=1``); a rejected key is said plainly. Messages
        do not name the connection: Airflow tests a form under a random id the user never made.
        """
        try:
            self._read_settings(named=False)
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
