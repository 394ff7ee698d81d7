#!/usr/bin/python3
"""Load generator for sluice_serve: images/s and p50/p99 latency of POST /api/v1/segment at several
numbers of concurrent clients, batching on versus batching off (max batch size 1), in one run.

Starts two servers on ephemeral ports of 127.0.0.1 (never anything else) with the same model,
one batching and one not, and measures them in alternation at each concurrency so that both see
the same machine load. Each client is a thread with its own keep-alive HTTP/1.1 connection
(http.client) that posts one image per request (multipart/form-data, like curl -F) and waits for
the answer. Every request is checked (200 and the image's own size in the result).

    bench/serve/load.py --server build/release/examples/serve/sluice_serve \
        --model examples/data/demo/model.json [--clients 1,8,32,128] [--seconds 20] [--json out.json]

The images are made with OpenCV and numpy (tools/demo/make_data.py), or read from --images DIR (PNG
files, as bench/gpu/serve_package.sh packs them): then this script needs only the standard library.
Both servers load their models at once; the measurement starts when both answer /health/ready.
Extra server flags for both: --server-flags "--backend cuda --precision fp16".
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


class Server:
    def __init__(self, binary, model, flags, log):
        cmd = [binary, "--model", "demo=" + model, "--address", HOST, "--port", "0"] + flags
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
        line = [""]
        t = threading.Thread(target=lambda: line.__setitem__(0, self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(300)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line[0] or "")
        if not m:
            self.stop()
            raise RuntimeError("server did not start, see " + log)
        self.port = int(m.group(1))
        self.log = log

    def wait_ready(self, timeout):
        """Waits until GET /health/ready answers 200 (the model loaded and warmed up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with status %d, see %s" % (self.proc.returncode, self.log))
            try:
                c = http.client.HTTPConnection(HOST, self.port, timeout=10)
                c.request("GET", "/health/ready")
                status = c.getresponse().status
                c.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server not ready after %.0f s, see %s" % (timeout, self.log))

    def metrics(self):
        c = http.client.HTTPConnection(HOST, self.port, timeout=30)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        s = re.search(r'^sluice_batch_size_sum\{model="demo"\} (\S+)$', text, re.M)
        n = re.search(r'^sluice_batch_size_count\{model="demo"\} (\S+)$', text, re.M)
        return float(s.group(1)), float(n.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def make_images(count, size):
    sys.path.insert(0, os.path.join(ROOT, "tools", "demo"))
    import cv2
    import numpy as np
    import make_data
    rng = np.random.default_rng(11)
    out = []
    for i in range(count):
        h, w = size + (i % 7), size + (i % 5)  # distinct sizes let each answer be checked
        image, _ = make_data.make_sample(rng, height=h, width=w)
        ok, png = cv2.imencode(".png", image)
        out.append(((w, h), png.tobytes()))
    return out


def png_size(png):
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


def read_images(folder):
    """The PNG files of `folder`, sorted by name, as make_images returns them."""
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".png"):
            with open(os.path.join(folder, name), "rb") as f:
                png = f.read()
            out.append((png_size(png), png))
    if not out:
        raise RuntimeError("no .png file in " + folder)
    return out


def multipart(png, boundary="sluicebenchboundary"):
    head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            'Content-Type: image/png\r\n\r\n' % boundary).encode()
    return head + png + ("\r\n--%s--\r\n" % boundary).encode(), "multipart/form-data; boundary=" + boundary


