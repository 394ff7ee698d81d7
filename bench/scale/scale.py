#!/usr/bin/python3
"""sluice_serve as N replicas behind HAProxy: throughput with 1, 2, 3 replicas, and a fault run.

Starts N sluice_serve replicas on loopback ports (each `--backend-threads 1`, the demo model) and
HAProxy in front of them with a configuration this script writes (haproxy.cfg in --work; docs/deploy.md
explains every line). The load is bench/serve/load.py's: closed-loop clients, each with its own
keep-alive connection, posting one image of examples/data/samples per request to /api/v1/segment and
checking every answer (200 and the image's own size).

Throughput (--replicas 1,2,3): images/s and p50/p99 latency through HAProxy at --clients clients,
and the CPU each part used in the measured window (replicas, HAProxy, this load generator, the rest
of the machine), read from /proc -- on a machine with few cores that is what explains the scaling.

Fault run (--fault): under the same closed-loop load, one replica is killed with SIGKILL, then
started again on its port. Reported: failed client requests (the goal is zero: HAProxy retries a
request whose replica died before answering on another replica), the restarted replica's warm-up
time (start to /v2/health/ready = 200) and the time until it takes traffic again (start to HAProxy
marking it UP, and to its first answered image, from its own /metrics).

    bench/scale/scale.py --server build/release/examples/serve/sluice_serve \
        [--replicas 1,2,3] [--clients 32] [--seconds 15] [--fault] [--json out.json]
    bench/scale/scale.py --server ... --replicas '' --fault --quick   # the ctest variant

Exit status: 1 when a client request failed or the restarted replica never answered again.
Needs haproxy (Debian package; installed by tools/install-deps.sh).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "serve"))
import load  # noqa: E402  (run_point: the closed-loop clients; multipart bodies)

HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=5.0):
    """(status, body) of GET path, or (None, b"") when nothing answers."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError:
        return None, b""


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads), or 0 once it is gone."""
    try:
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError):
        return 0.0


def machine_busy_seconds():
    """CPU seconds every core of the machine spent busy (not idle, not iowait), from /proc/stat."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICKS


class Replica:
    """One sluice_serve on a fixed loopback port (a restart must come back where HAProxy looks)."""

    def __init__(self, args, index, port):
        self.args, self.index, self.port, self.proc = args, index, port, None
        self.name = "r%d" % index

    def start(self):
        cmd = [self.args.server, "--model", "demo=" + self.args.model, "--address", HOST, "--port", str(self.port),
               "--backend-threads", "1", "--max-batch-size", str(self.args.max_batch_size),
               "--max-connections", "1024", "--max-connections-per-peer", "1024",
               "--max-queue-size", "4096"] + self.args.server_flags.split()
        log = open(os.path.join(self.args.work, "%s.log" % self.name), "a")
        env = dict(os.environ, SLUICE_CPU_SPIN_US="0")  # idle threads sleep: the cores are shared
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)

    def wait_ready(self, timeout):
        """Seconds from start() to /v2/health/ready answering 200."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s, see its log in %s" % (self.name, self.proc.returncode,
                                                                             self.args.work))
            if http_get(self.port, "/v2/health/ready", 1.0)[0] == 200:
                return time.monotonic() - self.started_at
            time.sleep(0.02)
        raise RuntimeError("%s not ready after %.0f s" % (self.name, timeout))

    def images_ok(self):
        """Images this process answered with success (its own counter: a restart starts at 0)."""
        status, body = http_get(self.port, "/metrics", 2.0)
        if status != 200:
            return None
        m = re.search(rb'^sluice_http_images_total\{model="demo",outcome="ok"\} (\d+)$', body, re.M)
        return int(m.group(1)) if m else 0

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


HAPROXY_CFG = """\
# Written by bench/scale/scale.py; docs/deploy.md explains it line by line.
global
    maxconn 1024
    # Requests are retried from a copy HAProxy keeps: the whole upload must fit in one buffer.
    tune.bufsize {bufsize}
    stats socket {stats_socket} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout queue 30s
    timeout http-keep-alive 10s
    timeout check 1s
    # Inference is idempotent: a request whose replica refused the connection, closed it without
    # an answer, did not answer in time or answered 503 (queue full, shutting down) goes again,
    # to another replica (redispatch on every retry).
    retries 3
    retry-on conn-failure empty-response response-timeout 503
    option redispatch 1
    option http-buffer-request

frontend sluice_in
    bind {host}:{port}
    default_backend sluice_replicas

