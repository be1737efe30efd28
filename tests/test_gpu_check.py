"""benchmarks/gpu_check.sh --dry_run on the CPU: every part runs (speed rows, scale streams, model feed)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_dry_run_writes_every_part(tmp_path):
    output = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--dry_run",
                           f"--output={output}"], capture_output=True, text=True, env=env, check=False, timeout=900)

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["dry_run"] and report["all_passed"]
    speed = report["parts"]["speed_resnet14"]["result"]["mlp"]
    assert speed["dtype_policy"] == "float32" and not speed["jit_compile"]
    mixed = speed["rows"]["cpu:mixed_float16:jit"]
    assert mixed["dtype_policy"] == "mixed_float16" and mixed["jit_compile"]
    assert all(value > 0 for value in mixed["examples_per_second"].values())
    scale = report["parts"]["scale"]["result"]
    streams = scale["sizes"]["300"]["streams"]
    assert set(streams) == {"bare", "stage1", "stage2_1", "stage2_2"}
    assert all(s["images_per_second"] > 0 for s in streams.values())
    assert scale["ensemble"]["buffer_bytes"] == 2 * 1000 * 14 * 4
    assert scale["feed_model"]["model"] == "resnet14" and scale["feed_model"]["device"] == "CPU"


def test_gpu_check_refuses_an_unknown_argument(tmp_path):
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--fast"],
                          capture_output=True, text=True, check=False, env=dict(os.environ, PYTHON=sys.executable))

    assert done.returncode == 2
    assert "unknown argument '--fast'; allowed: --dry_run, --output=FILE, --tree=DIR" in done.stderr
