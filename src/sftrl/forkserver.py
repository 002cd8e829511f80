"""Jobs that start warm: one process imports torch, transformers and TRL once and forks a child per job.

Starting Python and importing torch and transformers costs seconds a process on a laptop CPU, as long as
many of the default study's jobs compute. On a local run the workflow starts this server (`onstart`), and
each job's command is `python -m sftrl.forkserver run --socket S -- SCRIPT ARGS`: a client that hands the
job's argv, environment, working directory and standard streams (the file descriptors themselves, so the
job writes its own log) to the server, which forks a child that runs the script as `python SCRIPT ARGS`
would and sends back how it ended. A job keeps its own outputs, log and exit status; Snakemake's kill of
a failed or interrupted job reaches the child (the client forwards its signals, and the server kills the
child of a client that is gone).

Where no server answers (a SLURM job, `forkserver: false`, the server still importing), the client
replaces itself with `python SCRIPT ARGS`: the server only ever saves time.

The server imports third-party packages only (PRELOAD); the workflow's own modules are imported by each
child, so a job runs the code on disk. It forks single-threaded, before any parallel region or CUDA call,
and each child sets its thread pools from its own environment (Snakemake's OMP_NUM_THREADS for the job).
This module imports nothing outside the standard library at the top: the client must start in
milliseconds.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import json
import os
import runpy
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

# What the workflow's scripts import that is slow to import; a module missing here costs time, never a result.
PRELOAD = (
    "numpy",
    "scipy.linalg",
    "scipy.stats",
    "pandas",
    "matplotlib",
    "torch",
    "safetensors.torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "accelerate",
    "trl",
    "threadpoolctl",
)
# Thread pools a library sizes when it is imported: one thread in the server, the job's own in each child.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
MAX_HEADER = 1 << 20
SERVE = [sys.executable, "-m", "sftrl.forkserver", "serve"]
POLL_SECONDS = 0.5  # how soon the server sees that the run that started it is gone
WAKE = "wake"


@dataclass
class Job:
    """What a child runs: `python SCRIPT ARGS` or `python -m MODULE ARGS`, in `cwd` with `env`."""

    argv: list[str]  # [script, *args] or ["-m", module, *args]
    cwd: str
    env: dict[str, str]


# ---------------------------------------------------------------------------------------------- client


def run(socket_path: str, argv: list[str]) -> int:
    """Run `python *argv` in a child of the server at `socket_path`, or in this process where none answers."""
    alone = [sys.executable, *argv]
    if argv[0].startswith("-") and argv[0] != "-m":  # a server runs scripts and modules, not `-c` and the like
        os.execv(alone[0], alone)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(socket_path)
    except OSError:
        client.close()
        os.execv(alone[0], alone)
    try:
        _send(client, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}, fds=[0, 1, 2])
        reader = client.makefile("rb")
        pid = int(_receive(reader)["pid"])
    except (OSError, ValueError, KeyError) as error:  # the job may have started: running it again could race it
        print(f"sftrl.forkserver: the server did not take the job ({error})", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: _kill_group(pid, number))
    try:
        status = int(_receive(reader)["status"])
    except (OSError, ValueError, KeyError):
        print(f"sftrl.forkserver: the server went away while the job ran (child {pid})", file=sys.stderr)
        return 1
    if status < 0:  # killed by a signal: end the same way, as the shell would report it
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        return 128 - status
    return status


# ---------------------------------------------------------------------------------------------- server


@dataclass
class Server:
    """A server for one workflow run: `start` it when jobs are about to run (it exits when the starting
    process does), `stop` it at the end; `python` is the command a job starts its script with."""

    socket: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def python(self) -> str:
        return f"python -m sftrl.forkserver run --socket {shlex.quote(str(self.socket))} --"

    def start(self, env: Mapping[str, str]) -> None:
        """Start the server and return at once: jobs that start before it listens run on their own."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [*SERVE, "--socket", str(self.socket), "--parent", str(os.getpid())],
                env={**env, **dict.fromkeys(THREAD_VARIABLES, "1")},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_listening(self, timeout: float) -> None:
        """Return once the server accepts jobs (it imports for seconds first); TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(self.socket))
                    return
                except OSError:
                    pass
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the fork server ended before it listened (see {self.log})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fork server listening at {self.socket} after {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to end (SIGTERM) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
            return
        self.process.kill()
        self.process.wait()


def serve(socket_path: str, parent: int | None) -> Job | None:
    """Accept jobs until told to stop or until `parent` is gone; returns None in the server and the job in
    each forked child (so the child leaves every server frame before it runs anything)."""
    started = time.perf_counter()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _log(f"imported {len(PRELOAD)} packages in {time.perf_counter() - started:.1f}s; pid {os.getpid()}")
    Path(socket_path).unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    # A child's end wakes the loop at once (a byte on `wake`), so its client hears of it without a poll's delay.
    wake, woken = socket.socketpair()
    for end in (wake, woken):
        end.setblocking(False)
    signal.set_wakeup_fd(woken.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake, selectors.EVENT_READ, WAKE)
    children: dict[int, socket.socket] = {}  # child pid -> its client's connection
    while not stopping and (parent is None or _alive(parent)):
        for key, _ in selector.select(POLL_SECONDS):
            if key.fileobj is listener:
                connection, _ = listener.accept()
                forked = _fork(connection)
                if forked is None:
                    continue
                pid, job = forked
                if job is not None:  # the child: nothing of the server's stays with it
                    signal.set_wakeup_fd(-1)
                    for sig in (signal.SIGTERM, signal.SIGCHLD):
                        signal.signal(sig, signal.SIG_DFL)
                    selector.close()
                    for end in (listener, wake, woken, *children.values()):
                        end.close()
                    return job
                children[pid] = connection
                selector.register(connection, selectors.EVENT_READ, pid)
            elif key.data is WAKE:
                with contextlib.suppress(BlockingIOError):
                    while wake.recv(4096):
                        pass
            else:  # a client spoke or hung up while its job runs: it is gone, and so is its job
                pid = key.data
                if not _peek(key.fileobj):
                    _log(f"the client of child {pid} is gone: killing the child")
                    _kill_group(pid, signal.SIGKILL)
        _reap(children, selector)
    for pid in children:
        _kill_group(pid, signal.SIGTERM)
    signal.set_wakeup_fd(-1)
    selector.close()
    for end in (listener, wake, woken):
        end.close()
    Path(socket_path).unlink(missing_ok=True)
    _log("stopped")
    return None


def _fork(connection: socket.socket) -> tuple[int, Job | None] | None:
    """Read one request and fork its child: (pid, None) in the server, (0, job) in the child; None for a
    request that cannot be read."""
    try:
        connection.settimeout(10)
        reader = connection.makefile("rb")
        request, fds = _receive_with_fds(connection, reader)
        job = Job(argv=list(request["argv"]), cwd=str(request["cwd"]), env=dict(request["env"]))
        if len(fds) != 3 or not job.argv:
            raise ValueError(f"a request needs argv and 3 streams, got {len(fds)} streams")
    except (OSError, ValueError, KeyError, TypeError) as error:
        _log(f"refused a request: {error}")
        connection.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        connection.close()
        os.setpgid(0, 0)  # the job and anything it starts: one group to kill
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        return 0, job
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    try:
        connection.settimeout(None)
        _send(connection, {"pid": pid})
    except OSError:
        _kill_group(pid, signal.SIGKILL)
    _log(f"child {pid}: {' '.join(job.argv[:2])}")
    return pid, None


def _reap(children: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    """Send each ended child's status to its client (its exit code, or minus the signal that killed it)."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = children.pop(pid, None)
        if connection is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            _send(connection, {"status": code})
        selector.unregister(connection)
        connection.close()


