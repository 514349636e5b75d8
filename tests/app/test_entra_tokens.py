"""Hostile and broken tokens, rolled keys, and an authority that is down: what the API's Entra ID check
does with each, over HTTP as a caller meets it."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.entra import api_claims
from emulator.tokens import ISSUER, TENANT_ID, key_id
from mccf_backup import entra_tokens

from .entra import bearer, identity_token
from .test_http_api import assert_problem


def claims(emulator, **changes) -> dict:
    """A v2.0 token's claims for a reader, as the emulator's Entra ID would issue them."""
    tenant = f"{emulator.url('login')}/{TENANT_ID}"
    base = api_claims(tenant, emulator.directory.api_client_id, str(uuid.uuid4()), str(uuid.uuid4()), ["Backup.Read"])
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def status(api, token: str) -> requests.Response:
    return api("GET", "status", headers=bearer(token))


def test_a_well_formed_token_signed_by_the_tenant_is_accepted(api, entra):
    assert status(api, entra.authority.sign(claims(entra))).status_code == 200


def test_a_token_for_another_resource_of_the_same_tenant_is_refused(api, entra):
    """The app's own identity can get an ARM token; it must not open the API."""
    from azure.identity import ManagedIdentityCredential

    arm_token = ManagedIdentityCredential(client_id=entra.user_identity.client_id).get_token(
        "https://management.azure.com/.default"
    )
    body = assert_problem(status(api, arm_token.token), 401, "unauthenticated")
    assert "audience" in body["detail"]
    assert_problem(status(api, entra.authority.sign(claims(entra, aud="api://someone-else"))), 401, "unauthenticated")


@pytest.mark.parametrize(
    "change",
    [
        {"exp": int(time.time()) - 3600},  # expired an hour ago
        {"nbf": int(time.time()) + 3600},  # not valid for an hour
        {"iss": f"https://login.microsoftonline.com/{uuid.uuid4()}/v2.0"},  # another tenant's issuer
        {"iss": ISSUER.replace(TENANT_ID, str(uuid.uuid4()))},  # another tenant, v1.0
        {"tid": str(uuid.uuid4())},  # the right issuer string, another tenant's ID
        {"tid": None},  # no tenant at all
        {"exp": None},  # a token that never expires
    ],
    ids=["expired", "not-yet-valid", "other-issuer", "other-v1-issuer", "other-tid", "no-tid", "no-exp"],
)
def test_tokens_from_elsewhere_or_out_of_time_are_refused(api, entra, change):
    assert_problem(status(api, entra.authority.sign(claims(entra, **change))), 401, "unauthenticated")


def test_clock_skew_of_a_few_minutes_is_tolerated(api, entra):
    """Entra ID's and the app's clocks differ a little; Microsoft.Identity.Web allows five minutes."""
    token = entra.authority.sign(claims(entra, exp=int(time.time()) - 60))
    assert status(api, token).status_code == 200


def test_forged_signatures_are_refused(api, entra):
    kid = key_id(entra.authority.public_keys[0])
    mallory = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    own_key = jwt.encode(claims(entra), mallory, algorithm="RS256", headers={"kid": kid})
    assert_problem(status(api, own_key), 401, "unauthenticated")
    unsigned = jwt.encode(claims(entra), None, algorithm="none", headers={"kid": kid})
    assert_problem(status(api, unsigned + "x"), 401, "unauthenticated")
    # The classic confusion: HMAC keyed with the published public key.
    public_pem = entra.authority.public_keys[0].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": kid}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(claims(entra)).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signature = hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    hs256 = b".".join([header, payload, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()
    body = assert_problem(status(api, hs256), 401, "unauthenticated")
    assert "RS256" in body["detail"]
    unknown_kid = entra.authority.sign(claims(entra)).split(".")
    forged_header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": "nope"}).encode()).rstrip(b"=")
    assert_problem(status(api, ".".join([forged_header.decode(), *unknown_kid[1:]])), 401, "unauthenticated")


