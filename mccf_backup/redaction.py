"""Last line of defence against secrets in text: SAS signatures, account keys, bearer tokens.

Messages are built from names, not secret values, in the first place; this scrubs text that comes
from elsewhere (an SDK exception, a URL) before it reaches a log, a response or a job record.
"""

from __future__ import annotations

import re

_PATTERNS = (
    (re.compile(r"(?i)(sig=)[^&\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(AccountKey=)[^;\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-_.~+/]+=*"), r"\1REDACTED"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+"), "REDACTED-JWT"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
