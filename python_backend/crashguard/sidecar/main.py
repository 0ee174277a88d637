"""The memory monitor's entry. The extension's bundled launcher calls `main()` directly; `crashguard serve` is the
same from an installed package. Imports nothing heavy until it runs.

- no option: JSON-RPC over stdio (LSP framing), one client (tests, the CLI);
- `--ensure`: make sure this user's shared monitor of this build runs (started detached when none does) and print
  where it listens, one JSON line: `{"socket", "pid", "started", "python", "build"}` (what a window runs first);
  exit EXIT_NO_SHARED_MONITOR where the platform cannot host it (the window then runs the no-option mode itself);
- `--daemon`: be that shared monitor (started by `--ensure`, with `--lock-fd` of the lock it hands over).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import BinaryIO

EXIT_UNSAFE = 5  # the runtime folder, socket or lock is not this user's own: nothing is started or connected
EXIT_NO_MONITOR = 6  # the monitor did not come up
# This platform has no peer credentials: no shared monitor here, nothing created; a window runs its own over stdio.
# Apart from EXIT_UNSAFE on purpose: a socket or lock that is not this user's must stay a visible refusal.
EXIT_NO_SHARED_MONITOR = 7


def claim_stdout() -> BinaryIO:
    """Keep the real stdout for the protocol and point fd 1 (and sys.stdout) at stderr, so a stray print, a
    library's logging or a C extension's output can never corrupt the stream."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb")


def block_ssl() -> None:
    """The sidecar talks over pipes and never needs TLS, but asyncio imports ssl when it can, which maps OpenSSL:
    ~4 MB of the sidecar's ~45 MB RSS budget. Mark ssl unavailable (asyncio is built to run without it). Only
    effective before asyncio is first imported, so CLI modules import asyncio inside their `run`."""
    if "asyncio" not in sys.modules:
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--ensure", action="store_true",
                      help="start this user's shared memory monitor if none runs, print where it listens (JSON)")
    mode.add_argument("--daemon", action="store_true", help="be the shared memory monitor (started by --ensure)")
    parser.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--idle-grace", type=float, default=None, metavar="SECONDS",
                        help="the shared monitor exits this long after the last window left (default 30)")


def _ensure(development: bool) -> int:
    from ..util.user_dirs import UnsafeDirectory
    from .endpoint import NoSharedMonitor, UnsafeEndpoint, endpoint
    from .starter import MonitorFailed, daemon_argv, ensure_monitor

    try:
        found = ensure_monitor(endpoint(development), daemon_argv())
    except NoSharedMonitor as exc:
        sys.stderr.write(f"Crash Guard: no shared memory monitor on this platform: {exc}\n")
        return EXIT_NO_SHARED_MONITOR
    except (UnsafeDirectory, UnsafeEndpoint) as exc:
        sys.stderr.write(f"Crash Guard: refusing to start or use the memory monitor: {exc}\n")
        return EXIT_UNSAFE
    except MonitorFailed as exc:
        sys.stderr.write(f"Crash Guard: {exc}\n")
        return EXIT_NO_MONITOR
    sys.stdout.write(json.dumps(found.to_json()) + "\n")
    sys.stdout.flush()
    return 0


def _daemon(development: bool, lock_fd: int | None, grace: float | None) -> int:
    from ..util.user_dirs import UnsafeDirectory
    from .endpoint import NoSharedMonitor, UnsafeEndpoint, bind, endpoint, hold_lock

    log = logging.getLogger(__name__)
    try:
        ep = endpoint(development)
        lock = hold_lock(ep, lock_fd)
    except NoSharedMonitor as exc:
        log.error("no shared memory monitor on this platform: %s", exc)
        return EXIT_NO_SHARED_MONITOR
    except (UnsafeDirectory, UnsafeEndpoint) as exc:
        log.error("refusing to serve: %s", exc)
        return EXIT_UNSAFE
    if lock is None:
        log.info("another memory monitor of build %s runs already (it holds %s)", ep.build, ep.lock)
        return 0
    listener = bind(ep.socket)  # windows may connect now; they are served once the imports below are done
    logging.getLogger("pygls").setLevel(logging.WARNING)
    from .daemon import IDLE_GRACE, run_daemon  # after block_ssl: pygls imports asyncio

    return run_daemon(ep, listener, IDLE_GRACE if grace is None else grace)


def main(argv: Sequence[str] | None = None, development: bool = False) -> int:
    """The memory monitor (see the module's doc for the modes); `development`: the launcher runs it from a source
    checkout (its shared monitor is a build of its own)."""
    parser = argparse.ArgumentParser(prog="crashguard serve")
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    block_ssl()
    if args.ensure:
        return _ensure(development)
    if args.daemon:
        return _daemon(development, args.lock_fd, args.idle_grace)
    protocol_out = claim_stdout()
    # pygls logs every message it sends at INFO: costly at one sample a second, and noise.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    from .server import ClientLogHandler, build_server  # after block_ssl: pygls imports asyncio

    server = build_server()
    handler = ClientLogHandler(server.hub)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger("crashguard").addHandler(handler)
    server.start_io(sys.stdin.buffer, protocol_out)
    return 0