def test_a_roles_claim_of_the_wrong_shape_grants_nothing(api, entra):
    token = entra.authority.sign(claims(entra, roles="Backup.Read"))
    assert_problem(status(api, token), 403, "role_missing")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer a.b",
        "Bearer a.b.c.d",
        "Bearer " + "a" * 20000 + ".b.c",
        "Bearer \xe9a.b.c",
        "Bearer " + base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".e30.c2ln",
        "Bearer " + base64.urlsafe_b64encode(b'{"alg":"RS256","kid":7}').decode().rstrip("=") + ".e30.c2ln",
        "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln",  # no kid
    ],
)
def test_garbage_in_the_authorization_header_is_a_clean_401(api, entra, authorization, caplog):
    caplog.set_level(logging.DEBUG)
    response = api("GET", "status", headers={"Authorization": authorization})
    assert_problem(response, 401, "unauthenticated")
    assert authorization.partition(" ")[2][:40] not in response.text or not authorization.partition(" ")[2]


def test_the_token_never_reaches_a_response_or_the_logs(api, entra, caplog):
    caplog.set_level(logging.DEBUG)
    token = entra.api_token("Backup.Read")
    wrong = entra.api_token()
    for response in (status(api, token), api("POST", "backups", json={"target": "x"}, headers=bearer(wrong))):
        assert token not in response.text and wrong not in response.text
    signature = token.rsplit(".", 1)[1], wrong.rsplit(".", 1)[1]
    assert not any(part in caplog.text for part in signature)


# The app's fetch of the tenant's metadata and keys: it reads the v1.0 document, which MSAL (getting the
# test's tokens) never does.
ROUND = r"[0-9a-f]{12}/\.well-known/openid-configuration$"


def test_a_rolled_signing_key_is_fetched_and_a_flood_of_unknown_keys_is_not(api, entra, monkeypatch):
    """Like Microsoft.IdentityModel, a token naming an unknown key refetches the keys, but not more
    often than an interval (here shortened from a minute), so a flood of made-up kids cannot make the
    app hammer Entra ID."""
    monkeypatch.setattr(entra_tokens, "UNKNOWN_KEY_REFRESH_SECONDS", 0.5)
    assert status(api, entra.api_token("Backup.Read")).status_code == 200
    before = entra.faults.count("login", "GET", ROUND)
    entra.authority.roll_key()
    time.sleep(0.6)
    assert status(api, entra.api_token("Backup.Read")).status_code == 200  # the new key, fetched
    assert entra.faults.count("login", "GET", ROUND) == before + 1
    monkeypatch.setattr(entra_tokens, "UNKNOWN_KEY_REFRESH_SECONDS", 60)
    mallory = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(20):
        unknown = jwt.encode(claims(entra), mallory, "RS256", {"kid": uuid.uuid4().hex})
        assert_problem(status(api, unknown), 401, "unauthenticated")
    assert entra.faults.count("login", "GET", ROUND) == before + 1


def test_many_first_callers_at_once_share_one_fetch(api, entra):
    tokens = [entra.api_token("Backup.Read") for _ in range(12)]
    before = entra.faults.count("login", "GET")
    results: list[int] = []
    threads = [threading.Thread(target=lambda t=t: results.append(status(api, t).status_code)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 12
    assert entra.faults.count("login", "GET") - before == 4  # two metadata documents, the keys each names


def test_an_unreachable_authority_is_a_503_that_says_so_and_cached_keys_keep_serving(api, entra, monkeypatch):
    monkeypatch.setattr(entra_tokens, "FAILED_FETCH_BACKOFF_SECONDS", 0.5)
    token = entra.api_token("Backup.Read")
    entra.faults.down("login")
    body = assert_problem(status(api, token), 503, "token_keys_unavailable")
    assert "AUTH_AUTHORITY_HOST" in body["detail"]
    fetches = entra.faults.count("login")
    for _ in range(5):  # inside the back-off, no one asks the authority again
        assert_problem(status(api, token), 503, "token_keys_unavailable")
    assert entra.faults.count("login") == fetches
    entra.faults.clear()
    time.sleep(0.6)
    assert status(api, token).status_code == 200
    entra.faults.down("login")  # the keys are cached now: an outage does not lock anyone out
    assert status(api, identity_token(entra, "Backup.Read")).status_code == 200


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("AUTH_CLIENT_ID", "not-a-guid", "AUTH_CLIENT_ID"),
        ("AUTH_TENANT_ID", "", "AUTH_TENANT_ID"),
        ("AUTH_AUTHORITY_HOST", "http://login.microsoftonline.com", "AUTH_AUTHORITY_HOST"),
        ("AUTH_AUTHORITY_HOST", "https://login.microsoftonline.com/evil?x=", "AUTH_AUTHORITY_HOST"),
        ("AUTH_AUTHORITY_HOST", "https://login.microsoftonline.com:99999", "AUTH_AUTHORITY_HOST"),
    ],
)
def test_auth_settings_that_cannot_work_are_refused_by_name(api, entra, monkeypatch, name, value, fragment):
    from mccf_backup.errors import SettingsInvalid
    from mccf_backup.settings import Settings

    monkeypatch.setenv(name, value)
    assert_problem(status(api, entra.api_token("Backup.Read")), 500, "settings_invalid")  # never auth off
    with pytest.raises(SettingsInvalid) as refused:  # what the logs, the CLI and the preflight say
        Settings.from_env()
    assert fragment in refused.value.message


