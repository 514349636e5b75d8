"""The rules every value from a caller obeys, in one place for the HTTP API, the CLI and the queues.

A value that came from a request is data. It is checked here with a full match (a trailing newline
is not a name) before anything uses it, and a refusal never quotes it: what reaches an error, a log
line, an event, an ARM URL or a share name has passed one of these rules first.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidRequest, InvalidShareName

# A Managed CCF app name: 3-32 letters, digits and hyphens, starting and ending with a letter or digit.
APP_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]")
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# A resource group name: 1-90 letters (any script), digits, '-', '_', '.', '(' and ')'.
_RESOURCE_GROUP = r"[-\w.()]{1,90}"
# ARM's fixed words match in any case, but only ASCII case: a global IGNORECASE would let the Kelvin
# sign stand for 'k' and the long s for 's' in names too.
RESOURCE_ID = re.compile(
    rf"/(?ai:subscriptions)/{GUID.pattern}/(?ai:resourceGroups)/{_RESOURCE_GROUP}"
    rf"/(?ai:providers)/(?ai:Microsoft\.ConfidentialLedger)/(?ai:managedCCFs|ledgers)/{APP_NAME.pattern}"
)
# Azure Files: 3-63 lower-case letters, digits and single hyphens, no hyphen at either end.
SHARE_NAME = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
# An Azure region as ARM spells it ('eastus', 'East US'): letters, digits and spaces.
REGION = re.compile(r"[A-Za-z][A-Za-z0-9 ]{1,40}")
# Job ids are a 13-digit millisecond timestamp and 8 hex digits (jobs.new_job_id).
JOB_ID = re.compile(r"[0-9]{13}[0-9a-f]{8}")  # [0-9]: \d is any script's digits
# RFC 9110 field values are visible ASCII; 255 is the limit Azure API Management and Stripe use too.
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
MAX_CALLER_LENGTH = 256
# A golden copy's label: what an operator names it by ('reference-data-2026-11').
PIN_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAX_PIN_NOTE_LENGTH = 256


def target_reference(value: object) -> str:
    """An app name or a Managed CCF resource ID, still to be found in MCCF_TARGETS."""
    if isinstance(value, str) and (APP_NAME.fullmatch(value) or RESOURCE_ID.fullmatch(value)):
        return value
    raise InvalidRequest(
        "'target' must be an app name (3-32 letters, digits or hyphens) or the resource ID of a Managed CCF "
        "(/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ConfidentialLedger/managedCCFs/<app>).",
        field="target",
    )


def share_name(value: object) -> str:
    if isinstance(value, str) and SHARE_NAME.fullmatch(value):
        return value
    raise InvalidShareName(
        "The share is not an Azure Files share name (3-63 lower-case letters, digits and single hyphens).",
        field="share",
    )


def region(value: object) -> str:
    if isinstance(value, str) and REGION.fullmatch(value):
        return value
    raise InvalidRequest(
        "'restoreRegion' must be an Azure region name such as 'eastus' or 'East US' (letters, digits, spaces).",
        field="restoreRegion",
    )


def confirmation(value: object) -> str:
    """The instance's name, repeated to confirm a replace: an app name, or it cannot match one."""
    if isinstance(value, str) and APP_NAME.fullmatch(value):
        return value
    raise InvalidRequest("'confirm' must repeat the instance's app name exactly.", field="confirm")


def pin_label(value: object) -> str:
    if isinstance(value, str) and PIN_LABEL.fullmatch(value):
        return value
    raise InvalidRequest(
        "A label is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit.", field="label"
    )


def pin_note(value: object) -> str:
    """A free-text note on a pin, stored in share metadata: printable ASCII, at most 256 characters."""
    if isinstance(value, str) and len(value) <= MAX_PIN_NOTE_LENGTH and value.isascii() and value.isprintable():
        return value
    raise InvalidRequest(f"A note is printable ASCII of at most {MAX_PIN_NOTE_LENGTH} characters.", field="note")


def job_id(value: object) -> str:
    if isinstance(value, str) and JOB_ID.fullmatch(value):
        return value
    raise InvalidRequest("An operation id is 13 digits followed by 8 lower-case hex digits.", field="id")


def idempotency_key(value: object) -> str:
    if isinstance(value, str) and IDEMPOTENCY_KEY.fullmatch(value):
        return value
    raise InvalidRequest("Idempotency-Key must be 1-255 visible ASCII characters.", field="Idempotency-Key")


def caller_name(value: object) -> str:
    """Who called, as an identity provider named them: kept for the record, so made one printable line.

    The name comes from a signed token, but its owner chose it: control, format (bidirectional
    overrides) and separator characters become '?', and it is cut to a length a record can hold.
    """
    text = str(value)[:MAX_CALLER_LENGTH]
    return "".join("?" if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text) or "?"
