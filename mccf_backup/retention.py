"""Which backups to keep and which to delete: a pure function, so its invariants can be proven.

Backups in, one decision per backup out, each with the reasons for it. The policy is GFS plus a
keep-last count and an optional maximum age (GFS buckets as restic counts them: for the N most
recent days, ISO weeks or months that have a backup, the newest backup of each). Whatever the
policy says, these invariants hold:

- the newest successful backup, and the newest verified one, are never deleted;
- a backup whose operation may still be running, or younger than the minimum age, is kept;
- a share that is not a backup of the target, one on hold (a failed verification is evidence) or
  a pinned one (a golden copy) is never touched;
- no more than ``max_delete_fraction`` of a target's backups are deleted in one run unless the
  operator overrides: past the cap nothing is deleted and the plan says why.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 7
    daily: int = 7
    weekly: int = 4
    monthly: int = 3
    max_age_days: int = 0  # 0: no maximum age
    min_age_hours: int = 24
    max_delete_fraction: float = 0.5

    def __post_init__(self) -> None:
        for name in ("keep_last", "daily", "weekly", "monthly", "max_age_days", "min_age_hours"):
            if getattr(self, name) < 0:
                raise ValueError(f"retention {name} must not be negative")
        if not 0 <= self.max_delete_fraction <= 1:
            raise ValueError("retention max_delete_fraction must be between 0 and 1")


@dataclass(frozen=True)
class Candidate:
    share: str
    created: dt.datetime
    succeeded: bool = True
    verified: bool = False
    running: bool = False
    belongs: bool = True  # name pattern and metadata both say it is this target's backup
    hold: str | None = None  # a reason never to delete it (e.g. failed verification: evidence)
    pin: str | None = None  # the label of a golden copy: kept whatever the policy says


@dataclass(frozen=True)
class Decision:
    share: str
    delete: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def action(self) -> str:
        return "delete" if self.delete else "keep"


@dataclass(frozen=True)
class RetentionPlan:
    decisions: tuple[Decision, ...]
    capped: bool = False

    @property
    def deletions(self) -> list[Decision]:
        return [d for d in self.decisions if d.delete]


def _bucket_keep(
    good: list[Candidate], count: int, key: Callable[[dt.datetime], object], label: str, reasons: dict[str, list[str]]
) -> None:
    seen: set[object] = set()
    for backup in good:  # newest first
        if len(seen) >= count:
            return
        bucket = key(backup.created)
        if bucket not in seen:
            seen.add(bucket)
            reasons[backup.share].append(f"{label} {bucket}")


def plan_retention(
    backups: Sequence[Candidate], policy: RetentionPolicy, now: dt.datetime, override: bool = False
) -> RetentionPlan:
    ordered = sorted(backups, key=lambda b: (b.created, b.share), reverse=True)
    keep: dict[str, list[str]] = {b.share: [] for b in ordered}
    protected: dict[str, list[str]] = {b.share: [] for b in ordered}
    good = [b for b in ordered if b.belongs and b.succeeded and not b.running]

    for backup in ordered:
        if not backup.belongs:
            protected[backup.share].append("not a backup of this target: never touched")
        if backup.running:
            protected[backup.share].append("its backup operation may still be running")
        if backup.hold:
            protected[backup.share].append(backup.hold)
        if backup.pin:
            protected[backup.share].append(f"pinned as '{backup.pin}' (a golden copy)")
        if now - backup.created < dt.timedelta(hours=policy.min_age_hours):
            protected[backup.share].append(f"younger than the minimum age ({policy.min_age_hours} h)")
    if good:
        protected[good[0].share].append("newest successful backup")
    verified = [b for b in good if b.verified]
    if verified:
        protected[verified[0].share].append("newest verified backup")

    for position, backup in enumerate(good[: policy.keep_last]):
        keep[backup.share].append(f"one of the newest {policy.keep_last} (#{position + 1})")
    _bucket_keep(good, policy.daily, lambda t: t.date().isoformat(), "daily", keep)
    _bucket_keep(good, policy.weekly, lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2]), "weekly", keep)
    _bucket_keep(good, policy.monthly, lambda t: t.strftime("%Y-%m"), "monthly", keep)
    if policy.max_age_days:
        limit = dt.timedelta(days=policy.max_age_days)
        for backup in good:
            if now - backup.created > limit and keep[backup.share]:
                keep[backup.share] = [f"older than the maximum age ({policy.max_age_days} days), not kept"]

    decisions = []
    for backup in ordered:
        if protected[backup.share]:
            decisions.append(Decision(backup.share, False, tuple(protected[backup.share])))
        elif keep[backup.share] and not keep[backup.share][0].startswith("older than the maximum age"):
            decisions.append(Decision(backup.share, False, tuple(keep[backup.share])))
        else:
            reason = keep[backup.share] or [
                "failed backup" if not backup.succeeded else "kept by no rule of the policy"
            ]
            decisions.append(Decision(backup.share, True, tuple(reason)))

    allowed = math.floor(policy.max_delete_fraction * len(ordered))
    deleting = sum(d.delete for d in decisions)
    if deleting > allowed and not override:
        cap = (
            f"deletion cap: the policy would delete {deleting} of {len(ordered)} backups, more than "
            f"{policy.max_delete_fraction:.0%}; nothing is deleted without an explicit override"
        )
        return RetentionPlan(
            tuple(Decision(d.share, False, d.reasons + (cap,)) if d.delete else d for d in decisions), capped=True
        )
    return RetentionPlan(tuple(decisions))
