"""``python -m emulator serve --state-dir DIR [--seed]``: run the emulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .runtime import Emulator
from .throttle import BucketConfig, ThrottleConfig

UNLIMITED = BucketConfig(10**9, 10**6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start every emulated service on free loopback ports")
    serve.add_argument("--state-dir", required=True, help="where state, TLS material and emulator.env live")
    serve.add_argument(
        "--seed",
        action="store_true",
        help="create two Managed CCF instances, the storage account and the Key Vault secret",
    )
    serve.add_argument(
        "--operation-seconds",
        type=float,
        default=1.0,
        help="how long emulated backup/restore/create/delete operations take (default 1)",
    )
    serve.add_argument(
        "--retry-after-ms",
        type=int,
        help="answer 202s and 409s with retry-after-ms instead of Retry-After seconds (fast soak runs)",
    )
    serve.add_argument(
        "--retry-after-seconds",
        type=int,
        default=1,
        help="Retry-After on 202s (default 1; ARM's own is often 10 or more)",
    )
    serve.add_argument("--no-throttle", action="store_true", help="lift ARM's subscription request limits (soak runs)")
    serve.add_argument("--record-arm", metavar="DIR", help="record ARM exchanges as oav traffic files in DIR")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        emulator = Emulator(
            args.state_dir,
            seed=args.seed,
            operation_seconds=args.operation_seconds,
            record_dir=args.record_arm,
            quiet=not args.verbose,
            throttle=ThrottleConfig(UNLIMITED, UNLIMITED) if args.no_throttle else None,
        ).start()
        emulator.arm.options.retry_after_ms = args.retry_after_ms
        emulator.arm.options.retry_after_seconds = args.retry_after_seconds
    except OSError as exc:
        print(f"emulator: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        for key, value in emulator.env.items():
            print(f"{key}={value}")
        print(f"# written to {emulator.state_dir / 'emulator.env'}")
        print("ready", flush=True)
        stop.wait()
    finally:
        emulator.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
