"""`python -m netcfg` / `netcfg-service`: parse options, set up logging, serve."""

from __future__ import annotations

import logging
import sys

from . import config, privileges
from . import log as logsetup


def main(argv: list[str] | None = None) -> int:
    options = config.parse(argv)
    try:
        logsetup.setup(options.log_level, options.log_file)
    except OSError as e:
        print(f"netcfg-service: cannot open --log-file {options.log_file}: {e}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
