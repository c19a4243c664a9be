"""File bodies the emulator serves, small (bytes) or large (made on the fly), with HTTP Range support.

A large file is never built in memory: its bytes are a function of (seed, offset), produced in 64 KiB
blocks as they are sent, so a 500 MB download costs the emulator one block at a time. Each block starts
with its own index, so a client that resumes at the wrong offset gets a different SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

BLOCK = 64 * 1024
SEND_CHUNK = 1024 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BytesBlob:
    content: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive)."""
        for at in range(start, end, SEND_CHUNK):
            yield self.content[at : min(at + SEND_CHUNK, end)]


@dataclass(frozen=True)
class PatternBlob:
    """``size`` deterministic bytes derived from ``seed``."""

    seed: str
    size: int

    @property
    def sha256(self) -> str:
        return _pattern_sha256(self.seed, self.size)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        base = _base_block(self.seed)
        first = start // BLOCK
        pending: list[bytes] = []
        pending_size = 0
        for index in range(first, (end + BLOCK - 1) // BLOCK):
            block = index.to_bytes(8, "big") + base[8:]
            low = start - index * BLOCK if index == first else 0
            high = min(BLOCK, end - index * BLOCK)
            piece = block[low:high]
            pending.append(piece)
            pending_size += len(piece)
            if pending_size >= SEND_CHUNK:
                yield b"".join(pending)
                pending, pending_size = [], 0
        if pending:
            yield b"".join(pending)


Blob = BytesBlob | PatternBlob


@functools.lru_cache(maxsize=16)
def _base_block(seed: str) -> bytes:
    return random.Random(seed).randbytes(BLOCK)  # noqa: S311 - test data


@functools.lru_cache(maxsize=64)
def _pattern_sha256(seed: str, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in PatternBlob(seed, size).chunks(0, size):
        digest.update(chunk)
    return digest.hexdigest()


def paced(chunks: Iterable[bytes], bytes_per_second: float) -> Iterator[bytes]:
    """``chunks`` no faster than ``bytes_per_second`` (runs in a worker thread: it may sleep)."""
    started, sent = time.monotonic(), 0
    for chunk in chunks:
        sent += len(chunk)
        early = sent / bytes_per_second - (time.monotonic() - started)
        if early > 0:  # each chunk leaves when a link of that speed would have delivered it
            time.sleep(early)
        yield chunk


class RangeNotSatisfiable(ValueError):
    """The asked range lies outside the file: HTTP 416 with ``Content-Range: bytes */<size>``."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``Range: bytes=a-b`` / ``a-`` / ``-n``; None means
    the whole file (no header, or one the server ignores as RFC 9110 allows: other units, several ranges)."""
    if header is None:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # the last n bytes
        count = int(last)
        if count == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - count), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header)
    return start, end
