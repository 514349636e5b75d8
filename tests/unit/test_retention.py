"""Retention: the invariants hold for every catalog and policy (hypothesis), and GFS picks as documented."""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from mccf_backup.retention import Candidate, RetentionPolicy, plan_retention

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)

candidates = st.builds(
    Candidate,
    share=st.uuids().map(lambda u: f"app-{u.hex[:12]}"),
    created=st.integers(min_value=0, max_value=400 * 24 * 60).map(lambda m: NOW - dt.timedelta(minutes=m)),
    succeeded=st.booleans(),
    verified=st.booleans(),
    running=st.booleans(),
    belongs=st.booleans(),
    hold=st.sampled_from([None, None, "evidence"]),
    pin=st.sampled_from([None, None, None, "reference-data"]),
)
catalogs = st.lists(candidates, max_size=60, unique_by=lambda c: c.share)
policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 10),
    daily=st.integers(0, 14),
    weekly=st.integers(0, 8),
    monthly=st.integers(0, 12),
    max_age_days=st.integers(0, 400),
    min_age_hours=st.integers(0, 72),
    max_delete_fraction=st.floats(0, 1),
)


def deleted(plan) -> set[str]:
    return {d.share for d in plan.deletions}


@settings(max_examples=400, deadline=None)
@given(catalogs, policies, st.booleans())
def test_invariants_hold_for_any_catalog_and_policy(backups, policy, override):
    plan = plan_retention(backups, policy, NOW, override=override)
    gone = deleted(plan)
    assert sorted(d.share for d in plan.decisions) == sorted(b.share for b in backups)  # one decision each
    assert all(d.reasons for d in plan.decisions)  # every decision says why
    good = sorted(
        (b for b in backups if b.belongs and b.succeeded and not b.running),
        key=lambda b: (b.created, b.share),
        reverse=True,
    )
    if good:
        assert good[0].share not in gone  # newest successful
        newest_verified = next((b for b in good if b.verified), None)
        assert newest_verified is None or newest_verified.share not in gone
    for backup in backups:
        if (
            backup.running
            or not backup.belongs
            or backup.hold
            or backup.pin  # a golden copy, whatever the policy and even with the override
            or NOW - backup.created < dt.timedelta(hours=policy.min_age_hours)
        ):
            assert backup.share not in gone
    if not override:
        assert len(gone) <= math.floor(policy.max_delete_fraction * len(backups))


@settings(max_examples=200, deadline=None)
@given(catalogs, policies)
def test_pruning_is_idempotent(backups, policy):
    first = plan_retention(backups, policy, NOW, override=True)
    survivors = [b for b in backups if b.share not in deleted(first)]
    assert deleted(plan_retention(survivors, policy, NOW, override=True)) == set()


def daily_backups(days: int) -> list[Candidate]:
    return [Candidate(f"app-{day:03d}", NOW - dt.timedelta(days=day, hours=1)) for day in range(days)]


def test_gfs_over_a_month_of_daily_backups_keeps_exactly_the_expected_set():
    policy = RetentionPolicy(keep_last=3, daily=7, weekly=4, monthly=2, min_age_hours=0, max_delete_fraction=1)
    plan = plan_retention(daily_backups(31), policy, NOW)
    kept = {d.share for d in plan.decisions if not d.delete}
    # NOW is Friday 2026-11-27: the last 7 days, then the newest of each earlier ISO week (Sundays
    # 11-15, 11-08) and of October (10-31 falls on day 27).
    expected_days = {0, 1, 2, 3, 4, 5, 6, 12, 19, 27}
    assert kept == {f"app-{day:03d}" for day in expected_days}
    reasons = {d.share: d.reasons for d in plan.decisions}
    assert any(r.startswith("monthly 2026-10") for r in reasons["app-027"])


def test_a_policy_that_keeps_nothing_still_keeps_the_newest_good_backup_and_the_cap_holds():
    nothing = RetentionPolicy(keep_last=0, daily=0, weekly=0, monthly=0, min_age_hours=0, max_delete_fraction=1)
    plan = plan_retention(daily_backups(10), nothing, NOW)
    assert [d.share for d in plan.decisions if not d.delete] == ["app-000"]
    capped = plan_retention(
        daily_backups(10),
        RetentionPolicy(keep_last=0, daily=0, weekly=0, monthly=0, min_age_hours=0, max_delete_fraction=0.5),
        NOW,
    )
    assert capped.capped and not capped.deletions
    assert all("deletion cap" in d.reasons[-1] for d in capped.decisions if d.share != "app-000")
    assert len(plan_retention(daily_backups(10), nothing, NOW, override=True).deletions) == 9


def test_maximum_age_deletes_old_backups_that_rules_would_keep():
    policy = RetentionPolicy(
        keep_last=0, daily=0, weekly=0, monthly=12, max_age_days=60, min_age_hours=0, max_delete_fraction=1
    )
    backups = [Candidate(f"app-{m}", NOW - dt.timedelta(days=30 * m + 1)) for m in range(6)]
    plan = plan_retention(backups, policy, NOW)
    assert {d.share for d in plan.deletions} == {"app-2", "app-3", "app-4", "app-5"}
    assert "maximum age" in next(d for d in plan.decisions if d.share == "app-3").reasons[0]


@given(policies, st.booleans())
def test_a_pinned_backup_outlives_any_policy_however_old(policy, override):
    old_pinned = Candidate("app-pinned", NOW - dt.timedelta(days=3650), verified=True, pin="reference-data")
    others = [Candidate(f"app-{n}", NOW - dt.timedelta(days=n)) for n in range(1, 40)]
    plan = plan_retention([old_pinned, *others], policy, NOW, override=override)
    (decision,) = [d for d in plan.decisions if d.share == "app-pinned"]
    assert not decision.delete and any("pinned as 'reference-data'" in reason for reason in decision.reasons)
