"""How much a training run prints: Keras `fit`'s `verbose` for the config's `verbose` key."""

from __future__ import annotations

import sys


def fit_verbosity(verbose) -> int:
    """0 silent; 1 a progress bar on a terminal and one line per epoch otherwise (a bar's redraws would fill
    a log file with megabytes); 2 one line per epoch."""
    verbose = int(verbose)
    if verbose == 1 and not sys.stdout.isatty():
        return 2
    return verbose
