"""netcfgctl's commands, one module each.

A command module has NAME and HELP (its `--help` line), READS (True: it
reads and takes `--json`), `add_arguments(parser)` and `async run(args,
ctx) -> exit code`.  A new command is a new module named here.
"""

from . import cleanup, config, devices, log_level, protections, show, status, subscribers, unsubscribe, watch

COMMANDS = (status, devices, show, protections, subscribers, unsubscribe, watch, log_level, config, cleanup)
