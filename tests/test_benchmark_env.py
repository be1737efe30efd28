"""Benchmarks start programs with this checkout's package first, whatever else is on the path."""

import importlib.util
import os
import subprocess
import sys

from tests.conftest import ROOT


def _child_env_module():
    spec = importlib.util.spec_from_file_location("child_env", os.path.join(ROOT, "benchmarks", "child_env.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_started_program_imports_this_checkouts_package_not_another_on_the_path(tmp_path):
    other = tmp_path / "other_checkout" / "tf_twostage"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    base = dict(os.environ, PYTHONPATH=str(other.parent))
    probe = [sys.executable, "-c", "import tf_twostage, os; print(os.path.dirname(tf_twostage.__file__))"]
    assert subprocess.run(probe, env=base, cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout.strip() == str(other)  # what a plain start would import
    env = _child_env_module().child_env(base, TF_CPP_MIN_LOG_LEVEL="3")
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert env["PYTHONPATH"].split(os.pathsep) == [ROOT, str(other.parent)]
    imported = subprocess.run(probe, env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert imported.strip() == os.path.join(ROOT, "tf_twostage")
