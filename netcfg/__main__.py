"""`python -m netcfg` / `netcfg-service`: parse options, set up logging, serve."""

from __future__ import annotations

import logging
import resource
import sys

from . import config, privileges
from . import log as logsetup


def main(argv: list[str] | None = None) -> int:
    try:
        options = config.parse(argv)
    except config.ConfigError as e:  # one line naming the file and line, never a traceback
        print(f"netcfg-service: {e}", file=sys.stderr)
        return 2
    try:
        logsetup.setup(options.log_level, options.log_file)
    except OSError as e:
        print(f"netcfg-service: cannot open --log-file {options.log_file}: {e}", file=sys.stderr)
        return 2
    for key in options.upstream_ignored:
        logging.getLogger("netcfg").warning(
            "%s: ignoring \"%s\": not a key of this file (our own settings belong in %s)",
            options.upstream_file, key, options.settings_file or config.DEFAULT_SETTINGS_FILE)
    _raise_fd_limit()
    if not options.keep_all_capabilities:
        try:  # before any thread exists: capabilities are per thread
            privileges.drop()
        except OSError as e:
            logging.getLogger("netcfg").critical("cannot drop capabilities: %s", e)
            return 3
    from .bus.service import main as serve  # after logging: it imports the bus library

    try:
        return serve(options)
    except Exception:
        logging.getLogger("netcfg").critical("fatal error", exc_info=True)
        return 3


def _raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one.  A DCO device holds 3 fds and
    more per peer (netcfg/dco/channel.py), and two users may have 256
    devices each: the usual soft limit of 1,024 would end in EMFILE, while
    the hard limit is usually far higher.  The event loop uses epoll, so
    high fd numbers cost nothing."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as e:
            logging.getLogger("netcfg").warning("cannot raise the open-file limit from %d: %s", soft, e)


if __name__ == "__main__":
    sys.exit(main())
