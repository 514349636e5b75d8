"""What runs share: settings, one credential, one connection pool, one storage secret read.

A run is a timer invocation, a queue message, an HTTP request or a CLI command; in the Functions
app one engine serves every invocation of a process (functions/engine.py). It reads the storage
secret from Key Vault once (again after STORAGE_SECRET_TTL_SECONDS) and shares the process-wide
credential, so a scheduled run over any number of targets makes one Key Vault read and one token
request per audience, and every worker thread reuses the same TLS connections to ARM and Storage.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.fileshare import ExponentialRetry
from azure.storage.queue import QueueClient

from . import logs, work_queue
from .arm import ManagedCcfClient
from .catalog import Catalog
from .errors import MccfBackupError, TargetNotFound
from .identity import get_credential
from .idempotency import IdempotencyKeys
from .jobs import JobStore, JobTable
from .leases import Leases
from .lifecycle import Deadlines
from .settings import Settings
from .storage_config import StorageConfig, load_storage_config
from .targets import Target, TargetSet

log = logs.logger("mccf_backup")
ThreadSetup = Callable[[], None]  # run first on every worker thread (the invocation's logging context)
STORAGE_SECRET_TTL_SECONDS = 600


class Run:
    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential | None = None,
        *,
        interactive: bool = False,
        arm: ManagedCcfClient | None = None,
        table: JobTable | None = None,
    ) -> None:
        self.settings = settings
        self.interactive = interactive  # the CLI's DefaultAzureCredential rather than a managed identity
        self.targets = TargetSet(settings.targets)
        self.credential = credential or get_credential(settings.client_id, interactive=interactive)
        self.http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(10, 2 * settings.concurrency))
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        self.arm = arm or ManagedCcfClient(
            settings.arm_endpoint,
            self.credential,
            settings.api_version,
            read_timeout=settings.arm_timeout_seconds,
            session=self.http,
            retry_backoff_factor=0.8,
        )
        self.table = table or JobTable(settings.jobs, self.credential)
        self.jobs = JobStore(self.table)
        self.deadlines = Deadlines.from_settings(
            settings.operation_timeout_minutes, settings.arm_timeout_seconds, settings.lost_operation_grace_seconds
        )
        lease_life = self.deadlines.accepted + self.deadlines.starting + self.deadlines.running
        self.leases = Leases(self.table, self.jobs, lease_life + self.deadlines.finishing + self.deadlines.finishing)
        self.keys = IdempotencyKeys(self.table, self.jobs)
        self._storage: StorageConfig | None = None
        self._storage_read = 0.0
        self._catalog: Catalog | None = None
        self._queue: QueueClient | None = None
        self._lock = threading.Lock()
        # (subscription, resource group, type) -> {resource id: location}, listed once per scheduled run
        self.locations: dict[tuple[str, str, str], dict[str, str]] = {}

    def storage(self) -> StorageConfig:
        """The storage secret, read from Key Vault once and again after STORAGE_SECRET_TTL (a rotated
        key is picked up within minutes even by an engine that serves many invocations)."""
        with self._lock:
            if self._storage is None or time.monotonic() - self._storage_read >= STORAGE_SECRET_TTL_SECONDS:
                self._storage = load_storage_config(
                    self.settings.key_vault_url, self.settings.storage_secret_name, self.credential
                )
                self._storage_read = time.monotonic()
                self._catalog = None
            return self._storage

    def use_storage(self, config: StorageConfig) -> None:
        """Take a secret just read (the preflight reads it fresh to judge it) as this run's, so the
        run's catalog uses what was judged and Key Vault is not asked twice."""
        with self._lock:
            self._storage, self._storage_read, self._catalog = config, time.monotonic(), None

    def catalog(self) -> Catalog:
        """One catalog (one Storage client and its connections) per run, shared by every worker."""
        storage = self.storage()
        with self._lock:
            if self._catalog is None:
                # Catalog calls are small metadata requests: retry a 503 after about 2, 6 and 10 s rather
                # than the SDK's 15 s first wait, so a storage blip does not stall a step.
                self._catalog = Catalog(
                    storage.service_client(
                        retry_policy=ExponentialRetry(initial_backoff=2, increment_base=2),
                        transport=RequestsTransport(session=self.http, session_owner=False),
                    )
                )
            return self._catalog

    def operations_queue(self) -> QueueClient:
        with self._lock:
            if self._queue is None:
                self._queue = work_queue.queue_client(
                    self.settings.jobs, self.settings.operations_queue_name, self.credential
                )
            return self._queue

    def location(self, target: Target) -> str:
        """The instance's region, from this run's list of its resource group if there is one, else one GET."""
        key = (target.subscription.lower(), target.resource_group.lower(), target.resource_type)
        listed = self.locations.get(key)
        if listed is not None:
            location = listed.get(target.resource_id.lower())
        else:
            instance = self.arm.get(target)
            location = instance.get("location") if instance is not None else None
        if location is None:
            raise TargetNotFound(
                f"The {target.resource_type} '{target.name}' does not exist in resource group "
                f"'{target.resource_group}'. Check MCCF_TARGETS.",
                target=str(target),
            )
        return location

    def prefetch_locations(self, setup: ThreadSetup | None = None) -> None:
        """One list per resource group for a scheduled run (a failed list falls back to a GET per target)."""
        groups = sorted({(t.subscription, t.resource_group, t.resource_type) for t in self.targets})
        self.locations.clear()  # this run's view only: an instance may have moved since the last run

        def list_group(group: tuple[str, str, str]) -> None:
            subscription, resource_group, resource_type = group
            try:
                listed = self.arm.locations(subscription, resource_group, resource_type)
            except MccfBackupError as err:
                log.warning(
                    "could not list %s in %s (%s); reading targets one by one", resource_type, resource_group, err.code
                )
                return
            self.locations[(subscription.lower(), resource_group.lower(), resource_type)] = listed

        for_each(list_group, groups, self.settings.concurrency, setup, "mccf-backup-list")


def for_each(work: Callable, items: list, concurrency: int, setup: ThreadSetup | None, name: str) -> list:
    """``work`` over ``items``, ``concurrency`` at a time, each worker thread first running ``setup``
    (so what it logs is attributed to the invocation that asked for it)."""
    workers = max(1, min(concurrency, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name, initializer=setup) as pool:
        return list(pool.map(work, items))
