"""Shared ``httpx.AsyncClient``s per event loop and Skyvern endpoint, used by every hook on that loop.

A triggerer runs thousands of triggers on one loop; a client each would build thousands of SSL contexts
(tens of ms of CPU and most of a megabyte each) and open thousands of connection pools. Hooks borrow a
client for their endpoint (base URL + key) and give it back; the last one out closes them. Entries
belong to their loop (a weak key), so nothing is shared across loops or threads, and a closed loop's
clients are never handed out again.

Why several small clients and not one big pool: httpcore rescans every connection of a pool (a socket
poll for each idle one, and for each idle one every connection again) on every request event, so one
pool's cost per request grows with its size. The endpoint's connections are split into :data:`SHARDS`
clients of :data:`CONNECTIONS_PER_SHARD`, all built on one SSL context; each client's requests wait for
a free connection on an ``anyio.Semaphore`` (first come, first served, O(1)) rather than in httpcore's
queue, which is rescanned on every event as well.
"""

from __future__ import annotations

import asyncio
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
    """One client of an endpoint's and the slots that keep its requests out of httpcore's queue."""

    client: httpx.AsyncClient
    slots: anyio.Semaphore


@dataclass
class _Endpoint:
    ssl_context: ssl.SSLContext
    leases: list[Lease] = field(default_factory=list)
    users: int = 0
    handed_out: int = 0


class SharedClients:
    """The registry; module-level :data:`SHARED_CLIENTS` is the one the hook uses."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Endpoint, _Endpoint]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # hooks on different threads' loops may register at once

    @staticmethod
    def endpoint(base_url: str, api_key: str) -> Endpoint:
        """A digest, not the key: the registry must not keep secrets in plain sight."""
        return base_url, hashlib.sha256(api_key.encode()).hexdigest()

    def acquire(self, endpoint: Endpoint, make: ClientFactory) -> Lease:
        """A client of the running loop's for ``endpoint``; ``make`` builds one on the shared SSL context."""
        loop = asyncio.get_running_loop()
        with self._lock:
            by_endpoint = self._by_loop.setdefault(loop, {})
            entry = by_endpoint.get(endpoint)
            if entry is None or any(lease.client.is_closed for lease in entry.leases):
                entry = by_endpoint[endpoint] = _Endpoint(httpx.create_ssl_context())
            if len(entry.leases) < SHARDS:
                slots = anyio.Semaphore(CONNECTIONS_PER_SHARD)
                entry.leases.append(Lease(make(entry.ssl_context), slots))
            lease = entry.leases[entry.handed_out % len(entry.leases)]
            entry.handed_out += 1
            entry.users += 1
            return lease

    async def release(self, endpoint: Endpoint, lease: Lease) -> None:
        """Give ``lease`` back; the last user on this loop closes the endpoint's clients."""
        loop = asyncio.get_running_loop()
        with self._lock:
            by_endpoint = self._by_loop.get(loop, {})
            entry = by_endpoint.get(endpoint)
            if entry is None or lease not in entry.leases:
                return  # made on another loop or already replaced: not ours to close here
            entry.users -= 1
            if entry.users > 0:
                return
            del by_endpoint[endpoint]
        for each in entry.leases:
            await each.client.aclose()

    def users(self, endpoint: Endpoint) -> int:
        """Hooks holding the running loop's clients for ``endpoint`` (0 when none is open)."""
        entry = self._by_loop.get(asyncio.get_running_loop(), {}).get(endpoint)
        return entry.users if entry is not None else 0


SHARED_CLIENTS = SharedClients()
