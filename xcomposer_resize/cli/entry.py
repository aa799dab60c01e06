"""The console script `xcr`: signal handlers first, then the CLI.

Importing the CLI (typer, click) takes a moment; Ctrl-C or SIGTERM in that moment would otherwise
end the process with a traceback from an import, or silently. With the handlers installed before
anything heavy is imported, the worst case is the same one-line message as later.
"""

from __future__ import annotations

import os
import signal
import sys

from ..errors import interruption, on_signal

TYPE_CHECKING = False  # typing's costs ~4 ms before the torch worker starts
if TYPE_CHECKING:
    from typing import NoReturn


def run() -> NoReturn:
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if sys.argv[1:2] == ["resize"] and not {"-h", "--help"} & set(sys.argv[2:]):
            from ..conversion.worker import start_early

            start_early()  # torch's import starts now, beside the CLI's imports and the plan
        from .main import run as cli_run
    except KeyboardInterrupt as e:
        stopped = interruption(e)
        try:
            sys.stderr.write(f"xcr: error: {stopped.message}\n")
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        os._exit(stopped.exit_code)
    cli_run()
