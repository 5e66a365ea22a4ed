"""`python -m netcfg` / `netcfg-service`: parse options, set up logging, serve.

Exit codes (docs/troubleshooting.md): 0 stopped normally (SIGTERM, SIGINT,
idle exit); 1 internal error (a bug: its traceback only at --log-level 6);
2 bad options or configuration file (argparse's own code); 3 a fatal
start-up error, one line naming what failed; 4 DNS could not be given back
at shutdown.  A fatal line goes to the log and, when the log is a file, to
stderr too: whoever started the service sees it either way.
"""

from __future__ import annotations

import logging
import resource
import signal
import sys

from . import config, privileges
from . import log as logsetup
from .errors import StartupError

EXIT_INTERNAL, EXIT_USAGE, EXIT_STARTUP = 1, 2, 3
PROG = "netcfg-service"
NOT_ROOT = "must be started as root (or with CAP_NET_ADMIN)"

log = logging.getLogger("netcfg")


def main(argv: list[str] | None = None) -> int:
    # Until the event loop takes SIGHUP over (bus/service.py), it must not
    # kill a starting service either.
    signal.signal(signal.SIGHUP, lambda *_: logsetup.sighup_ignored())
    try:
        options = config.parse(argv)
    except config.ConfigError as e:  # one line naming the file and line, never a traceback
        if not privileges.has(privileges.CAP_NET_ADMIN):  # the files are root's: that is the cause
            print(f"{PROG}: {NOT_ROOT}", file=sys.stderr)
            return EXIT_STARTUP
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        logsetup.setup(options.log_level, options.log_file, options.log_journal)
    except OSError as e:
        print(f"{PROG}: cannot open --log-file {options.log_file}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    for key in options.upstream_ignored:
        log.warning("%s: ignoring \"%s\": not a key of this file (our own settings belong in %s)",
                    options.upstream_file, key, options.settings_file or config.DEFAULT_SETTINGS_FILE)
    try:
        return _start(options)
    except StartupError as e:
        return fatal(options, str(e), EXIT_STARTUP)
    except KeyboardInterrupt:  # SIGINT before the event loop handles it: nothing was set up yet
        return fatal(options, "interrupted during start-up", EXIT_STARTUP)
    except Exception as e:
        return fatal(options, f"internal error: {type(e).__name__}: {e}", EXIT_INTERNAL, traceback=True)


def _start(options: config.Options) -> int:
    if not privileges.has(privileges.CAP_NET_ADMIN):
        raise StartupError(NOT_ROOT)
    _raise_fd_limit()
    if not options.keep_all_capabilities:
        try:  # before any thread exists: capabilities are per thread
            privileges.drop()
        except OSError as e:
            raise StartupError(f"cannot drop capabilities: {e.strerror or e}") from None
    from .bus.service import main as serve  # after logging: it imports the bus library

    return serve(options)


def fatal(options: config.Options, message: str, code: int, traceback: bool = False) -> int:
    """Log `message` as one critical line (with the traceback only at
    --log-level 6), copy it to stderr when the log goes elsewhere, return `code`."""
    log.critical("%s", message, exc_info=traceback and options.log_level >= 6)
    if options.log_file:
        print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one.  A DCO device holds 3 fds and
    more per peer (netcfg/dco/channel.py), and two users may have 256
    devices each: the usual soft limit of 1,024 would end in EMFILE, while
    the hard limit is usually far higher.  The event loop uses epoll, so
    high fd numbers cost nothing.  (The systemd unit sets both limits, so
    there this does nothing.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as e:
            log.warning("cannot raise the open-file limit from %d: %s", soft, e)


if __name__ == "__main__":
    sys.exit(main())
