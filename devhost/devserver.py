"""A development server for the Functions app where Azure Functions Core Tools are not installed.

It reads the app's own functions (``app.get_functions()``): each HTTP function is served at
``/api/<route>`` with its methods and auth level (a function key, as ``?code=`` or the
``x-functions-key`` header), and the real handler is called with a ``func.HttpRequest``. Timer
functions can be run through ``POST /admin/functions/<name>`` with the master key, as with the
Functions host's admin API (here it runs synchronously, and answers 500 when the function raised).
Like ``func start``, it sets WEBSITE_HOSTNAME, the origin of the URLs the app hands out, and its
access log never shows a key. Queue functions run beside it (devhost/queuepump.py), as
``func start`` runs them.

    python -m devhost.devserver [--port 7071] [--key KEY] [--master-key KEY] [--settings local.settings.json]
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
from pathlib import Path
from typing import Iterable

import azure.functions as func
from azure.functions.timer import TimerRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from mccf_backup.logs import safe_line
from devhost.invocation import invoke

log = logging.getLogger("devserver")
ROUTE_PARAM = re.compile(r"\{(\w+)(?::\w+)?\??\}")


_INDEXED: dict[int, list] = {}


def functions_of(app: func.FunctionApp) -> list:
    """``app.get_functions()``, once per app: a second call fails the SDK's duplicate-name check."""
    if id(app) not in _INDEXED:
        _INDEXED[id(app)] = app.get_functions()
    return _INDEXED[id(app)]


def _rule(route: str) -> str:
    return "/api/" + ROUTE_PARAM.sub(lambda m: f"<{m.group(1)}>", route.strip("/"))


ANSI_STYLE = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours the status on a terminal
KEY_IN_QUERY = re.compile(r"(?i)(code=)[^&;\s\"]*")  # wherever a client put it: ?, &, ; or the path


class _RedactingHandler(WSGIRequestHandler):
    """werkzeug's access log as the app writes logs: no key (``code=`` values are redacted), one
    printable line (werkzeug escapes only C0 and C1 controls, not U+2028), and no event marker."""

    def log(self, type: str, message: str, *args: object) -> None:
        line = ANSI_STYLE.sub("", KEY_IN_QUERY.sub(r"\1REDACTED", message % args if args else message))
        super().log(type, safe_line(line))


class DevServer:
    def __init__(self, app: func.FunctionApp, function_key: str, master_key: str) -> None:
        if hmac.compare_digest(function_key.encode(), master_key.encode()):
            raise ValueError("the master key must differ from the function key")
        self._key = function_key
        self._master_key = master_key
        self._functions = {}
        rules = []
        for function in functions_of(app):
            trigger = function.get_trigger().get_dict_repr()
            name = function.get_function_name()
            self._functions[name] = function
            if trigger.get("type") == "httpTrigger":
                methods = [str(getattr(m, "value", m)) for m in trigger.get("methods") or ["GET", "POST"]]
                rules.append(Rule(_rule(trigger.get("route") or name), methods=methods, endpoint=name))
        rules.append(Rule("/admin/functions/<name>", methods=["POST"], endpoint="__admin__"))
        self._map = Map(rules, strict_slashes=False)

    def _authorized(self, request: Request, function: func.FunctionBuilder | None) -> bool:
        """As the host decides: a function route takes the function key or the master key; the admin
        API (``function`` None) and ``admin``-level routes take only the master key."""
        level = "admin"
        if function is not None:
            level = str(getattr(function.get_trigger().get_dict_repr().get("authLevel"), "value", "function"))
        if level == "anonymous":
            return True
        given = (request.args.get("code") or request.headers.get("x-functions-key") or "").encode()
        if hmac.compare_digest(given, self._master_key.encode()):
            return True
        return level == "function" and hmac.compare_digest(given, self._key.encode())

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self._map.bind_to_environ(environ).match()
        except HTTPException as exc:  # no route, or not this method: the host answers without a body
            allow = {"Allow": ", ".join(exc.valid_methods)} if isinstance(exc, MethodNotAllowed) else {}
            return Response(status=exc.code or 404, headers=allow)(environ, start_response)
        if endpoint == "__admin__":
            return self._admin(request, args["name"])(environ, start_response)
        function = self._functions[endpoint]
        if not self._authorized(request, function):
            return Response(status=401)(environ, start_response)
        http_request = func.HttpRequest(
            method=request.method,
            url=request.url,
            headers=dict(request.headers),
            params=dict(request.args),
            route_params=args,
            body=request.get_data(),
        )
        arg = function.get_trigger().get_dict_repr().get("name", "req")
        result = invoke(function, **{arg: http_request})
        response = Response(result.get_body(), status=result.status_code, mimetype=result.mimetype)
        for key, value in result.headers.items():
            if key.lower() != "content-type":
                response.headers[key] = value
        return response(environ, start_response)

    def _admin(self, request: Request, name: str) -> Response:
        if not self._authorized(request, None):
            return Response(status=401)
        function = self._functions.get(name)
        if function is None:
            return Response(status=404)
        if function.get_trigger().get_dict_repr().get("type") != "timerTrigger":
            return Response(status=400)  # only timer functions run through the admin endpoint here
        try:
            invoke(
                function, **{function.get_trigger().get_dict_repr().get("name", "timer"): TimerRequest(past_due=False)}
            )
        except Exception as exc:  # noqa: BLE001 - reported to the caller, as the host's logs would
            log.warning("function %s failed: %s", name, exc)
            return Response(json.dumps({"error": str(exc)}), status=500, mimetype="application/json")
        return Response(status=202)


