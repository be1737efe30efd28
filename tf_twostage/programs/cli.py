"""What every program shares: flag parsing, presets by name, quiet output, and one error path.

    def main(argv): ...           # returns 0, or raises
    def run(): cli.run_program(main)

Errors become one line on standard error and an exit code, never a traceback:

- a bad value or a missing file the user can fix (`ValueError`, `OSError` and its kinds, a bad
  `--config.KEY`): `error: ...`, exit 2, before anything expensive where the program checks first;
- a NaN loss (`FloatingPointError`): exit 3, the last good checkpoint kept;
- Ctrl-C: exit 130;
- anything else: `error: unexpected <kind>: ...` plus the file the full traceback was written to, exit 1.

`--verbose` (every program) brings TensorFlow's log lines and Python warnings back.
"""

from __future__ import annotations

import datetime
import importlib.resources
import logging
import os
import re
import sys
import tempfile
import traceback
import warnings
from typing import Callable, Optional, Sequence

from absl import app, flags

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130
PRESETS_PACKAGE = "tf_twostage.presets"  # the repository's configs/ folder, installed with the package

_CONFIG_FLAG = re.compile(r"^--?config=(.*)$")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show TensorFlow's log lines and Python warnings.")


class UsageError(ValueError):
    """A program was called wrongly (arguments, flags): reported like any bad input."""


def preset_path(name: str) -> str:
    """The file of a packaged preset: `mnist5k` or `paper/mnist` -> .../tf_twostage/presets/mnist5k.py."""
    relative = name[:-3] if name.endswith(".py") else name
    root = importlib.resources.files(PRESETS_PACKAGE)
    candidate = root.joinpath(*f"{relative}.py".split("/"))
    if not candidate.is_file():
        raise UsageError(f"--config={name}: no such file, and no preset of that name; presets: "
                         f"{', '.join(list_presets())}")
    return str(candidate)


def list_presets() -> list:
    """Names of the packaged presets (`mnist5k`, `paper/mnist`, ...)."""
    names = []
    root = importlib.resources.files(PRESETS_PACKAGE)

    def walk(node, prefix):
        for child in sorted(node.iterdir(), key=lambda item: item.name):
            if child.is_dir() and not child.name.startswith("__"):
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".py") and not child.name.startswith("__"):
                names.append(prefix + child.name[:-3])

    walk(root, "")
    return names


def resolve_config_argument(argv: Sequence[str]) -> list:
    """`--config=NAME` (a packaged preset) becomes its file; a path must exist. Other arguments stay."""
    resolved = []
    for argument in argv:
        match = _CONFIG_FLAG.match(argument)
        if match:
            value = match.group(1)
            if not value:
                raise UsageError("--config is empty: give a config file (configs/NAME.py) or a preset name")
            if not os.path.isfile(value):
                looks_like_path = value.endswith(".py")  # `paper/mnist` is a preset name
                if looks_like_path and not os.path.isfile(_under_presets(value)):
                    raise UsageError(f"--config={value}: no such file; give a config file or one of the presets "
                                     f"{', '.join(list_presets())}")
                value = _under_presets(value) if looks_like_path else preset_path(value)
            argument = f"--config={value}"
        resolved.append(argument)
    return resolved


def _under_presets(path: str) -> str:
    """`configs/mnist5k.py` outside a checkout still names the packaged preset `mnist5k`."""
    parts = os.path.normpath(path).split(os.sep)
    if "configs" in parts:
        relative = "/".join(parts[parts.index("configs") + 1:])
        try:
            return preset_path(relative)
        except UsageError:
            return path
    return path


def parse_flags(argv):
    """absl's flag parsing, with presets by name and every mistake as one line and exit code 2."""
    from tf_twostage.config.checks import check_override_keys  # pylint: disable=import-outside-toplevel

    try:
        argv = resolve_config_argument(argv)
        check_override_keys(argv)
        return flags.FLAGS(argv)
    except (UsageError, ValueError, flags.Error) as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except Exception as error:  # e.g. a config file that does not load  # pylint: disable=broad-except
        path = _write_traceback()
        _fail(f"could not read the flags or the config: {type(error).__name__}: {error} (traceback: {path})",
              EXIT_BAD_INPUT)
    return argv


def run_program(main: Callable[[list], Optional[int]]) -> None:
    """`app.run(main)` with the shared flag parsing, quiet output and error path."""
    def guarded_main(argv):
        _set_verbosity(_VERBOSE.value)
        return _guarded(main, argv)

    app.run(guarded_main, flags_parser=parse_flags)


def _guarded(main, argv) -> int:
    try:
        return main(argv) or 0
    except FloatingPointError as error:
        _fail(str(error), EXIT_DIVERGED)
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to continue", EXIT_INTERRUPTED)
    except (UsageError, ValueError, OSError) as error:
        _fail(_one_line(error), EXIT_BAD_INPUT)
    except Exception as error:  # pylint: disable=broad-except
        path = _write_traceback()
        _fail(f"unexpected {type(error).__name__}: {_one_line(error)} (full traceback: {path})", EXIT_UNEXPECTED)
    return EXIT_UNEXPECTED


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return " ".join(text.split())


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _write_traceback() -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    handle, path = tempfile.mkstemp(prefix=f"tf_twostage-{stamp}-", suffix=".traceback.txt")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(traceback.format_exc())
    return path


def _set_verbosity(verbose: bool) -> None:
    """Quiet: no Python warnings, no TensorFlow/absl log lines below ERROR. `--verbose` keeps them."""
    if verbose:
        return
    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

    absl_logging.set_verbosity(absl_logging.ERROR)


def check_no_arguments(argv) -> None:
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
