"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train the smoke preset in sync."""

import json
import os
import socket
import subprocess
import sys

from tests.conftest import ROOT

TIMEOUT_SECONDS = 600


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_run_both_stages_in_sync_and_only_the_chief_writes_the_workdir(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for task in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": task}}))
        log = open(tmp_path / f"worker{task}.log", "w")
        workers.append((subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), "--config=configs/smoke.py",
             f"--workdir={tmp_path / 'run'}", "--config.distribution.strategy=multi_worker",
             "--config.method=two_stage", "--config.stage2.algorithm=temporal_ensembling"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        for process, _ in workers:
            process.wait(timeout=TIMEOUT_SECONDS)
    finally:
        for process, log in workers:
            if process.poll() is None:
                process.kill()
            log.close()
    for task, (process, _) in enumerate(workers):
        assert process.returncode == 0, (tmp_path / f"worker{task}.log").read_text()[-3000:]
    chief = json.loads((tmp_path / "run" / "results.json").read_text())
    other = json.loads((tmp_path / "run" / "workers" / "worker_1" / "results.json").read_text())
    assert chief["num_replicas"] == 2
    assert chief["stage1"]["kept_fraction"] == other["stage1"]["kept_fraction"]
    assert chief["test_accuracy"] == other["test_accuracy"]  # same weights on both workers