class RunningServer:
    """The dev server on a background thread (tests and the demo), with the app's queue functions run
    beside it as the host runs them (``pump=False`` leaves the queues alone)."""

    def __init__(
        self,
        app: func.FunctionApp,
        function_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        pump: bool = True,
        master_key: str | None = None,
    ) -> None:
        from devhost.queuepump import QueuePump

        self.key = function_key
        self.master_key = master_key or secrets.token_urlsafe(24)
        self._server: BaseWSGIServer = make_server(
            host, port, DevServer(app, function_key, self.master_key), threaded=True, request_handler=_RedactingHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="devserver", daemon=True)
        self.pump = QueuePump(app, visibility_timeout=5) if pump else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> "RunningServer":
        self._hostname = os.environ.get("WEBSITE_HOSTNAME")
        os.environ["WEBSITE_HOSTNAME"] = f"127.0.0.1:{self._server.server_port}"  # as func start sets it
        self._thread.start()
        if self.pump is not None:
            self.pump.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pump is not None:
            self.pump.__exit__()
        self._server.shutdown()
        self._server.server_close()
        if self._hostname is None:
            os.environ.pop("WEBSITE_HOSTNAME", None)
        else:
            os.environ["WEBSITE_HOSTNAME"] = self._hostname


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.devserver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument(
        "--key",
        default=os.environ.get("FUNCTION_KEY") or secrets.token_urlsafe(24),
        help="function key callers must send (default: FUNCTION_KEY, else a random one)",
    )
    parser.add_argument(
        "--master-key",
        default=os.environ.get("MASTER_KEY") or secrets.token_urlsafe(24),
        help="master key for /admin/functions/<name> (default: MASTER_KEY, else a random one)",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        help="a local.settings.json whose Values to run with, as `func start` does (the environment wins)",
    )
    args = parser.parse_args(argv)
    if args.settings:
        try:
            values = json.loads(args.settings.read_text(encoding="utf-8"))["Values"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"cannot read settings from {args.settings}: {exc}")
        os.environ.update({name: str(value) for name, value in values.items() if name not in os.environ})
    from function_app import app

    print(
        f"Functions app on http://127.0.0.1:{args.port}/api/ (function key: {args.key}; "
        f"master key for /admin/functions/<name>: {args.master_key})",
        flush=True,
    )
    with RunningServer(app, args.key, port=args.port, master_key=args.master_key):
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    # Run as ``python -m``, this file is ``__main__``: hand over to ``devhost.devserver`` itself, or the
    # queue pump (which imports that module) would index the app a second time and fail.
    from devhost.devserver import main as devserver_main

    sys.exit(devserver_main())