backend sluice_replicas
    # Least outstanding requests: a replica busy with a big batch gets the next request last.
    balance leastconn
    option httpchk GET /v2/health/ready
    http-check expect status 200
    # Checks every 500 ms (200 ms while a replica changes state); down after 2 failures, up after 1
    # success -- a restarted replica takes traffic as soon as it is warm.
    default-server check inter 500ms fastinter 200ms downinter 500ms fall 2 rise 1
{servers}
"""


class HAProxy:
    def __init__(self, args, replicas):
        self.port = free_port()
        own = tempfile.mkdtemp(prefix="haproxy-", dir=args.work)  # a stale run's socket is never ours
        self.socket_path = os.path.join(own, "stats.sock")
        self.cfg_path = os.path.join(args.work, "haproxy.cfg")
        servers = "\n".join("    server %s %s:%d" % (r.name, HOST, r.port) for r in replicas)
        with open(self.cfg_path, "w") as f:
            f.write(HAPROXY_CFG.format(bufsize=args.haproxy_bufsize, stats_socket=self.socket_path, host=HOST,
                                       port=self.port, servers=servers))
        subprocess.run([args.haproxy, "-c", "-q", "-f", self.cfg_path], check=True)
        log = open(os.path.join(args.work, "haproxy.log"), "a")
        self.proc = subprocess.Popen([args.haproxy, "-db", "-f", self.cfg_path], stdout=log, stderr=log)

    def stats(self):
        """Per server: {"status": "UP"|"DOWN"|..., "answered_2xx": n} from the stats socket."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(self.socket_path)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        lines = data.decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "sluice_replicas" and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = {"status": row["status"], "answered_2xx": int(row["hrsp_2xx"] or 0),
                                      "retries": int(row["wretr"] or 0), "redispatches": int(row["wredis"] or 0)}
        return out

    def wait_all_up(self, names, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited with %s, see haproxy.log" % self.proc.returncode)
            st = self.stats() if os.path.exists(self.socket_path) else {}
            if all(st.get(n, {}).get("status") == "UP" for n in names):
                return
            time.sleep(0.05)
        raise RuntimeError("HAProxy did not mark every replica UP: %s" % self.stats())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def png_size(data):
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def sample_images():
    d = os.path.join(ROOT, "examples", "data", "samples")
    out = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".png"):
            data = open(os.path.join(d, name), "rb").read()
            out.append((png_size(data), data))
    if not out:
        raise RuntimeError("no images in " + d)
    return out


class Cluster:
    """N replicas and HAProxy in front; stopped in `with`'s exit whatever happened."""

    def __init__(self, args, n):
        self.args = args
        self.replicas = [Replica(args, i, free_port()) for i in range(n)]
        self.haproxy = None

    def __enter__(self):
        try:
            for r in self.replicas:
                r.start()
            self.warmup_s = [r.wait_ready(self.args.ready_timeout) for r in self.replicas]
            self.haproxy = HAProxy(self.args, self.replicas)
            self.haproxy.wait_all_up([r.name for r in self.replicas])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.haproxy:
            self.haproxy.stop()
        for r in self.replicas:
            r.stop()


def measure_throughput(args, images, n):
    with Cluster(args, n) as c:
        pids = {"replicas": [r.proc.pid for r in c.replicas], "haproxy": [c.haproxy.proc.pid]}
        before = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items()}
        t0, busy0, own0 = time.monotonic(), machine_busy_seconds(), sum(os.times()[:2])
        r = load.run_point(c.haproxy.port, images, args.clients, args.seconds, args.warmup)
        wall = time.monotonic() - t0
        cpu = {k: (sum(cpu_seconds(p) for p in v) - before[k]) / wall for k, v in pids.items()}
        cpu["load_generator"] = (sum(os.times()[:2]) - own0) / wall
        cpu["machine"] = (machine_busy_seconds() - busy0) / wall
        cpu["other"] = max(0.0, cpu["machine"] - cpu["replicas"] - cpu["haproxy"] - cpu["load_generator"])
        r.update(replicas=n, cores_busy=cpu, per_replica_2xx={k: v["answered_2xx"] for k, v in c.haproxy.stats().items()})
    print("replicas %d: %7.2f images/s  p50 %7.1f ms  p99 %7.1f ms  errors %d  cores busy: replicas %.2f "
          "haproxy %.2f load %.2f other %.2f (machine %.2f)" %
          (n, r["images_per_s"], r["p50_ms"], r["p99_ms"], r["errors"], cpu["replicas"], cpu["haproxy"],
           cpu["load_generator"], cpu["other"], cpu["machine"]), flush=True)
    return r


