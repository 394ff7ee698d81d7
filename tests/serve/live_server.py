"""Starting and stopping a sluice_serve process for the Python tests of the server (serve_integration.py,
replay_test.py, oip_tritonclient_test.py): the server listens on an ephemeral port of 127.0.0.1, says
"listening on http://127.0.0.1:PORT/" as its first line, loads its models, then answers
GET /health/ready with 200. Every wait is bounded; every process started is killed at exit."""
import atexit
import http.client
import re
import signal
import subprocess
import threading
import time

HOST = "127.0.0.1"  # loopback only, always
_processes = []


def spawn(cmd, log, env=None, start_timeout=180):
    """Starts `cmd` (stderr to the file `log`) and returns (process, port) once it listens."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    _processes.append(proc)
    line = [""]
    reader = threading.Thread(target=lambda: line.__setitem__(0, proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(start_timeout)  # loading takes a moment on a busy machine
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line[0] or "")
    if not m:
        kill(proc)
        raise RuntimeError("server did not start: %r (see %s)" % (line[0], getattr(log, "name", "its log")))
    return proc, int(m.group(1))


def status_of(port, path, timeout=10):
    """The status of GET `path`, 0 when there is no HTTP answer."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        c.request("GET", path)
        status = c.getresponse().status
        c.close()
        return status
    except OSError:
        return 0


def wait_ready(proc, port, path="/health/ready", timeout=180):
    """Waits (bounded) until GET `path` answers 200; raises if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while status_of(port, path) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            kill(proc)
            raise RuntimeError("server never became ready")
        time.sleep(0.05)


def stop(proc, timeout=60):
    """SIGTERM, then the exit code (None if it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
            return None
    return proc.returncode


def kill(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@atexit.register
def kill_all():
    for p in _processes:
        kill(p)
