"""The programs' shared flag parsing and error path: presets by name, one line per mistake, exit codes."""

import os
import subprocess
import sys

import pytest

from tf_twostage.programs import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAMS = ("run_experiment", "train_stage1", "select_labels", "export", "evaluate", "predict", "report",
            "find_label_issues")


def test_a_preset_name_resolves_to_the_packaged_file():
    (argument,) = cli.resolve_config_argument(["--config=mnist5k"])
    assert argument.startswith("--config=") and argument.endswith(os.path.join("mnist5k.py"))
    assert os.path.isfile(argument.split("=", 1)[1])
    assert "smoke" in cli.list_presets() and "mnist5k" in cli.list_presets()
    assert "paper/mnist" in cli.list_presets()
    (argument,) = cli.resolve_config_argument(["--config=paper/mnist"])
    assert argument.endswith(os.path.join("paper", "mnist.py")) and os.path.isfile(argument.split("=", 1)[1])


def test_a_config_path_that_exists_is_kept_and_other_arguments_pass_through():
    path = os.path.join(ROOT, "configs", "smoke.py")
    assert cli.resolve_config_argument([f"--config={path}", "--workdir=x"]) == [f"--config={path}", "--workdir=x"]


@pytest.mark.parametrize("value, message", [
    ("nosuch", "--config=nosuch: no such file, and no preset of that name; presets: "),
    ("configs/nosuch.py", "--config=configs/nosuch.py: no such file"),
    ("", "--config is empty"),
])
def test_a_missing_config_is_one_clear_error(value, message):
    with pytest.raises(cli.UsageError) as error:
        cli.resolve_config_argument([f"--config={value}"])
    assert str(error.value).startswith(message)


def _exit_of(main, capsys):
    with pytest.raises(SystemExit) as stop:
        cli._guarded(main, ["program"])  # pylint: disable=protected-access
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize("error, code", [
    (ValueError("noise.rate must be in [0, 1], got 1.5"), 2),
    (FileNotFoundError(2, "No such file or directory", "/nowhere/x.json"), 2),
    (FloatingPointError("loss is NaN at epoch 3"), 3),
    (KeyboardInterrupt(), 130),
])
def test_known_errors_are_one_line_and_their_exit_code(error, code, capsys):
    def main(argv):
        raise error

    exit_code, stderr = _exit_of(main, capsys)
    assert exit_code == code
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: ")
    assert "Traceback" not in stderr
    if isinstance(error, FileNotFoundError):
        assert "/nowhere/x.json" in stderr


def test_an_unexpected_error_is_one_line_naming_the_file_with_the_traceback(capsys):
    def main(argv):
        raise RuntimeError("something broke")

    exit_code, stderr = _exit_of(main, capsys)
    assert exit_code == 1
    assert stderr.startswith("error: unexpected RuntimeError: something broke (full traceback: ")
    path = stderr.strip().rsplit(" ", 1)[1].rstrip(")")
    with open(path, encoding="utf-8") as file:
        assert "raise RuntimeError" in file.read()
    os.remove(path)


def test_a_normal_main_returns_its_code():
    assert cli._guarded(lambda argv: 0, ["program"]) == 0  # pylint: disable=protected-access


def test_every_program_refuses_an_unknown_config_key_in_one_line():
    """Each program in bin/, started together (their imports overlap): exit 2, one line naming the key."""
    started = {
        name: subprocess.Popen([sys.executable, os.path.join(ROOT, "bin", f"{name}.py"), "--config=smoke",
                                "--workdir=/nonexistent", "--config.noise.ratee=0.2"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in PROGRAMS
    }
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, (name, stderr)
        assert stderr.splitlines() == [
            "error: unknown config key 'noise.ratee' in '--config.noise.ratee=0.2'; noise has the keys "
            + stderr.split("noise has the keys ", 1)[1].strip()], (name, stderr)
        assert stdout == ""
