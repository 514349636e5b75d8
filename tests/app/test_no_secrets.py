"""A full demo run leaks no SAS signature, account key, bearer token or identity header anywhere."""

from __future__ import annotations

import io
import logging
import re

import scripts.demo as demo
from emulator import Emulator

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")
SAS_SIGNATURE = re.compile(r"sig=(?!REDACTED)[^&\s'\"]+", re.IGNORECASE)


def test_demo_run_leaks_no_secret_in_logs_responses_or_errors(monkeypatch, caplog):
    started: list[Emulator] = []

    class RecordedEmulator(Emulator):
        def __enter__(self):
            started.append(self)
            return super().__enter__()

    monkeypatch.setattr(demo, "Emulator", RecordedEmulator)
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    responses: list[str] = []

    def record(response) -> None:
        responses.append(f"{response.status_code} {dict(response.headers)} {response.text}")

    assert demo.run_demo(out, record) == 0
    (emu,) = started
    account_key = next(iter(emu.account_keys.values()))
    texts = {"output": out.getvalue(), "logs": caplog.text, "responses": "\n".join(responses)}
    assert "succeeded" in texts["output"] and len(responses) >= 8 and caplog.records
    for name, text in texts.items():
        assert account_key not in text, f"account key in {name}"
        assert account_key.replace("+", "%2B").replace("/", "%2F") not in text, f"encoded account key in {name}"
        assert emu.identity_header not in text, f"identity header secret in {name}"
        assert not SAS_SIGNATURE.search(text), f"SAS signature in {name}"
        assert not JWT.search(text), f"bearer token in {name}"
        assert emu.directory.clients  # the demo calls the API with tokens of app registrations
        for client in emu.directory.clients.values():  # the demo's callers' app registrations
            assert client.secret not in text, f"a client secret in {name}"