def fault_run(args, images):
    """Kill one replica (SIGKILL) under load, start it again; returns what the clients and HAProxy saw."""
    with Cluster(args, args.fault_replicas) as c:
        victim, hap = c.replicas[0], c.haproxy
        result = {}
        load_thread = threading.Thread(target=lambda: result.update(load.run_point(
            hap.port, images, args.clients, args.fault_seconds, 0.0)))
        t_load = time.monotonic()
        load_thread.start()
        time.sleep(args.kill_after)
        served_before = hap.stats()[victim.name]["answered_2xx"]
        victim.kill()
        t_kill = time.monotonic()
        went_down_s = None  # when HAProxy's checks noticed (requests were retried meanwhile)
        while time.monotonic() < t_kill + args.restart_after:
            if went_down_s is None and not hap.stats()[victim.name]["status"].startswith("UP"):
                went_down_s = time.monotonic() - t_kill
            time.sleep(0.02)
        victim.start()
        t_restart = time.monotonic()
        seen = {"warm_s": None, "up_s": None, "first_image_s": None}
        end = t_restart + args.ready_timeout
        while time.monotonic() < end and None in seen.values():
            now = time.monotonic()
            st = hap.stats()[victim.name]["status"]
            if went_down_s is None and not st.startswith("UP"):
                went_down_s = now - t_kill
            if seen["warm_s"] is None and http_get(victim.port, "/v2/health/ready", 0.5)[0] == 200:
                seen["warm_s"] = now - t_restart
            if seen["up_s"] is None and seen["warm_s"] is not None and st == "UP":
                seen["up_s"] = now - t_restart
            if seen["first_image_s"] is None and (victim.images_ok() or 0) > 0:
                seen["first_image_s"] = time.monotonic() - t_restart
            time.sleep(0.02)
        load_thread.join()
        stats = hap.stats()
        result.update(replicas=args.fault_replicas, kill_at_s=t_kill - t_load, restart_at_s=t_restart - t_load,
                      marked_down_after_kill_s=went_down_s, restart=seen,
                      victim_images_after_restart=victim.images_ok(), victim_2xx_before_kill=served_before,
                      haproxy=stats)
    print("fault run, %d replicas, %d clients, %.0f s: %d requests completed, %d failed; %s killed at %.1f s, "
          "restarted at %.1f s (HAProxy marked it DOWN %s s after the kill): ready after %s s, "
          "UP in HAProxy after %s s, first image after %s s (%s images since); "
          "HAProxy retries %d, redispatches %d" %
          (args.fault_replicas, args.clients, args.fault_seconds, result["completed"], result["errors"], victim.name,
           result["kill_at_s"], result["restart_at_s"], fmt(went_down_s), fmt(seen["warm_s"]), fmt(seen["up_s"]),
           fmt(seen["first_image_s"]), result["victim_images_after_restart"],
           sum(v["retries"] for v in stats.values()), sum(v["redispatches"] for v in stats.values())), flush=True)
    if result["errors"]:
        print("failed request sample:", result["error_sample"])
    return result


def fmt(v):
    return "never" if v is None else "%.2f" % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, "examples", "data", "demo", "model.json"))
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--replicas", default="1,2,3", help="replica counts of the throughput runs ('' = none)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--server-flags", default="", help="extra flags for every replica")
    ap.add_argument("--fault", action="store_true", help="also the fault run")
    ap.add_argument("--fault-replicas", type=int, default=2)
    ap.add_argument("--fault-seconds", type=float, default=30)
    ap.add_argument("--kill-after", type=float, default=8)
    ap.add_argument("--restart-after", type=float, default=2)
    ap.add_argument("--quick", action="store_true", help="a short fault run (the ctest variant)")
    ap.add_argument("--haproxy-bufsize", type=int, default=256 * 1024)
    ap.add_argument("--ready-timeout", type=float, default=120)
    ap.add_argument("--work", default="/tmp/sluice-scale")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    if a.quick:
        a.fault, a.fault_seconds, a.kill_after, a.restart_after = True, 14, 3, 1
    os.makedirs(a.work, exist_ok=True)
    # A SIGTERM (ctest's timeout) unwinds through the `with` blocks, which stop every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    if not os.path.exists(a.haproxy):
        print("haproxy not found (Debian package haproxy; tools/install-deps.sh installs it)")
        return 77

    images = sample_images()
    out = {"haproxy": subprocess.run([a.haproxy, "-v"], capture_output=True, text=True).stdout.splitlines()[0],
           "clients": a.clients, "throughput": [], "fault": None}
    for n in [int(x) for x in a.replicas.split(",") if x]:
        out["throughput"].append(measure_throughput(a, images, n))
    if a.fault:
        out["fault"] = fault_run(a, images)

    if out["throughput"]:
        # Images per core-second the replicas got: what a replica does with the CPU it is given,
        # independent of how much of the machine other processes took meanwhile.
        print("\n| replicas | images/s | p50 ms | p99 ms | errors | cores: replicas | haproxy | load generator | other "
              "| images per replica core-second |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in out["throughput"]:
            c = r["cores_busy"]
            print("| %d | %.2f | %.1f | %.1f | %d | %.2f | %.2f | %.2f | %.2f | %.1f |" % (
                r["replicas"], r["images_per_s"], r["p50_ms"], r["p99_ms"], r["errors"], c["replicas"], c["haproxy"],
                c["load_generator"], c["other"], r["images_per_s"] / c["replicas"] if c["replicas"] else 0))
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)
    failed = any(r["errors"] for r in out["throughput"])
    if out["fault"]:
        f = out["fault"]
        failed |= bool(f["errors"]) or f["restart"]["first_image_s"] is None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
