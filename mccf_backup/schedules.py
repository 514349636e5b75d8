"""NCRONTAB schedules, as the Functions timer trigger reads them: the preflight parses each schedule
setting and shows its next firings in UTC, so "0 0 2 * * *" meaning 02:00 UTC, not local time, is
seen at deployment rather than at the first missed backup.

Six fields: second, minute, hour, day of month, month, day of week (0-6, 0 = Sunday, as NCrontab
reads it; names such as MON and JAN allowed). Each is ``*``, a number, a range ``a-b``, a list ``a,b``, with ``/step``. A day
must match both the day-of-month and the day-of-week fields (NCrontab's rule, unlike Vixie cron).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_NAMES = {
    4: {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)},
    5: {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())},
}
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_FIELDS = ("second", "minute", "hour", "day of month", "month", "day of week")


class ScheduleInvalid(ValueError):
    """The expression is not a six-field NCRONTAB schedule; the message says which field and why."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> "Schedule":
        fields = expression.split()
        if len(fields) != 6:
            raise ScheduleInvalid(f"needs six fields (second minute hour day month day-of-week), not {len(fields)}")
        sets = [_field(text, index) for index, text in enumerate(fields)]
        return cls(expression, *sets)

    def next_firings(self, after: dt.datetime, count: int = 3) -> list[dt.datetime]:
        """The next ``count`` times (UTC) strictly after ``after``; fewer if none fall in four years."""
        after = after.astimezone(dt.timezone.utc)
        found: list[dt.datetime] = []
        day = after.date()
        for _ in range(366 * 4 + 1):
            if day.month in self.months and day.day in self.days and (day.isoweekday() % 7) in self.weekdays:
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            moment = dt.datetime(
                                day.year, day.month, day.day, hour, minute, second, tzinfo=dt.timezone.utc
                            )
                            if moment > after:
                                found.append(moment)
                                if len(found) == count:
                                    return found
            day += dt.timedelta(days=1)
        return found


def _number(text: str, index: int) -> int:
    names = _NAMES.get(index, {})
    if text.upper() in names:
        return names[text.upper()]
    if not (text.isascii() and text.isdigit()):
        raise ScheduleInvalid(f"the {_FIELDS[index]} field has '{text[:20]}', not a number")
    low, high = _BOUNDS[index]
    value = int(text)
    if not low <= value <= high:
        raise ScheduleInvalid(f"the {_FIELDS[index]} field must be between {low} and {high}, not {value}")
    return value


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        if step_text and not (step_text.isascii() and step_text.isdigit()):
            raise ScheduleInvalid(f"the {_FIELDS[index]} field has the step '{step_text[:20]}', not a number")
        step = int(step_text) if step_text else 1
        if step == 0:
            raise ScheduleInvalid(f"the {_FIELDS[index]} field has a step of 0")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _number(first, index), _number(last, index)
            if start > end:
                raise ScheduleInvalid(f"the {_FIELDS[index]} field has the range {span}, which runs backwards")
        else:
            start = _number(span, index)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)