def test_a_slow_fetch_for_an_unknown_key_never_holds_up_callers_whose_key_is_cached(api, entra, monkeypatch):
    """A made-up kid makes the app ask the authority again; while that fetch crawls, every caller whose
    key is already cached is answered (the red team stalled them all for the fetch's length once)."""
    monkeypatch.setattr(entra_tokens, "UNKNOWN_KEY_REFRESH_SECONDS", 0.2)
    good = entra.api_token("Backup.Read")
    assert status(api, good).status_code == 200
    time.sleep(0.3)
    entra.faults.set_latency("login", 4.0, path=r"(openid-configuration|keys)$")
    mallory = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    junk = jwt.encode(claims(entra), mallory, "RS256", {"kid": uuid.uuid4().hex})
    refused: list[int] = []
    slow = threading.Thread(target=lambda: refused.append(status(api, junk).status_code))
    slow.start()
    time.sleep(0.5)  # the unknown kid's fetch is under way
    answers = [status(api, good).status_code for _ in range(3)]
    assert slow.is_alive(), "the fetch ended before the cached callers were asked: the test proves nothing"
    assert answers == [200, 200, 200]
    slow.join()
    assert refused == [401]


def test_restore_being_off_is_told_only_to_a_caller_with_a_token(api, entra, monkeypatch):
    monkeypatch.setenv("RESTORE_ENABLED", "false")
    assert_problem(api("POST", "restores", json={"target": "x", "dryRun": True}), 401, "unauthenticated")
    token = entra.api_token("Restore.Operator")
    restores = api("POST", "restores", json={"target": "x", "dryRun": True}, headers=bearer(token))
    assert_problem(restores, 403, "restore_disabled")


def test_headers_and_claims_the_library_alone_would_let_through_or_crash_on(api, entra):
    kid = key_id(entra.authority.public_keys[0])
    critical = jwt.encode(
        claims(entra), entra.authority._key, "RS256", {"kid": kid, "crit": ["exp"], "exp": 1}
    )  # RFC 7515: an extension the app does not understand must be refused
    assert_problem(status(api, critical), 401, "unauthenticated")
    endless = entra.authority.sign(claims(entra, exp=float("inf")))
    assert_problem(status(api, endless), 401, "unauthenticated")


def test_with_entra_id_on_broken_settings_are_told_to_no_caller_but_logged(api, entra, monkeypatch, caplog):
    """No token can be checked when settings do not load, so the list (it names targets) goes to the
    logs only; without Entra ID the key holders are the operators, and they get it."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("RETENTION_OVERRIDES", '{"no-such-target": {"daily": 1}}')
    body = assert_problem(api("GET", "status"), 500, "settings_invalid")
    assert "RETENTION_OVERRIDES" not in body["detail"] and "no-such-target" not in body["detail"]
    assert "RETENTION_OVERRIDES" in caplog.text
    monkeypatch.delenv("AUTH_CLIENT_ID")
    assert "RETENTION_OVERRIDES" in assert_problem(api("GET", "status"), 500, "settings_invalid")["detail"]