def run_point(port, images, clients, seconds, warmup):
    """`clients` threads post images for warmup + seconds; throughput and latencies of the requests
    that complete inside the measured window (after the warm-up)."""
    bodies = [(size, *multipart(png)) for size, png in images]
    start = time.monotonic() + warmup
    stop = start + seconds
    lat, errors, lock = [], [], threading.Lock()
    done_in_window = [0]

    def client(k):
        conn = http.client.HTTPConnection(HOST, port, timeout=300)
        i = k
        while True:
            t0 = time.monotonic()
            if t0 >= stop:
                break
            size, body, ctype = bodies[i % len(bodies)]
            i += clients
            try:
                conn.request("POST", "/api/v1/segment", body=body, headers={"Content-Type": ctype})
                r = conn.getresponse()
                data = r.read()
                t1 = time.monotonic()
                ok = r.status == 200 and json.loads(data)["image_size"] == {"width": size[0], "height": size[1]}
            except Exception as e:  # noqa: BLE001 - any failure is counted, the run goes on
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=300)
                t1, ok, data = time.monotonic(), False, str(e).encode()
            with lock:
                if not ok:
                    errors.append(data[:200])
                elif start <= t1 <= stop:  # completed inside the measured window
                    lat.append(t1 - t0)
                    done_in_window[0] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    cpu0, wall0 = os.times(), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + warmup + 600)
    cpu1, wall1 = os.times(), time.monotonic()
    lat.sort()

    def q(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"clients": clients, "images_per_s": done_in_window[0] / seconds, "p50_ms": q(0.50), "p99_ms": q(0.99),
            "completed": done_in_window[0], "errors": len(errors),
            "error_sample": [e.decode("utf-8", "replace") for e in errors[:1]],
            # cores this load generator used: near 1 (one interpreter) it, not the server, may be the limit
            "client_cpu_cores": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / max(wall1 - wall0, 1e-9)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", default="1,8,32,128")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--server-flags", default="", help="extra flags for both servers")
    ap.add_argument("--images", default="", help="folder of PNG images to post (default: made with OpenCV)")
    ap.add_argument("--ready-timeout", type=float, default=600, help="seconds to wait for the models to load")
    ap.add_argument("--json", default="")
    ap.add_argument("--log-dir", default="/tmp")
    a = ap.parse_args()

    images = read_images(a.images) if a.images else make_images(64, a.image_size)
    common = ["--max-connections", "1024", "--max-queue-size", "4096", "--slo-ms", "600000"] + a.server_flags.split()
    modes = {
        "on": Server(a.server, a.model, common + ["--max-batch-size", str(a.max_batch_size)],
                     os.path.join(a.log_dir, "sluice-bench-serve-on.log")),
        "off": Server(a.server, a.model, common + ["--max-batch-size", "1"],
                      os.path.join(a.log_dir, "sluice-bench-serve-off.log")),
    }
    rows = []
    try:
        for s in modes.values():
            s.wait_ready(a.ready_timeout)
        for idx, clients in enumerate(int(c) for c in a.clients.split(",")):
            order = ["on", "off"] if idx % 2 == 0 else ["off", "on"]  # alternate who goes first
            for mode in order:
                s = modes[mode]
                s0, n0 = s.metrics()
                r = run_point(s.port, images, clients, a.seconds, a.warmup)
                s1, n1 = s.metrics()
                r["mode"] = mode
                r["mean_batch"] = (s1 - s0) / (n1 - n0) if n1 > n0 else 0.0
                rows.append(r)
                print("batching %-3s clients %4d: %7.2f images/s  p50 %8.1f ms  p99 %8.1f ms  mean batch %5.2f  "
                      "errors %d  client cpu %.2f" % (mode, clients, r["images_per_s"], r["p50_ms"], r["p99_ms"],
                                                      r["mean_batch"], r["errors"], r["client_cpu_cores"]), flush=True)
    finally:
        for s in modes.values():
            s.stop()

    print("\n| clients | batching | images/s | p50 ms | p99 ms | mean batch | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["clients"], r["mode"] != "on")):
        print("| %d | %s | %.2f | %.1f | %.1f | %.2f | %d |" % (r["clients"], r["mode"], r["images_per_s"], r["p50_ms"],
                                                              r["p99_ms"], r["mean_batch"], r["errors"]))
    by = {(r["clients"], r["mode"]): r for r in rows}
    for c in sorted({r["clients"] for r in rows}):
        on, off = by.get((c, "on")), by.get((c, "off"))
        if on and off and off["images_per_s"] > 0:
            print("clients %d: throughput on/off = %.2fx, p99 on/off = %.2f" %
                  (c, on["images_per_s"] / off["images_per_s"], on["p99_ms"] / off["p99_ms"]))
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
