"""What every program in bin/ shares: flag parsing that reports a bad `--config.KEY` as one line."""

from __future__ import annotations

import sys

from absl import app

from tf_twostage.config.checks import check_override_keys


def parse_flags(argv):
    """absl's flag parsing; an unknown `--config.KEY` is one `error:` line and exit code 2, not a traceback.

    Use as `app.run(main, flags_parser=parse_flags)`.
    """
    try:
        check_override_keys(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return app.parse_flags_with_usage(argv)