def run_job(job: Job) -> None:
    """In the child: become `python SCRIPT ARGS` in the job's directory and environment, then run it (its
    exit and any exception end this process as they would end a fresh one)."""
    os.chdir(job.cwd)
    os.environ.clear()
    os.environ.update(job.env)
    _set_threads(job.env)
    if job.argv[0] == "-m":
        sys.argv = [job.argv[1], *job.argv[2:]]
        sys.path[0] = job.cwd
        runpy.run_module(job.argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(job.argv)
        sys.path[0] = os.path.dirname(os.path.abspath(job.argv[0]))
        runpy.run_path(job.argv[0], run_name="__main__")


def _set_threads(env: dict[str, str]) -> None:
    """The job's thread pools as a fresh process would size them: OMP_NUM_THREADS (Snakemake sets it to
    the job's threads), else every core this process may use."""
    try:
        threads = max(1, int(env.get("OMP_NUM_THREADS", "")))
    except ValueError:
        threads = len(os.sched_getaffinity(0))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if threads != 1:  # the server's BLAS pools have one thread; resizing them costs a tenth of a second at exit
        import threadpoolctl

        threadpoolctl.threadpool_limits(threads)


# -------------------------------------------------------------------------------------------- protocol


def _send(connection: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(connection, [data[:1]], fds)
        data = data[1:]
    connection.sendall(data)


def _receive(reader) -> dict:
    line = reader.readline(MAX_HEADER)
    if not line.endswith(b"\n"):
        raise ValueError("the connection closed before a whole message")
    return json.loads(line)


def _receive_with_fds(connection: socket.socket, reader) -> tuple[dict, list[int]]:
    first, fds, _, _ = socket.recv_fds(connection, 1, 3)
    line = first + reader.readline(MAX_HEADER)
    if not line.endswith(b"\n"):
        for fd in fds:
            os.close(fd)
        raise ValueError("the connection closed before a whole request")
    return json.loads(line), list(fds)


def _peek(connection) -> bool:
    """False once the peer has hung up."""
    try:
        return bool(connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True
    except OSError:
        return False


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log(message: str) -> None:
    print(f"[forkserver] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sftrl.forkserver", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="import the heavy packages once and fork a child per job")
    serve_parser.add_argument("--socket", required=True)
    serve_parser.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    run_parser = commands.add_parser("run", help="run `python ARGS` through the server (or alone if none)")
    run_parser.add_argument("--socket", required=True)
    run_parser.add_argument("args", nargs=argparse.REMAINDER, help="-- SCRIPT ARGS, or -- -m MODULE ARGS")
    options = parser.parse_args(argv)
    if options.command == "run":
        args = options.args[1:] if options.args[:1] == ["--"] else options.args
        if not args:
            parser.error("run: nothing to run")
        return run(options.socket, args)
    job = serve(options.socket, options.parent)
    if job is None:
        return 0
    try:
        run_job(job)
    except SystemExit as stop:
        _exit(_exit_code(stop.code))
    except KeyboardInterrupt:  # as the interpreter ends: by the signal
        _exit(-signal.SIGINT)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        _exit(1)
    _exit(0)
    return 0  # not reached


def _exit_code(code: object) -> int:
    """What `sys.exit(code)` ends a process with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> NoReturn:
    """End a child as the interpreter ends a process (the job's threads joined, atexit handlers run, streams
    flushed) but without tearing down the modules the server imported, which takes seconds and matters to
    no one: the process is gone. A negative code is the signal to end by."""
    getattr(threading, "_shutdown")()  # noqa: B009 - the interpreter's own join of non-daemon threads at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    sys.exit(main())
