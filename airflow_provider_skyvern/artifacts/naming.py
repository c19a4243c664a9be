"""Where each file of a run lands: names that stay inside ``<destination>/<run_id>/`` and never collide.

A downloaded file's name comes from the website the run visited, so it is untrusted: separators, ``..``,
drive letters, control characters and reserved device names are removed, the result is capped at
:data:`MAX_NAME_BYTES` of UTF-8 (the extension kept), and duplicates within one run get ``-2``, ``-3``...
in the order Skyvern lists them. The same input always gives the same names, so a task retry finds the
files it copied before.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_NAME_BYTES = 200
"""Below every common file system's 255-byte limit, with room for the ``.<name>.part`` staging name."""
MAX_EXTENSION_BYTES = 16
FALLBACK_NAME = "file"
_UNSAFE = re.compile(r'[<>:"/\\|?*]')
_SEPARATORS = re.compile(r"[/\\]")
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
)


def safe_name(untrusted: str | None, fallback: str = FALLBACK_NAME) -> str:
    """One path segment derived from ``untrusted``: its last component, cleaned, capped; never empty."""
    text = unicodedata.normalize("NFC", untrusted or "")
    text = _SEPARATORS.split(text)[-1]  # "../../etc/passwd" -> "passwd", "C:\\x" -> "x"
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    text = _UNSAFE.sub("_", text)
    text = " ".join(text.split()).strip(" .")  # no leading dot (hidden, "..") nor trailing dot or space
    if not text:
        text = fallback
    stem, extension = _split_extension(text)
    stem = stem.rstrip(" .") or fallback
    if stem.split(".")[0].lower() in _WINDOWS_DEVICES:
        stem = f"_{stem}"
    return _capped(stem, extension)


def unique_names(untrusted: Iterable[str | None], fallback: str = FALLBACK_NAME) -> list[str]:
    """:func:`safe_name` of each, made unique (case-insensitively: some file systems fold case)."""
    taken: set[str] = set()
    names = []
    for each in untrusted:
        name = safe_name(each, fallback)
        stem, extension = _split_extension(name)
        number = 1
        while name.casefold() in taken:
            number += 1
            name = _capped(stem, extension, suffix=f"-{number}")
        taken.add(name.casefold())
        names.append(name)
    return names


def extension_of(uri: str, default: str) -> str:
    """The extension of a storage URI's last segment when it is a plain one (``.webm``), else ``default``."""
    last = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    _, extension = _split_extension(last)
    return extension.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", extension) else default


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension.encode()) + 1 > MAX_EXTENSION_BYTES or " " in extension:
        return name, ""
    return stem, f".{extension}"


def _capped(stem: str, extension: str, suffix: str = "") -> str:
    room = MAX_NAME_BYTES - len(extension.encode()) - len(suffix.encode())
    encoded = stem.encode()
    if len(encoded) > room:
        stem = encoded[:room].decode(errors="ignore").rstrip(" .") or FALLBACK_NAME
    return f"{stem}{suffix}{extension}"
