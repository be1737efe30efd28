"""The environment of a program a benchmark starts: this checkout's `tf_twostage` first.

`python bin/run_experiment.py` puts `bin/` on the path, not the checkout, so with the package installed
editable (`pip install -e`) from another checkout, the program imports that checkout's code: a benchmark
run from a copy of the tree (frozen while the working tree changes) would measure the other code.
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env(base=None, **variables) -> dict:
    """`base` (default `os.environ`) with `variables` set and this checkout first on `PYTHONPATH`."""
    env = dict(os.environ if base is None else base, **variables)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env
