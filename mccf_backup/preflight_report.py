"""A preflight's verdicts: one Check per thing looked at, and the Report that sums them up.

A check that raised becomes a failed check with its reason (secrets redacted), so one broken
dependency never hides the verdicts on the others.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

from azure.core.exceptions import AzureError

from .errors import MccfBackupError
from .redaction import redact

OK, WARNING, FAILED = "ok", "warning", "failed"


@dataclass(frozen=True)
class Check:
    name: str  # stable: identity, key_vault, storage, soft_delete, target, permissions, job_store, schedule, ...
    status: str
    found: str
    fix: str = ""
    target: str | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "", {})}


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    @property
    def status(self) -> str:
        statuses = {check.status for check in self.checks}
        return FAILED if FAILED in statuses else WARNING if WARNING in statuses else OK

    def to_dict(self) -> dict:
        counts = {s: sum(c.status == s for c in self.checks) for s in (OK, WARNING, FAILED)}
        return {
            "status": self.status,
            "checkedAt": self.checked_at.isoformat(),
            "counts": counts,
            "checks": [c.to_dict() for c in self.checks],
        }


def guarded(name: str, fix: str, work: Callable[[], list[Check]], target: str | None = None) -> list[Check]:
    """A check that raised is a failed check with its reason (secrets redacted), never a crash."""
    try:
        return work()
    except MccfBackupError as exc:
        return [Check(name, FAILED, redact(exc.message), fix, target)]
    except (AzureError, OSError, ValueError) as exc:
        return [Check(name, FAILED, redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__), fix, target)]
    except Exception as exc:  # noqa: BLE001 - a diagnostic tool reports what it cannot check, and goes on
        return [
            Check(name, FAILED, f"the check itself failed ({type(exc).__name__}); the app's logs have it", fix, target)
        ]
