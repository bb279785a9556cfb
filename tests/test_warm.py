"""The warm-start server (svf/warm.py): commands run in forked children, concurrently, each client returning as
soon as its own command ends."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from svf import warm


@pytest.fixture()
def server(tmp_path):
    path = str(tmp_path / "socket")
    pid = warm.start(path)
    yield path
    warm.stop(pid)


def _client(server, *argv, cwd):
    env = {**os.environ, warm.ENV_SOCKET: server}
    env.pop(warm.ENV_CHILD, None)
    return subprocess.Popen([sys.executable, "-m", "svf", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_client_returns_when_its_command_ends_not_when_a_later_one_does(server, tmp_path):
    # A short command, then a long one started while it runs: the long one's child must not hold the short one's
    # connection open (it did: every job then waited for the next, and the demo ran one job at a time).
    short = _client(server, "synth", "pascal", "--out", "a", "--train-per-class", "1", "--val-per-class", "1",
                    cwd=tmp_path)
    time.sleep(0.3)
    started = time.monotonic()
    long = _client(server, "synth", "coco", "--out", "b", "--train-per-class", "6", "--val-per-class", "4",
                   cwd=tmp_path)
    short.wait(timeout=120)
    short_done = time.monotonic() - started
    long.wait(timeout=300)
    long_done = time.monotonic() - started
    assert short.returncode == 0 and long.returncode == 0, short.stderr.read() + long.stderr.read()
    assert (tmp_path / "a" / "synth.json").is_file() and (tmp_path / "b" / "synth.json").is_file()
    assert short_done < long_done / 2, (short_done, long_done)


def test_the_exit_code_and_output_come_back(server, tmp_path):
    ok = _client(server, "--version", cwd=tmp_path)
    out, _ = ok.communicate(timeout=60)
    assert ok.returncode == 0 and "svf" in out
    bad = _client(server, "evaluate", "--spec", "{}", cwd=tmp_path)
    _, err = bad.communicate(timeout=60)
    assert bad.returncode != 0 and err


def test_without_a_server_the_command_runs_in_process(tmp_path):
    client = _client(str(tmp_path / "no-socket"), "--version", cwd=tmp_path)
    out, _ = client.communicate(timeout=60)
    assert client.returncode == 0 and "svf" in out


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status)
    except FileNotFoundError:
        return False


def test_the_server_stops_when_snakemake_dies_without_stopping_it(tmp_path):
    # A Snakemake that crashes past its onerror handler leaves the server behind; while the crashed process is not
    # yet reaped (a zombie: its parent is busy reading the server's inherited pipes) it still "exists" for kill(0).
    code = (f"import os; from svf import warm; print(warm.start({str(tmp_path / 'socket')!r}), flush=True); "
            "os._exit(1)")
    crashed = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server_pid = int(crashed.stdout.readline())
    deadline = time.time() + 30
    while _running(server_pid) and time.time() < deadline:
        time.sleep(0.2)
    running = _running(server_pid)
    crashed.wait()
    if running:
        warm.stop(server_pid)
    assert not running, "the warm server outlived the Snakemake that started it"
