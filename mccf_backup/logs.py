"""The app's loggers: every record one printable line, and the event marker only from the events module.

Log lines are read by people and by machines: the alert rules and the workbook count the lines that
start with ``MCCFBACKUP_EVENT``. A value a caller sent can hold a newline, a NUL or a right-to-left
override, and one spliced into a message could forge an event line or hide what a line says. Values
from callers are logged as JSON strings where they are logged at all; this filter is the backstop
for what slips through (an error message quoting one, an exception's text): control and format
characters are escaped, and the marker is defused everywhere but in the events module's own lines.
"""

from __future__ import annotations

import logging

EVENT_MARKER = "MCCFBACKUP_EVENT"
EVENTS_LOGGER = "mccf_backup.events"
_DEFUSED = "MCCFBACKUP-EVENT(quoted)"


def one_line(text: str) -> str:
    """``text`` with every non-printable character (controls, line and paragraph separators, format
    characters such as bidirectional overrides) escaped as Python would write it."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def safe_line(text: str, may_emit_events: bool = False) -> str:
    """``text`` as one printable line that reads as an event only if it is one the events module wrote."""
    text = one_line(text)
    if EVENT_MARKER in text and not (may_emit_events and text.startswith(EVENT_MARKER + " ")):
        text = text.replace(EVENT_MARKER, _DEFUSED)
    return text


class _OneLine(logging.Filter):
    def __init__(self, may_emit_events: bool) -> None:
        super().__init__()
        self._may_emit_events = may_emit_events

    def _clean(self, text: str) -> str:
        return safe_line(text, self._may_emit_events)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: logging reports it, as it would without us
            return True
        clean = self._clean(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:  # the traceback keeps its lines, each one made safe
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = "\n".join(self._clean(line) for line in text.splitlines())
        return True


def logger(name: str) -> logging.Logger:
    """The named logger with the one-line filter on it (a filter on a parent does not see children's records)."""
    log = logging.getLogger(name)
    if not any(isinstance(f, _OneLine) for f in log.filters):
        log.addFilter(_OneLine(may_emit_events=name == EVENTS_LOGGER))
    return log
