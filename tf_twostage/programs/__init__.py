"""The programs of `bin/` and the console scripts: one module per program, one flag parser and error path.

Importing this package loads TensorFlow quietly unless `--verbose` is on the command line: TensorFlow
writes log lines straight to the process's standard error while it loads (the oneDNN notice, a CUDA probe
on a machine without a GPU, CPU features), before any logging setting applies, so the file descriptor is
pointed elsewhere for that moment; if loading fails, what it wrote is shown. Later C++ logging below
FATAL is off (`TF_CPP_MIN_LOG_LEVEL=3`, unless the user set it). The library layers below never touch
the environment: only programs do.
"""

import os
import sys
import tempfile


def _load_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


if "--verbose" not in sys.argv:
    _load_tensorflow_quietly()
