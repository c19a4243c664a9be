"""Moments as the run machinery compares and shows them: Unix seconds, and UTC text for messages."""

from __future__ import annotations

from datetime import datetime, timezone


def unix(moment: datetime) -> float:
    """Skyvern's timestamps arrive timezone-aware (naive ones are read as UTC by the models)."""
    return moment.astimezone(timezone.utc).timestamp()


def utc_text(seconds: float) -> str:
    """``2026-12-06 13:05:00 UTC``: what a message shows, whatever the worker's timezone."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
