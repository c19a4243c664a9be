"""One ``httpx.AsyncClient`` per event loop and Skyvern endpoint, shared by every hook on that loop.

A triggerer runs thousands of triggers on one loop; a client each would build thousands of SSL contexts
(tens of ms of CPU and most of a megabyte each) and open thousands of connection pools. Hooks borrow the
loop's client for their endpoint (base URL + key) and give it back; the last one out closes it. Entries
belong to their loop (a weak key), so nothing is shared across loops or threads, and a closed loop's
client is never handed out again.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import httpx

POOL_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=30)
"""Polls are short: 200 reused connections serve thousands of waiting triggers without reconnecting."""

Endpoint = tuple[str, str]


@dataclass
class _Lease:
    client: httpx.AsyncClient
    users: int = 0


class SharedClients:
    """The registry; module-level :data:`SHARED_CLIENTS` is the one the hook uses."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Endpoint, _Lease]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # hooks on different threads' loops may register at once

    @staticmethod
    def endpoint(base_url: str, api_key: str) -> Endpoint:
        """A digest, not the key: the registry must not keep secrets in plain sight."""
        return base_url, hashlib.sha256(api_key.encode()).hexdigest()

    def acquire(self, endpoint: Endpoint, make: Callable[[], httpx.AsyncClient]) -> httpx.AsyncClient:
        """The running loop's client for ``endpoint``, created by ``make`` on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            leases = self._by_loop.setdefault(loop, {})
            lease = leases.get(endpoint)
            if lease is None or lease.client.is_closed:
                lease = leases[endpoint] = _Lease(make())
            lease.users += 1
            return lease.client

    async def release(self, endpoint: Endpoint, client: httpx.AsyncClient) -> None:
        """Give ``client`` back; the last user on this loop closes it."""
        loop = asyncio.get_running_loop()
        with self._lock:
            leases = self._by_loop.get(loop, {})
            lease = leases.get(endpoint)
            if lease is None or lease.client is not client:
                return  # made on another loop or already replaced: not ours to close here
            lease.users -= 1
            if lease.users > 0:
                return
            del leases[endpoint]
        await client.aclose()

    def users(self, endpoint: Endpoint) -> int:
        """Hooks holding the running loop's client for ``endpoint`` (0 when none is open)."""
        lease = self._by_loop.get(asyncio.get_running_loop(), {}).get(endpoint)
        return lease.users if lease is not None else 0


SHARED_CLIENTS = SharedClients()
