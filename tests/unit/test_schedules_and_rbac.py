"""NCRONTAB schedules (next firings in UTC) and ARM's action wildcards, as the preflight reads them."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mccf_backup import rbac
from mccf_backup.schedules import Schedule, ScheduleInvalid

UTC = dt.timezone.utc
FRIDAY_NOON = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 2 * * *", ["2026-11-28T02:00:00", "2026-11-29T02:00:00", "2026-11-30T02:00:00"]),
        ("0 */10 * * * *", ["2026-11-27T12:10:00", "2026-11-27T12:20:00", "2026-11-27T12:30:00"]),
        ("0 30 3 * * MON-FRI", ["2026-11-30T03:30:00", "2026-12-01T03:30:00", "2026-12-02T03:30:00"]),
        ("0 0 0 1 JAN,JUL *", ["2027-01-01T00:00:00", "2027-07-01T00:00:00", "2028-01-01T00:00:00"]),
        ("0 0 12 * * 5", ["2026-12-04T12:00:00", "2026-12-11T12:00:00", "2026-12-18T12:00:00"]),  # not now itself
        ("0 0 0 * * 0", ["2026-11-29T00:00:00", "2026-12-06T00:00:00", "2026-12-13T00:00:00"]),  # 0 is Sunday
        ("0 0 */15 * * *", ["2026-11-27T15:00:00", "2026-11-28T00:00:00", "2026-11-28T15:00:00"]),
        ("0 0 1-10/4 * * sat", ["2026-11-28T01:00:00", "2026-11-28T05:00:00", "2026-11-28T09:00:00"]),
        ("0 0 0 13 * FRI", ["2027-08-13T00:00:00", "2028-10-13T00:00:00", "2029-04-13T00:00:00"]),  # both must match
    ],
)
def test_next_firings_in_utc(expression, expected):
    firings = Schedule.parse(expression).next_firings(FRIDAY_NOON)
    assert [f.strftime("%Y-%m-%dT%H:%M:%S") for f in firings] == expected


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 0 2 * *", "six fields"),
        ("0 0 25 * * *", "hour field must be between 0 and 23"),
        ("0 0 2 * * FUNDAY", "day of week field has 'FUNDAY'"),
        ("0 5-1 * * * *", "runs backwards"),
        ("0 */0 * * * *", "step of 0"),
        ("%BACKUP_SCHEDULE% 0 0 * * *", "second field"),
        ("0 0 2 * * 7", "day of week field must be between 0 and 6"),  # NCrontab refuses 7
        ("0 0 */x * * *", "hour field has the step 'x'"),
        ("0 0 ² * * *", "hour field has '²'"),
    ],
)
def test_a_bad_schedule_says_which_field(expression, says):
    with pytest.raises(ScheduleInvalid, match=says):
        Schedule.parse(expression)


def test_a_schedule_that_never_fires_has_no_firings():
    assert Schedule.parse("0 0 2 31 2 *").next_firings(FRIDAY_NOON) == []  # 31 February


@settings(max_examples=200, deadline=None)
@given(
    second=st.integers(0, 59),
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    start=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 1, 1), timezones=st.just(UTC)),
)
def test_a_daily_schedule_fires_once_a_day_at_its_time(second, minute, hour, start):
    firings = Schedule.parse(f"{second} {minute} {hour} * * *").next_firings(start)
    assert len(firings) == 3 and all(f > start for f in firings)
    assert {(f.hour, f.minute, f.second) for f in firings} == {(hour, minute, second)}
    assert [(b - a) for a, b in zip(firings, firings[1:])] == [dt.timedelta(days=1)] * 2
    assert firings[0] - start <= dt.timedelta(days=1)


def test_effective_permissions_follow_arms_wildcards_and_not_actions():
    backup = "Microsoft.ConfidentialLedger/managedCCFs/backup/action"
    assert rbac.allows([{"actions": ["*"], "notActions": []}], backup)
    assert rbac.allows([{"actions": ["microsoft.confidentialledger/*"]}], backup)  # names ignore case
    assert not rbac.allows([{"actions": ["*/read"]}], backup)
    assert not rbac.allows([{"actions": ["*"], "notActions": ["Microsoft.ConfidentialLedger/*/backup/action"]}], backup)
    # one role's notActions do not take back what another role grants
    assert rbac.allows([{"actions": ["*"], "notActions": [backup]}, {"actions": [backup]}], backup)
    assert not rbac.allows([], backup)
    assert rbac.required_actions("ledgers", True)[-1] == "Microsoft.ConfidentialLedger/ledgers/delete"
    assert "Microsoft.ConfidentialLedger/managedCCFs/delete" not in rbac.required_actions("managedCCFs", False)


def test_the_vault_token_scope_follows_the_vaults_cloud():
    from mccf_backup.preflight import vault_scope

    assert vault_scope("https://kv-prod.vault.azure.net/") == "https://vault.azure.net/.default"
    assert vault_scope("https://kv-prod.vault.azure.cn/") == "https://vault.azure.cn/.default"
    assert vault_scope("https://kv-prod.vault.usgovcloudapi.net") == "https://vault.usgovcloudapi.net/.default"


def test_the_arm_token_scope_follows_the_cloud_of_arm_endpoint():
    from mccf_backup.arm import arm_scope

    assert arm_scope("https://management.azure.com") == "https://management.azure.com/.default"
    assert arm_scope("https://management.chinacloudapi.cn/") == "https://management.chinacloudapi.cn/.default"
    assert arm_scope("https://management.usgovcloudapi.net") == "https://management.usgovcloudapi.net/.default"
    assert arm_scope("https://arm.contoso.example") == "https://management.azure.com/.default"  # the SDK's default
