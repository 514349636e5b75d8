"""The emulator's control endpoint (plain http on loopback): faults, latency, clock, RBAC, app roles, inspection.

Tests in other processes (and people trying things by hand with curl) use
this; tests in the same process can call the same objects directly.
"""

from __future__ import annotations

import json
from typing import Iterable, Protocol

from werkzeug.wrappers import Request, Response

from .arm import ManagedCcfService
from .clock import Clock
from .entra import Directory
from .faults import FaultInjector, FaultRule
from .tokens import TokenAuthority


class Controlled(Protocol):
    """What the control endpoint acts on (the running Emulator), named here so neither imports the other."""

    faults: FaultInjector
    clock: Clock
    arm: ManagedCcfService
    directory: Directory
    authority: TokenAuthority

    def deny(self, client_id: str, actions: Iterable[str]) -> None: ...


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body, indent=1), status=status, content_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": {"code": "BadRequest", "message": message}}, status)


class ControlApp:
    def __init__(self, emulator: Controlled) -> None:
        self._emu = emulator

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        request = Request(environ)
        try:
            response = self.handle(request)
        except (ValueError, TypeError, KeyError) as exc:
            response = _error(400, str(exc))
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        emu, path, method = self._emu, request.path.rstrip("/"), request.method
        body = json.loads(request.get_data() or b"{}") if method in ("POST", "PUT") else {}
        if path == "/faults" and method == "GET":
            return _json(emu.faults.describe())
        if path == "/faults" and method == "POST":
            rule = FaultRule(
                service=body["service"],
                action=body.get("action", "status"),
                status=int(body.get("status", 503)),
                retry_after=body.get("retryAfter"),
                seconds=float(body.get("seconds", 0)),
                count=body.get("count", 1),
                method=body.get("method"),
                path=body.get("path"),
                code=body.get("code"),
                after=bool(body.get("after", False)),
            )
            emu.faults.add(rule)
            return _json(rule.describe(), 201)
        if path == "/faults" and method == "DELETE":
            emu.faults.clear()
            return Response(status=204)
        if path == "/faults/down" and method == "POST":
            return _json(emu.faults.down(body["service"]).describe(), 201)
        if path == "/faults/operations" and method == "POST":
            emu.faults.fail_next_operation(
                body["kind"],
                body.get("code", "InternalServerError"),
                body.get("message", "The operation failed (injected fault)."),
                body.get("status", "Failed"),
            )
            return Response(status=204)
        if path == "/latency" and method == "POST":
            emu.faults.set_latency(body["service"], float(body["seconds"]), body.get("path"))
            return Response(status=204)
        if path == "/clock" and method == "GET":
            return _json({"now": emu.clock.now().isoformat(), "offsetSeconds": emu.clock.offset_seconds})
        if path == "/clock" and method == "POST":
            emu.clock.advance(seconds=float(body["advanceSeconds"]))
            return _json({"now": emu.clock.now().isoformat(), "offsetSeconds": emu.clock.offset_seconds})
        if path == "/clock" and method == "DELETE":
            emu.clock.reset()
            return Response(status=204)
        if path == "/rbac/deny" and method == "POST":
            emu.deny(body["clientId"], body.get("actions", ["*"]))
            return Response(status=204)
        if path == "/rbac/deny" and method == "DELETE":
            emu.arm.options.deny.clear()
            return Response(status=204)
        if path == "/entra/clients" and method == "POST":  # an app registration holding some of the API's roles
            client = emu.directory.register_client(body.get("roles", []))
            return _json(
                {"clientId": client.client_id, "clientSecret": client.secret, "objectId": client.object_id}, 201
            )
        if path == "/entra/roles" and method == "POST":  # app role assignments of a principal, e.g. an identity
            emu.directory.assign(body["objectId"], body.get("roles", []))
            return Response(status=204)
        if path == "/entra/keys/roll" and method == "POST":
            return _json({"kid": emu.authority.roll_key()})
        if path == "/resources" and method == "GET":
            emu.arm.settle_all()
            return _json(list(emu.arm.resources.values()))
        if path == "/requests" and method == "GET":  # answered requests, counted (benchmarks, outside tests)
            return _json(
                {
                    "count": emu.faults.count(
                        request.args.get("service", "arm"),
                        request.args.get("method"),
                        request.args.get("path"),
                        int(request.args["status"]) if request.args.get("status") else None,
                    )
                }
            )
        if path == "/operations" and method == "GET":
            emu.arm.settle_all()
            return _json(
                [
                    {k: v for k, v in o.items() if k not in ("outcome", "backup_sas")}
                    for o in emu.arm.operations.values()
                ]
            )
        return _error(404, f"No control route {method} {path}.")
