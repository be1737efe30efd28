"""Runs many command lines of ONE program in one process, through its real flag parsing and error path.

  python tests/program_driver.py PROGRAM CASES.json RESULTS.json

CASES.json is a list of {"id", "argv"}; for each, the absl flags are reset, `cli.parse_flags` parses
the arguments as the console script would, and `cli._guarded(main, argv)` runs the program; its exit
code and what it wrote to standard output and error are recorded in RESULTS.json. A program's
flags are defined once per process (absl), hence one process per program: a catalogue of dozens of
cases costs a handful of TensorFlow imports instead of one per case.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_cases(program: str, cases: list) -> list:
    from absl import flags  # pylint: disable=import-outside-toplevel

    from tf_twostage.programs import cli  # pylint: disable=import-outside-toplevel

    module = importlib.import_module(f"tf_twostage.programs.{program}")
    results = []
    for case in cases:
        for name in [name for name in flags.FLAGS if name.startswith("config.")]:
            delattr(flags.FLAGS, name)  # the override flags of the previous case's --config.KEY arguments
        flags.FLAGS.unparse_flags()
        stdout, stderr = io.StringIO(), io.StringIO()
        code = None
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                sys.argv = [f"bin/{program}.py", *case["argv"]]  # config_flags reads the overrides from it
                argv = cli.parse_flags(list(sys.argv))
                code = cli._guarded(module.main, argv)  # pylint: disable=protected-access
            except SystemExit as stop:
                code = stop.code
            except BaseException as error:  # pylint: disable=broad-except  (a test failure, recorded)
                import traceback  # pylint: disable=import-outside-toplevel

                stderr.write("Traceback (driver)\n" + traceback.format_exc())
                code = f"raised {type(error).__name__}"
        results.append({"id": case["id"], "code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()})
    return results


def main(argv):
    program, cases_path, results_path = argv[1:4]
    with open(cases_path, encoding="utf-8") as file:
        cases = json.load(file)
    results = run_cases(program, cases)
    with open(results_path, "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1)


if __name__ == "__main__":
    main(sys.argv)
