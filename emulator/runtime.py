"""Start and stop the whole emulator: managed identity, ARM, Key Vault, Azure Files, control.

``with Emulator(state_dir, seed=True) as emu:`` is what pytest fixtures use;
``python -m emulator serve`` wraps the same object for people and scripts.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import secrets
import ssl
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from werkzeug.wsgi import LimitedStream
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import arm as arm_module
from .arm import ArmOptions, ManagedCcfService
from .arm_app import ArmApp
from .arm_platform import STORAGE_ACCOUNT, STORAGE_RESOURCE_GROUP
from .clock import Clock
from .control import ControlApp
from .entra import Directory, EntraService, client_credential
from .entra import error_response as entra_error
from .faults import FaultInjector
from .fileshare.auth import StorageAuthorizer
from .fileshare.service import FileService
from .fileshare.service import error_response as file_error
from .fileshare.store import FileStore
from .identity import Identity, IdentityService
from .identity import error_response as identity_error
from .keyvault import KeyVaultService, SecretStore
from .keyvault import error_response as vault_error
from .store import read_json, write_json
from .throttle import Throttle, ThrottleConfig
from .tls import CA_CERT, server_context
from .tokens import TENANT_ID, TokenAuthority

HOST = "127.0.0.1"
SUBSCRIPTION_ID = "8a2c5f7e-3b1d-4c6a-9e0f-1d2b3c4d5e6f"
STORAGE_SECRET_NAME = "backup-storage-connection"
SEED_INSTANCES = (
    # resource group, app name, ledger fixture, committed chunks already in the live ledger
    ("rg-ledger-prod", "contoso-ledger", "expired_service", 2),
    ("rg-ledger-audit", "fabrikam-audit", "cts_canary_sample", 1),
)
SERVICES = ("identity", "arm", "keyvault", "file", "control")


class _CasePreservingHandler(WSGIRequestHandler):
    """Keeps the headers as sent: Azure Storage returns metadata names in the case they were set, and
    accepts underscores in them; WSGI's environ upper-cases names and werkzeug drops underscored ones.

    It also keeps connections alive, as Azure does. Werkzeug's development server closes every
    connection, so each request would pay a new TLS handshake and the emulator, not the client,
    would bound every throughput measured against it. Keep-alive is safe once each request's body
    is read to its end before the next request line, which ``_body`` makes sure of.
    """

    timeout = 120  # an idle kept-alive connection is closed after this many seconds

    def make_environ(self) -> dict:
        environ = super().make_environ()
        environ["emulator.raw_headers"] = list(self.headers.items())
        self._body = None
        if not environ.get("wsgi.input_terminated"):  # a Content-Length body (chunked bodies close below)
            self._body = LimitedStream(environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = self._body
        # After the response werkzeug discards whatever the socket holds (safe only when it closes the
        # connection): with keep-alive that is the client's next request. Hide the stream from it.
        self._connection_rfile, self.rfile = self.rfile, io.BytesIO()
        return environ

    def run_wsgi(self) -> None:
        try:
            super().run_wsgi()
        finally:
            if getattr(self, "_connection_rfile", None) is not None:
                self.rfile, self._connection_rfile = self._connection_rfile, None
        if self._body is None or getattr(self, "environ", {}).get("emulator.dropped"):
            self.close_connection = True
        else:
            try:
                self._body.exhaust()  # what the app did not read, so the next request line is next
            except (ConnectionError, OSError):
                self.close_connection = True

    def log_error(self, format: str, *args) -> None:
        if format.startswith("Request timed out"):
            return  # a kept-alive connection the client left idle: closing it is routine, not an error
        super().log_error(format, *args)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close" and not self.close_connection:
            return  # werkzeug closes every connection; this handler drains bodies, so it need not
        super().send_header(keyword, value)


@dataclass
class _Server:
    name: str
    server: BaseWSGIServer
    thread: threading.Thread
    scheme: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.server.server_port}"


def seed_resource_id(resource_group: str, app: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.ConfidentialLedger/managedCCFs/{app}"
    )


class Emulator:
    def __init__(
        self,
        state_dir: str | os.PathLike,
        *,
        seed: bool = False,
        operation_seconds: float = 1.0,
        retry_after_seconds: int = 1,
        throttle: ThrottleConfig | None = None,
        record_dir: str | os.PathLike | None = None,
        quiet: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._seed = seed
        self._servers: dict[str, _Server] = {}
        self.clock = Clock()
        self.faults = FaultInjector()
        self.throttle = Throttle(throttle)
        identity_doc = self._load_or_create(
            "identity.json",
            lambda: {
                "header": secrets.token_urlsafe(24),
                "system": {"client_id": str(uuid.uuid4()), "object_id": str(uuid.uuid4())},
                "user": {"client_id": str(uuid.uuid4()), "object_id": str(uuid.uuid4())},
                "api_app": {"client_id": str(uuid.uuid4())},  # the app registration guarding the HTTP API
            },
        )
        if "api_app" not in identity_doc:  # a state dir from before the emulator served the API's tokens
            identity_doc["api_app"] = {"client_id": str(uuid.uuid4())}
            write_json(self.state_dir / "identity.json", identity_doc)
        self.identity_header = identity_doc["header"]
        self.system_identity = Identity(
            identity_doc["system"]["client_id"], identity_doc["system"]["object_id"], "system"
        )
        self.user_identity = Identity(identity_doc["user"]["client_id"], identity_doc["user"]["object_id"], "user")
        accounts = self._load_or_create(
            "accounts.json", lambda: {STORAGE_ACCOUNT: base64.b64encode(secrets.token_bytes(64)).decode()}
        )
        self.account_keys = {name: key for name, key in accounts.items()}
        self.authority = TokenAuthority(self.state_dir / "token-signing-key.pem")
        self.directory = Directory(identity_doc["api_app"]["client_id"])
        self.files = FileStore(self.state_dir / "files", self.clock)
        self.storage_auth = StorageAuthorizer({n: base64.b64decode(k) for n, k in self.account_keys.items()})
        self.secrets = SecretStore(self.state_dir / "keyvault.json")
        self.arm = ManagedCcfService(
            self.state_dir,
            self.clock,
            self.files,
            self.storage_auth,
            lambda: self.url("file"),
            self.faults,
            ArmOptions(operation_seconds=operation_seconds, retry_after_seconds=retry_after_seconds),
        )
        self.arm_app = ArmApp(
            self.arm, self.authority, self.throttle, lambda: self.url("arm"), Path(record_dir) if record_dir else None
        )
        if quiet:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)

    def _load_or_create(self, name: str, factory: Callable[[], dict]) -> dict:
        path = self.state_dir / name
        doc = read_json(path, None)
        if doc is None:
            doc = factory()
            write_json(path, doc)
            path.chmod(0o600)
        return doc

    # --- lifecycle ---
    def start(self) -> "Emulator":
        context = server_context(self.state_dir / "tls")
        preferred = read_json(self.state_dir / "ports.json", {})
        apps = {
            "identity": (
                self.faults.wrap(
                    "identity",
                    IdentityService(
                        self.authority,
                        self.identity_header,
                        self.system_identity,
                        [self.user_identity],
                        self.directory,
                    ),
                    identity_error,
                ),
                None,
            ),
            "login": (
                self.faults.wrap(
                    "login", EntraService(self.authority, self.directory, lambda: self.url("login")), entra_error
                ),
                context,
            ),
            "arm": (self.faults.wrap("arm", self.arm_app, arm_module.error_response), context),
            "keyvault": (
                self.faults.wrap(
                    "keyvault", KeyVaultService(self.secrets, self.authority, lambda: self.url("keyvault")), vault_error
                ),
                context,
            ),
            "file": (
                self.faults.wrap(
                    "file", FileService(self.files, self.storage_auth, lambda: self.url("file")), file_error
                ),
                context,
            ),
            "control": (ControlApp(self), None),
        }
        try:
            for name, (app, tls) in apps.items():
                self._servers[name] = self._serve(name, app, tls, preferred.get(name, 0))
        except BaseException:
            self.stop()
            raise
        write_json(self.state_dir / "ports.json", {n: s.server.server_port for n, s in self._servers.items()})
        if self._seed:
            self.seed()
        self._write_env()
        # Azure runs operations on its own time, not only when someone looks: finish due ones in the
        # background, so a backup whose answer was lost still writes its share.
        self._settling = threading.Event()
        self._settler = threading.Thread(target=self._settle_loop, name="emulator-settler", daemon=True)
        self._settler.start()
        return self

    def _settle_loop(self) -> None:
        rounds = 0
        while not self._settling.wait(0.05):
            rounds += 1
            try:
                self.arm.settle_all()
                if rounds % 10 == 0:
                    self.arm.flush()
            except Exception:  # noqa: BLE001 - a failed write is the operation's outcome; keep settling others
                pass

    def _serve(self, name: str, app: Callable, tls: ssl.SSLContext | None, port: int) -> _Server:
        try:
            server = make_server(
                HOST, port, app, threaded=True, ssl_context=tls, request_handler=_CasePreservingHandler
            )
        except OSError:
            server = make_server(
                HOST, 0, app, threaded=True, ssl_context=tls, request_handler=_CasePreservingHandler
            )  # the old port is taken
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name=f"emulator-{name}", daemon=True)
        thread.start()
        return _Server(name, server, thread, "https" if tls else "http")

    def stop(self) -> None:
        if getattr(self, "_settling", None) is not None:
            self._settling.set()
            self._settler.join(timeout=5)
        self.arm.flush()
        for item in self._servers.values():
            item.server.shutdown()
            item.server.server_close()
        self._servers.clear()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses and settings ---
    def url(self, service: str) -> str:
        """Base URL of a running service (for "file", the account name follows as first path segment)."""
        return self._servers[service].url

    @property
    def file_endpoint(self) -> str:
        return f"{self.url('file')}/{STORAGE_ACCOUNT}"

    @property
    def ca_bundle(self) -> str:
        return str(self.state_dir / "tls" / CA_CERT)

    def connection_string(self, account: str = STORAGE_ACCOUNT) -> str:
        return (
            f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={self.account_keys[account]};"
            f"FileEndpoint={self.url('file')}/{account}"
        )

    @property
    def api_auth_settings(self) -> dict[str, str]:
        """The app settings of a deployment whose API takes this emulator's Entra ID tokens."""
        return {
            "AUTH_CLIENT_ID": self.directory.api_client_id,
            "AUTH_TENANT_ID": TENANT_ID,
            "AUTH_AUTHORITY_HOST": self.url("login"),
        }

    def api_token(self, *roles: str) -> str:
        """A token for the app's API, got as an operator's tool gets it: a new app registration holding
        ``roles``, through azure-identity's ClientSecretCredential (v2.0)."""
        client = self.directory.register_client(list(roles))
        credential = client_credential(self.url("login"), client.client_id, client.secret)
        return credential.get_token(f"api://{self.directory.api_client_id}/.default").token

    @property
    def targets(self) -> list[str]:
        """Resource IDs of the seeded instances, once seeding has made them (now or in an earlier run)."""
        known = set(self.arm.resources) | set(self.arm.tombstones)
        seeded = [seed_resource_id(rg, app) for rg, app, _, _ in SEED_INSTANCES]
        return [resource_id for resource_id in seeded if resource_id.lower() in known]

    @property
    def env(self) -> dict[str, str]:
        """The settings a client needs, as written to ``emulator.env``."""
        return {
            "IDENTITY_ENDPOINT": f"{self.url('identity')}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            "ARM_ENDPOINT": self.url("arm"),
            "KEY_VAULT_URL": self.url("keyvault") + "/",
            "STORAGE_SECRET_NAME": STORAGE_SECRET_NAME,
            "STORAGE_ACCOUNT_NAME": STORAGE_ACCOUNT,
            "BACKUP_STORAGE_ACCOUNT_ID": (
                f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{STORAGE_RESOURCE_GROUP}/providers/"
                f"Microsoft.Storage/storageAccounts/{STORAGE_ACCOUNT}"
            ),
            "FILE_ENDPOINT": self.file_endpoint,
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
            "MCCF_TARGETS": ",".join(self.targets),
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION_ID,
            "EMULATOR_USER_ASSIGNED_CLIENT_ID": self.user_identity.client_id,
            "EMULATOR_CONTROL_URL": self.url("control"),
            "EMULATOR_AUTHORITY_HOST": self.url("login"),
            "EMULATOR_TENANT_ID": TENANT_ID,
            "EMULATOR_API_CLIENT_ID": self.directory.api_client_id,
        }

    def _write_env(self) -> None:
        lines = [f"{key}={value}" for key, value in self.env.items()]
        path = self.state_dir / "emulator.env"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)

    # --- seeding and test helpers ---
    def add_instance(self, resource_group: str, app: str, location: str = "eastus") -> str:
        """A running Managed CCF instance, created directly (no ARM round trip): for suites that need
        hundreds. Returns its resource ID."""
        resource_id = seed_resource_id(resource_group, app)
        properties = {"runningState": "Active", "nodeCount": 3, "deploymentType": {"languageRuntime": "JS"}}
        self.arm.create_resource(resource_id, "managedCCFs", app, location, {}, properties)
        return resource_id

    def seed(self) -> None:
        """Create the seeded instances and the storage secret; idempotent, and it follows a port change."""
        for resource_group, app, fixture, chunks in SEED_INSTANCES:
            resource_id = seed_resource_id(resource_group, app)
            if self.arm.get(resource_id) is None and resource_id.lower() not in self.arm.tombstones:
                self.arm.create_resource(
                    resource_id,
                    "managedCCFs",
                    app,
                    "eastus",
                    {"environment": "emulator"},
                    {
                        "runningState": "Active",
                        "nodeCount": 3,
                        "deploymentType": {"languageRuntime": "JS", "appSourceUri": ""},
                        "enclavePlatform": "IntelSgx",
                    },
                    fixture=fixture,
                    chunks=chunks,
                )
        current = self.secrets.versions(STORAGE_SECRET_NAME)
        wanted = self.connection_string()
        if not current or current[-1]["value"] != wanted:
            self.secrets.set(STORAGE_SECRET_NAME, wanted, content_type="storage-connection-string")

    def deny(self, client_id: str, actions: list[str] | set[str] = ("*",)) -> None:
        """Make ARM answer 403 AuthorizationFailed to this identity for these actions."""
        self.arm.options.deny.setdefault(client_id.lower(), set()).update(actions)
