"""The one small event a Skyvern wait ends with, shared by the trigger and the blocking wait.

``execute_complete`` accepts only these shapes: anything else fails the task (fail closed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from airflow_provider_skyvern.exceptions import SkyvernError

EventKind = Literal["terminal", "deadline", "error"]
EVENT_KINDS: tuple[EventKind, ...] = ("terminal", "deadline", "error")


@dataclass(frozen=True)
class RunEvent:
    kind: EventKind
    run_id: str
    run_status: str | None = None
    step_count: int | None = None
    message: str | None = None
    limit: str | None = None
    """For ``deadline``: what the deadline stands for (``timeout=1800s``, ``execution_timeout=0:20:00``)."""

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Any) -> RunEvent:
        """The event; an event about another run than the try waits for is the caller's to tell (an earlier
        trigger's: wait again)."""
        if not isinstance(payload, dict) or payload.get("kind") not in EVENT_KINDS:
            raise SkyvernError(f"Unexpected event from the Skyvern trigger, failing closed: {payload!r:.200}")
        if not isinstance(payload.get("run_id"), str):
            raise SkyvernError(
                f"Skyvern trigger event names no run ({payload.get('run_id')!r}); failing closed"
            )
        unknown = set(payload) - set(cls.__dataclass_fields__)
        if unknown:
            raise SkyvernError(f"Skyvern trigger event has unknown keys {sorted(unknown)}; failing closed")
        return cls(**payload)
