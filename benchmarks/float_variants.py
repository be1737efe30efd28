"""How a benchmark runs one program under each float-rounding variant (the stability benchmarks).

`default`; `onednn_off` (`TF_ENABLE_ONEDNN_OPTS=0`: TensorFlow's plain CPU kernels instead of oneDNN's,
another summation order); `deterministic` (`tf.config.experimental.enable_op_determinism()` before the
program). Used by `selection.py` (Stage 1 alone) and `stability.py` (whole runs).
"""

import sys
from child_env import child_env  # noqa: E402  (benchmarks/)

VARIANTS = ("default", "onednn_off", "deterministic")

_DETERMINISTIC = ("import runpy, sys, tensorflow as tf; tf.config.experimental.enable_op_determinism(); "
                  "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def variant_command(variant: str, program_and_args: list) -> tuple:
    """(argv, environment) that run `program_and_args` (a script and its flags) under `variant`."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    env = child_env()
    if variant == "onednn_off":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    prefix = ["-c", _DETERMINISTIC] if variant == "deterministic" else []
    return [sys.executable, *prefix, *program_and_args], env
