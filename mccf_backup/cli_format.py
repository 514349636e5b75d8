"""How the operator CLI shows things: plain-text tables and the rows they hold (``--json`` shows the
data itself)."""

from __future__ import annotations

from typing import Any

from .jobs import Job


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if row.get(key) is None else str(row.get(key))) for key, _ in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    lines = ["  ".join(title.ljust(widths[i]) for i, (_, title) in enumerate(columns))]
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in cells]
    return "\n".join(lines)


def job_rows(jobs: list[Job]) -> list[dict[str, Any]]:
    return [
        {
            **job.to_dict(),
            "app": job.target.rsplit("/", 1)[-1],
            "error": job.error_code or "",
            "started": job.started.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for job in jobs
    ]


JOB_COLUMNS = [
    ("id", "JOB"),
    ("kind", "KIND"),
    ("app", "APP"),
    ("trigger", "TRIGGER"),
    ("status", "STATUS"),
    ("started", "STARTED (UTC)"),
    ("share", "SHARE"),
    ("error", "ERROR"),
]


def ledger_columns(row: dict) -> dict:
    ledger, pin = row.get("ledger") or {}, row.get("pin") or {}
    seqnos = f"{ledger['firstSeqno'] or 1}-{ledger['lastSeqno']}" if ledger.get("lastSeqno") is not None else ""
    return {"seqnos": seqnos, "pinLabel": pin.get("label", "")}
