"""The package installs like a Python package: a wheel, installed in a fresh environment, brings its console
scripts and presets, and the smoke preset runs from a folder outside the repository, quietly.

The fresh environment gets the wheel without dependencies and sees the already-installed dependencies
through a `.pth` file (installing TensorFlow again would need minutes and the network); everything of
`tf_twostage` itself comes from the wheel, which the test checks.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} |WARNING|Warning|.*Warning: )")


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-4000:])
    return result


def test_wheel_installs_programs_and_presets_that_run_outside_the_repository(tmp_path):
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    skipped_anywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache")

    def skipped(folder, names):
        top = {".git", ".venv", "build", "runs"} if os.path.samefile(folder, ROOT) else set()
        return set(skipped_anywhere(folder, names)) | (top & set(names))

    shutil.copytree(ROOT, source, ignore=skipped)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(source)], cwd=tmp_path)
    (wheel,) = glob.glob(str(wheels / "tf_twostage-*.whl"))

    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # The dependencies of this interpreter, not the repository: a .pth file that names its site-packages.
    with open(os.path.join(site, "_dependencies.pth"), "w", encoding="utf-8") as file:
        file.write(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", wheel])

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    clean_env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    where = _run([str(python), "-c", "import tf_twostage, tf_twostage.presets as p; print(tf_twostage.__file__); "
                  "print(p.__file__)"], cwd=outside, env=clean_env).stdout.split()
    assert all(path.startswith(site) for path in where), where  # the wheel's copy, not the checkout

    run = _run([str(env_dir / "bin" / "tf-twostage-run"), "--config=smoke", "--workdir=run"], cwd=outside,
               env=clean_env)
    with open(outside / "run" / "results.json", encoding="utf-8") as file:
        assert json.load(file)["method"] == "ce"
    log = run.stdout + run.stderr
    assert [line for line in log.splitlines() if LOG_LINE.match(line)] == []  # quiet: no TF log, no warning
    assert len(log.encode()) < 50_000
    assert "test accuracy" in run.stdout

    refused = subprocess.run([str(env_dir / "bin" / "tf-twostage-evaluate"), "--workdir=run",
                              "--config=configs/nosuch.py"], cwd=outside, env=clean_env, capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith("error: --config=configs/nosuch.py: no such file")
