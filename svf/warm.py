"""Warm start for many short `svf` jobs on one machine (the CPU demo): a server imports torch and the engine once
and forks a child per command, so each Snakemake job skips the ~1.5 s interpreter + torch start-up.

* The server (``python -m svf.warm SOCKET PARENT_PID``) is started by the Snakefile's ``onstart`` when the config
  says ``warm_start: true`` and is stopped by ``onsuccess``/``onerror``; it also exits when the Snakemake process
  that started it is gone.
* The client is ``svf`` itself: with ``SVF_WARM_SOCKET`` set it sends its arguments, working directory,
  environment and its stdin/stdout/stderr descriptors to the server and exits with the child's exit code. When the
  server cannot be reached it runs the command in-process as usual, so the server is never required.
* A child dies with its client (the server kills it when the client's connection closes, e.g. after SIGKILL) and
  with the server (PR_SET_PDEATHSIG), so no orphan keeps training after its job was killed.

The server never runs torch operations itself: forking after torch has started its thread pools is not safe.
Snakemake's benchmark files then measure the light client: wall time is right, CPU time and memory are not.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

ENV_SOCKET = "SVF_WARM_SOCKET"
ENV_CHILD = "SVF_WARM_CHILD"
_HEADER = struct.Struct("!I")
_PR_SET_PDEATHSIG = 1


# --- client -------------------------------------------------------------------------------------------------------


def run_remote(path: str, argv: list[str]) -> int | None:
    """Run ``svf argv`` in a child of the warm server; ``None`` when no server answers (run locally then)."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    except OSError:
        return None
    with sock:
        payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(sock, [_HEADER.pack(len(payload)) + payload], [0, 1, 2])
        reply = b""
        while True:
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
    if not reply:
        print("svf: the warm server closed the connection before the command finished", file=sys.stderr)
        return 1
    return int(reply.decode())


# --- server -------------------------------------------------------------------------------------------------------


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    (size,) = _HEADER.unpack(data[:_HEADER.size])
    body = data[_HEADER.size:]
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            raise ConnectionError("client went away while sending its request")
        body += more
    return json.loads(body), fds


def _child(request: dict, fds: list[int], listener: socket.socket, conn: socket.socket,
           others: list[socket.socket]) -> None:
    """In the forked child: become the command (never returns)."""
    code = 1
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        listener.close()
        conn.close()
        # The connections of the other running commands: a copy left open here would keep their clients waiting
        # for end-of-file, i.e. for this command too, which serialised the jobs.
        for other in others:
            other.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin, sys.stdout, sys.stderr = (os.fdopen(0, "r", closefd=False), os.fdopen(1, "w", closefd=False),
                                             os.fdopen(2, "w", closefd=False))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[ENV_CHILD] = "1"
        from .cli import main

        code = main(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - report anything, like the interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(int(code or 0))


def _supervise(conn: socket.socket, pid: int, active: set, lock: threading.Lock) -> None:
    """Reply with the child's exit code; kill the child if the client disappears first."""
    try:
        _wait_and_reply(conn, pid)
    finally:
        with lock:
            active.discard(conn)
        conn.close()


def _wait_and_reply(conn: socket.socket, pid: int) -> None:
    """Reply with the child's exit code once it exits; kill it if the client disappears first."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            try:
                conn.sendall(str(code if code >= 0 else 128 - code).encode())
            except OSError:
                pass
            return
        readable, _, _ = select.select([conn], [], [], 0.2)
        if readable and not conn.recv(1):  # EOF: the client (the Snakemake job) was killed
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return


def serve(path: str, parent_pid: int) -> None:
    # Import what the commands need once, here; the children inherit it. torch._dynamo is what the first
    # optimizer construction imports lazily (~1.8 s); pandas/matplotlib serve collect, tables and figures.
    import PIL.JpegImagePlugin  # noqa: F401
    import PIL.PngImagePlugin  # noqa: F401
    import cv2  # noqa: F401 - the loaders decode and transform with OpenCV
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401

    from . import cli  # noqa: F401
    from .engine.tasks import base_learner, evaluate, pretrain, probe, train  # noqa: F401
    from .report import collect, figure4, figures, study, tables  # noqa: F401

    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(1.0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    active: set[socket.socket] = set()  # connections of running commands (closed in every new child)
    lock = threading.Lock()
    try:
        while not stop.is_set():
            if os.getppid() != parent_pid:
                break  # Snakemake is gone (reparented the moment it exits, even before its own parent reaps it)
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            try:
                request, fds = _receive(conn)
            except Exception:  # noqa: BLE001 - a probe or a broken client: drop it
                conn.close()
                continue
            with lock:
                others = list(active)
                active.add(conn)
                pid = os.fork()
            if pid == 0:
                _child(request, fds, listener, conn, others)
            for fd in fds:
                os.close(fd)
            threading.Thread(target=_supervise, args=(conn, pid, active, lock), daemon=True).start()
    finally:
        listener.close()
        if os.path.exists(path):
            os.unlink(path)


def start(path: str) -> int:
    """Start a server for the calling process (Snakemake) in the background; return its pid once it listens."""
    import subprocess

    process = subprocess.Popen([sys.executable, "-m", "svf.warm", path, str(os.getpid())],
                               stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            probe.close()
            return process.pid
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    return process.pid  # not listening (yet): clients fall back to running locally


def stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
