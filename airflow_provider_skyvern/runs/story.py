"""The run's story for the task log: what each block of a finished run did, from Skyvern's timeline.

A failed workflow's status says little; the block that failed, how long each took and why are what a user
opens the log for. The timeline exists for workflow runs and skyvern-2.0 tasks only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_skyvern.enums import RunType
from airflow_provider_skyvern.exceptions import SkyvernError, one_line
from airflow_provider_skyvern.models import RunResponse, TimelineEntry
from airflow_provider_skyvern.runs.waiting import format_duration

if TYPE_CHECKING:
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

STORY_SECONDS = 15.0
"""How long reading the timeline for the log may take: the run is over, the log must not hold the task."""

RUN_TYPES_WITH_TIMELINE = frozenset({RunType.workflow_run, RunType.task_v2})
MAX_BLOCKS = 25
"""A loop of hundreds of iterations must not bury the rest of the log."""
_FAILED = frozenset({"failed", "terminated", "timed_out", "canceled"})


def has_timeline(run: RunResponse) -> bool:
    return run.run_type in RUN_TYPES_WITH_TIMELINE


def log_story(hook: SkyvernHook, run: RunResponse, log: Any) -> None:
    """Each block's outcome in the log; a timeline that cannot be read costs a warning, never the task."""
    if not has_timeline(run):
        return
    try:
        timeline = hook.get_run_timeline(run.run_id, deadline=hook.clock.time() + STORY_SECONDS)
    except SkyvernError as exc:
        log.warning("Could not read the timeline of Skyvern run %s: %s", run.run_id, exc)
        return
    log.info("%s", story(run, timeline))


async def alog_story(hook: SkyvernHook, run: RunResponse, log: Any) -> None:
    """:func:`log_story` in the triggerer."""
    if not has_timeline(run):
        return
    try:
        timeline = await hook.aget_run_timeline(run.run_id, deadline=hook.clock.time() + STORY_SECONDS)
    except SkyvernError as exc:
        log.warning("Could not read the timeline of Skyvern run %s: %s", run.run_id, exc)
        return
    log.info("%s", story(run, timeline))


def story(run: RunResponse, timeline: Sequence[TimelineEntry]) -> str:
    """A summary line, then one line per block (nested blocks indented), the failing one with its reason."""
    blocks = list(_blocks(timeline, 0))
    took = _seconds(run.started_at or run.created_at, run.finished_at or run.modified_at)
    after = f" after {format_duration(took)}" if took is not None else ""
    plural = "" if len(blocks) == 1 else "s"
    lines = [f"Skyvern run {run.run_id} {run.status.value}{after}, {len(blocks)} block{plural}:"]
    for depth, block, entry in blocks[:MAX_BLOCKS]:
        lines.append("  " * (depth + 1) + _block_line(block, entry))
    if len(blocks) > MAX_BLOCKS:
        lines.append(f"  ... and {len(blocks) - MAX_BLOCKS} more blocks (see the run in Skyvern)")
    return "\n".join(lines)


def _blocks(
    entries: Sequence[TimelineEntry], depth: int
) -> Iterator[tuple[int, dict[str, Any], TimelineEntry]]:
    for entry in sorted(entries, key=lambda each: each.created_at):
        if entry.type == "block" and entry.block is not None:
            yield depth, entry.block, entry
            yield from _blocks(entry.children or [], depth + 1)
        else:  # thoughts (skyvern-2.0) carry no block; their children may
            yield from _blocks(entry.children or [], depth)


def _block_line(block: dict[str, Any], entry: TimelineEntry) -> str:
    label = block.get("label") or block.get("workflow_run_block_id") or "block"
    kind = f" ({block['block_type']})" if block.get("block_type") else ""
    status = str(block.get("status") or "status unknown")
    duration = block.get("duration")
    took = (
        float(duration)
        if isinstance(duration, (int, float))
        else _seconds(entry.created_at, entry.modified_at)
    )
    line = f"- {label}{kind}: {status}" + (f", {format_duration(took)}" if took is not None else "")
    reason = one_line(str(block.get("failure_reason") or ""))
    if reason and status in _FAILED:
        line += f": {reason}"
    return line


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())
