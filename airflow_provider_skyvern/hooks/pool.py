"""Shared ``httpx.AsyncClient``s per event loop and Skyvern endpoint, used by every hook on that loop.

A triggerer runs thousands of triggers on one loop; a client each would build thousands of SSL contexts
(tens of ms of CPU and most of a megabyte each) and open thousands of connection pools. Hooks borrow a
client for their endpoint (base URL + key) and give it back; the last one out closes them. Entries
belong to their loop, so nothing is shared across loops or threads; they end with the loop, so a process
that runs many short loops (``asyncio.run`` in a script or a test) keeps neither the loops nor sockets.

Why several small clients and not one big pool: httpcore rescans every connection of a pool (a socket
poll for each idle one, and for each idle one every connection again) on every request event, so one
pool's cost per request grows with its size. The endpoint's connections are split into :data:`SHARDS`
clients of :data:`CONNECTIONS_PER_SHARD`, all built on one SSL context; each client's requests wait for
a free connection on an ``anyio.Semaphore`` (first come, first served, O(1)) rather than in httpcore's
queue, which is rescanned on every event as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import httpx

SHARDS = 8
CONNECTIONS_PER_SHARD = 4
"""32 connections per loop and endpoint: at 100 ms a request, about 300 polls a second (bench/README.md)."""
POOL_LIMITS = httpx.Limits(
    max_connections=CONNECTIONS_PER_SHARD,
    max_keepalive_connections=CONNECTIONS_PER_SHARD,
    keepalive_expiry=30,  # longer than most gaps between polls, so a busy loop rarely reconnects
)

Endpoint = tuple[str, str]
ClientFactory = Callable[[ssl.SSLContext], httpx.AsyncClient]


@dataclass(eq=False)
class Lease:
    """One client of an endpoint's and the slots that keep its requests out of httpcore's queue.

    The client is borrowed: a borrower that closes it gets a new one in its place on the next
    :meth:`SharedClients.usable` (for every hook on this shard), not an error on every later request.
    """

    client: httpx.AsyncClient
    slots: anyio.Semaphore
    owner: _Endpoint = field(repr=False)


@dataclass(eq=False)
class _Endpoint:
    key: Endpoint
    ssl_context: ssl.SSLContext
    make: ClientFactory
    loop: _LoopClients
    leases: list[Lease] = field(default_factory=list)
    users: int = 0
    handed_out: int = 0
    closed: bool = False


@dataclass(eq=False)
class _LoopClients:
    """One loop's endpoints, and the task that closes their clients when the loop shuts down."""

    loop: weakref.ref[asyncio.AbstractEventLoop]
    by_endpoint: dict[Endpoint, _Endpoint] = field(default_factory=dict)
    watcher: asyncio.Task[None] | None = None


class SharedClients:
    """The registry; module-level :data:`SHARED_CLIENTS` is the one the hook uses.

    A loop's clients hold the loop (through their sockets), so a weak key alone would keep every loop
    forever: entries are dropped when the loop shuts down (``asyncio.run`` and ``asyncio.Runner`` cancel
    every task before closing it, and a watcher task then closes the clients on the loop), when the last
    hook gives them back, or, for a loop closed without that, at the next acquire on any loop.
    """

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, _LoopClients] = {}
        self._lock = threading.Lock()  # hooks on different threads' loops may register at once

    @staticmethod
    def endpoint(base_url: str, api_key: str) -> Endpoint:
        """A digest, not the key: the registry must not keep secrets in plain sight."""
        return base_url, hashlib.sha256(api_key.encode()).hexdigest()

    def acquire(self, endpoint: Endpoint, make: ClientFactory) -> Lease:
        """A client of the running loop's for ``endpoint``; ``make`` builds one on the shared SSL context."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._forget_closed_loops()
            clients = self._by_loop.get(loop)
            if clients is None:
                clients = self._by_loop[loop] = _LoopClients(weakref.ref(loop))
                clients.watcher = loop.create_task(self._close_at_loop_end(loop, clients))
            entry = clients.by_endpoint.get(endpoint)
            if entry is None:
                entry = clients.by_endpoint[endpoint] = _Endpoint(
                    endpoint, httpx.create_ssl_context(), make, clients
                )
            if len(entry.leases) < SHARDS:
                slots = anyio.Semaphore(CONNECTIONS_PER_SHARD)
                entry.leases.append(Lease(make(entry.ssl_context), slots, entry))
            lease = entry.leases[entry.handed_out % len(entry.leases)]
            entry.handed_out += 1
            entry.users += 1
        return self.usable(lease)

    def usable(self, lease: Lease) -> Lease:
        """``lease`` with an open client: one a borrower closed is replaced, for every holder at once."""
        if lease.client.is_closed:
            with self._lock:
                if lease.client.is_closed:
                    lease.client = lease.owner.make(lease.owner.ssl_context)
        return lease

    async def release(self, lease: Lease) -> None:
        """Give ``lease`` back; the last user on this loop closes the endpoint's clients."""
        with self._lock:
            entry = self._let_go(lease)
        if entry is not None:
            await _close(entry)

    def give_up(self, lease: Lease) -> None:
        """Give back a lease of a loop that is not the running one (its hook moved to another loop)."""
        with self._lock:
            entry = self._let_go(lease)
        if entry is None:
            return
        owner = entry.loop.loop()
        if owner is not None and not owner.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: its watcher closed them
                owner.call_soon_threadsafe(owner.create_task, _close(entry))

    def loops(self) -> int:
        """Loops whose clients are kept (for tests and diagnostics)."""
        return len(self._by_loop)

    def _let_go(self, lease: Lease) -> _Endpoint | None:
        """One user less; the entry to close when that was the last one (under the lock)."""
        entry = lease.owner
        if entry.closed:
            return None  # closed with its loop, or already given back
        entry.users -= 1
        if entry.users > 0:
            return None
        entry.closed = True
        del entry.loop.by_endpoint[entry.key]
        return entry

    def _forget_closed_loops(self) -> None:
        """Drop what loops closed without cancelling their tasks left (their sockets close with them)."""
        for loop in [loop for loop in self._by_loop if loop.is_closed()]:
            for entry in self._by_loop.pop(loop).by_endpoint.values():
                entry.closed = True

    async def _close_at_loop_end(self, loop: asyncio.AbstractEventLoop, clients: _LoopClients) -> None:
        try:
            await loop.create_future()  # never set: cancelled when the loop shuts down
        finally:
            with self._lock:
                clients.watcher = None  # a hook's last lease keeps no task, hence no loop
                if self._by_loop.get(loop) is clients:
                    del self._by_loop[loop]
                entries, clients.by_endpoint = list(clients.by_endpoint.values()), {}
                for entry in entries:
                    entry.closed = True
            for entry in entries:
                await _close(entry)


async def _close(entry: _Endpoint) -> None:
    for lease in entry.leases:
        await lease.client.aclose()


SHARED_CLIENTS = SharedClients()
