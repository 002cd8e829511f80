"""sftrl.forkserver: a job run through the server behaves as `python SCRIPT ARGS` run alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sftrl.forkserver import SERVE, Server

SCRIPT = textwrap.dedent(
    """
    import os, sys
    print("argv", sys.argv[1:])
    print("cwd", os.getcwd())
    print("var", os.environ.get("SFTRL_TEST_VAR"))
    print("main", __name__)
    print("to stderr", file=sys.stderr)
    open("written.txt", "w").write("done")
    sys.exit(int(sys.argv[1]))
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped) counts as gone
    status = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    return status != "Z"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    where = tmp_path_factory.mktemp("forkserver")
    started = Server(where / "server.sock", where / "server.log")
    started.start(dict(os.environ))
    started.wait_listening(timeout=120)
    yield started
    started.stop()
    assert started.process is not None and started.process.returncode is not None
    assert not started.socket.exists(), "a stopped server removes its socket"


def _run(server_socket: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sftrl.forkserver", "run", "--socket", str(server_socket), "--", *args]
    return subprocess.run(
        command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_job_sees_what_python_alone_would(server, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    alone_dir, served_dir = tmp_path / "alone", tmp_path / "served"
    alone_dir.mkdir()
    served_dir.mkdir()
    alone = subprocess.run(
        [sys.executable, str(script), "3", "x y"],
        cwd=alone_dir,
        env={**os.environ, "SFTRL_TEST_VAR": "v"},
        capture_output=True,
        text=True,
        check=False,
    )
    served = _run(server.socket, [str(script), "3", "x y"], served_dir, SFTRL_TEST_VAR="v")
    assert served.returncode == alone.returncode == 3
    assert served.stdout.replace(str(served_dir), "DIR") == alone.stdout.replace(str(alone_dir), "DIR")
    assert "main __main__" in served.stdout and "argv ['3', 'x y']" in served.stdout
    assert served.stderr == alone.stderr == "to stderr\n"
    assert (served_dir / "written.txt").read_text() == "done"
    assert "child" in server.log.read_text(), "the job ran in a child of the server, not alone"


def test_an_exception_ends_the_job_as_it_would_end_python(server, tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("raise ValueError('a bad input')\n")
    served = _run(server.socket, [str(script)], tmp_path)
    assert served.returncode == 1
    assert "ValueError: a bad input" in served.stderr


def test_a_module_runs_as_python_m_would(server, tmp_path):
    served = _run(server.socket, ["-m", "json.tool", "--compact"], tmp_path)
    assert served.returncode == 1  # json.tool reads stdin: empty here, which it refuses
    listed = _run(server.socket, ["-m", "sftrl.forkserver", "--help"], tmp_path)
    assert listed.returncode == 0 and "usage: python -m sftrl.forkserver" in listed.stdout


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_job_gets_the_threads_its_environment_gives(server, tmp_path, threads):
    script = tmp_path / "threads.py"
    script.write_text(
        "import torch, threadpoolctl\n"
        "print(torch.get_num_threads(), {i['num_threads'] for i in threadpoolctl.threadpool_info()})\n"
    )
    served = _run(server.socket, [str(script)], tmp_path, OMP_NUM_THREADS=threads)
    assert served.returncode == 0, served.stderr
    assert served.stdout.split(maxsplit=1) == [threads, "{" + threads + "}\n"]


def test_without_a_server_the_job_runs_alone(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    alone = _run(tmp_path / "no-such.sock", [str(script), "4"], tmp_path, SFTRL_TEST_VAR="w")
    assert alone.returncode == 4 and "var w" in alone.stdout


def _start_sleeper(server_socket: Path, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    script = tmp_path / "sleeps.py"
    script.write_text("import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(300)\n")
    client = subprocess.Popen(
        [sys.executable, "-m", "sftrl.forkserver", "run", "--socket", str(server_socket), "--", str(script)],
        cwd=tmp_path,
    )
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    return client, int(pid_file.read_text())


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_signal_to_the_job_reaches_its_child(server, tmp_path):
    client, child = _start_sleeper(server.socket, tmp_path)
    assert child != client.pid
    client.send_signal(signal.SIGTERM)
    assert client.wait(30) == -signal.SIGTERM, "the client ends by the signal that ended its job"
    assert _gone(child)


def test_a_killed_client_takes_its_job_with_it(server, tmp_path):
    client, child = _start_sleeper(server.socket, tmp_path)
    client.kill()
    client.wait(30)
    assert _gone(child), "the server kills the job of a client that is gone"


def test_jobs_run_side_by_side(server, tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import sys, time\nstart = time.time()\ntime.sleep(1)\nprint(sys.argv[1], start, time.time())\n")
    command = [sys.executable, "-m", "sftrl.forkserver", "run", "--socket", str(server.socket), "--", str(script)]
    clients = [subprocess.Popen([*command, str(i)], cwd=tmp_path, stdout=subprocess.PIPE, text=True) for i in range(3)]
    spans = [c.communicate(timeout=60)[0].split() for c in clients]
    assert [span[0] for span in spans] == ["0", "1", "2"]
    starts, ends = [float(span[1]) for span in spans], [float(span[2]) for span in spans]
    assert max(starts) < min(ends), "each job waited for another to end"


def test_the_server_ends_with_the_process_that_started_it(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    server = subprocess.Popen(
        [*SERVE, "--socket", str(tmp_path / "s.sock"), "--parent", str(owner.pid)],
        stdout=subprocess.DEVNULL,
    )
    Server(tmp_path / "s.sock", tmp_path / "unused.log").wait_listening(timeout=120)
    owner.kill()
    owner.wait()
    assert server.wait(30) == 0
    assert not (tmp_path / "s.sock").exists()
