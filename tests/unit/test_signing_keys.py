"""What the key cache does with an authority that misbehaves: the documents it serves are fed in by a
stand-in for the HTTP session (the authority is the dependency; the cache is what is tested)."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mccf_backup import entra_tokens
from mccf_backup.entra_tokens import SigningKeys, TokenPolicy
from mccf_backup.errors import TokenKeysUnavailable

POLICY = TokenPolicy("5d3b0c1e-0000-4000-8000-000000000001", "72f988bf-0000-4000-8000-00000000e1e1")
BASE = f"https://login.microsoftonline.com/{POLICY.tenant_id}"
V2, V1 = POLICY.metadata_urls
KEYS = f"{BASE}/discovery/v2.0/keys"


def jwk(kid: str) -> dict:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return {**jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True), "kid": kid, "use": "sig"}


def documents(**changes: object) -> dict[str, object]:
    docs: dict[str, object] = {
        V2: {"issuer": f"{BASE}/v2.0", "jwks_uri": KEYS},
        V1: {"issuer": f"https://sts.windows.net/{POLICY.tenant_id}/", "jwks_uri": KEYS},
        KEYS: {"keys": [jwk("good")]},
    }
    docs.update(changes)
    return docs


class Response:
    """What requests gives for ``stream=True``; ``raw.read1`` hands out ``pace`` bytes at a time."""

    def __init__(self, body: bytes, status: int, pace: int = 1 << 30, tick=None) -> None:
        self.status_code, self._body, self._pace, self._tick = status, body, pace, tick
        self.raw = self

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read1(self, size: int, decode_content: bool = False) -> bytes:
        chunk, self._body = self._body[: min(size, self._pace)], self._body[min(size, self._pace) :]
        if self._tick:
            self._tick()
        return chunk


class Authority:
    """Serves ``docs`` (a dict becomes JSON, bytes go as they are, an int is a bare status)."""

    def __init__(self, docs: dict[str, object], pace: int = 1 << 30, tick=None) -> None:
        self.docs, self.calls, self.pace, self.tick = docs, [], pace, tick

    def get(self, url: str, timeout, stream: bool, allow_redirects: bool) -> Response:
        assert stream and allow_redirects is False
        self.calls.append(url)
        doc = self.docs.get(url, 404)
        if isinstance(doc, int):
            return Response(b"", doc)
        return Response(doc if isinstance(doc, bytes) else json.dumps(doc).encode(), 200, self.pace, self.tick)


def test_the_keys_and_both_issuers_are_read_once():
    authority = Authority(documents())
    keys = SigningKeys(POLICY, authority)
    assert keys.key("good") is not None and keys.key("good") is not None
    assert set(keys.issuers()) == {f"{BASE}/v2.0", f"https://sts.windows.net/{POLICY.tenant_id}/"}
    assert authority.calls == [V2, V1, KEYS]


def test_a_fresh_instance_fetches_at_once_whatever_its_uptime(monkeypatch):
    monkeypatch.setattr(entra_tokens.time, "monotonic", lambda: 3.0)  # a machine booted three seconds ago
    assert SigningKeys(POLICY, Authority(documents())).key("good") is not None


@pytest.mark.parametrize(
    "broken",
    [
        {V2: b"[" * 100_000},  # nested past any recursion limit
        {V1: b"{" + b" " * (2 * 1024 * 1024) + b"}"},  # over the size cap
        {KEYS: 302},  # a redirect is not followed
        {V2: {"issuer": f"{BASE}/v2.0", "jwks_uri": "https://attacker.example/keys"}},  # keys off the authority
        {V1: {"issuer": "x", "jwks_uri": KEYS.replace("https", "http")}},
        {KEYS: {"keys": "none"}},
        {KEYS: {"keys": [{"kty": "RSA", "kid": "bad", "n": 5, "e": "AQAB"}]}},
        {V2: 503},
    ],
    ids=["deep-json", "huge", "redirect", "foreign-key-host", "http-keys", "keys-not-a-list", "no-usable-key", "503"],
)
def test_a_misbehaving_authority_is_one_clean_refusal_then_a_back_off(broken):
    authority = Authority(documents(**{url: doc for url, doc in broken.items()}))
    keys = SigningKeys(POLICY, authority)
    with pytest.raises(TokenKeysUnavailable):
        keys.key("good")
    asked = len(authority.calls)
    for _ in range(5):
        with pytest.raises(TokenKeysUnavailable) as refused:
            keys.key("good")
        assert refused.value.__context__ is None  # nothing of the failure rides along (no parser frames)
    assert len(authority.calls) == asked


def test_one_unreadable_key_does_not_cost_the_others():
    good = documents()[KEYS]["keys"][0]
    keys = SigningKeys(POLICY, Authority(documents(**{KEYS: {"keys": [{"kty": "RSA", "kid": "bad", "n": 5}, good]}})))
    assert keys.key("good") is not None and keys.key("bad") is None


def test_a_failed_daily_refresh_keeps_the_keys_it_had(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(entra_tokens.time, "monotonic", lambda: now[0])
    authority = Authority(documents())
    keys = SigningKeys(POLICY, authority)
    assert keys.key("good") is not None
    authority.docs = {}  # the authority now answers 404 to everything
    now[0] += entra_tokens.KEYS_MAX_AGE_SECONDS + 1
    assert keys.key("good") is not None  # the stale key still serves, and the refresh was tried
    assert authority.calls[-1] == V2


def test_an_authority_that_trickles_is_cut_off_at_the_fetch_deadline(monkeypatch):
    """One byte at a time, a second each (the clock is moved, not waited for): the fetch stops at its
    deadline instead of reading for as long as the authority cares to send."""
    now = [1000.0]
    monkeypatch.setattr(entra_tokens.time, "monotonic", lambda: now[0])
    authority = Authority(documents(), pace=1, tick=lambda: now.__setitem__(0, now[0] + 1))
    with pytest.raises(TokenKeysUnavailable):
        SigningKeys(POLICY, authority).key("good")
    assert now[0] - 1000.0 <= entra_tokens.FETCH_WAIT_SECONDS + 1


def test_the_authority_host_may_be_spelt_in_any_case_or_with_its_default_port():
    policy = TokenPolicy(POLICY.client_id, POLICY.tenant_id, "https://Login.MicrosoftOnline.com:443")
    base = f"https://Login.MicrosoftOnline.com:443/{POLICY.tenant_id}"
    docs = {
        f"{base}/v2.0/.well-known/openid-configuration": {"issuer": f"{BASE}/v2.0", "jwks_uri": KEYS},
        f"{base}/.well-known/openid-configuration": {"issuer": "v1", "jwks_uri": KEYS},
        KEYS: documents()[KEYS],
    }
    assert SigningKeys(policy, Authority(docs)).key("good") is not None


def test_with_keys_cached_an_unknown_kid_never_waits_for_a_fetch_under_way(monkeypatch):
    import time

    keys = SigningKeys(POLICY, Authority(documents()))
    assert keys.key("good") is not None
    monkeypatch.setattr(entra_tokens, "UNKNOWN_KEY_REFRESH_SECONDS", 0)
    keys._fetching.acquire()  # another request's fetch is under way
    try:
        started = time.monotonic()
        assert keys.key("made-up") is None
        assert time.monotonic() - started < 1  # refused at once, not after FETCH_WAIT_SECONDS
    finally:
        keys._fetching.release()
