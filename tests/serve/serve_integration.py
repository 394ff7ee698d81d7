#!/usr/bin/python3
"""Integration test of sluice_serve, run by ctest: starts the server on an ephemeral port of
127.0.0.1 with the demo model and talks to it with curl only (Debian's curl).

Checks every endpoint and every error the server promises (400, 404, 405, 413, 415, 503 with
Retry-After for a full queue and for the connection cap, 504 for a missed deadline, read timeouts),
that /segment agrees with the segment CLI (when it is built) and with /batch-segment, that 32
concurrent clients are served in batches (mean batch size > 1 in /metrics) with the right answer
for each image, and that SIGTERM lets an in-flight request finish and exits 0.

Bounded: every curl has --max-time, every wait a limit, and every server started is killed at exit.
    serve_integration.py --server BIN --model MODEL_JSON [--segment BIN] [--work DIR]
"""
import argparse
import atexit
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import live_server

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
HOST = "127.0.0.1"  # loopback only, always
SKIP = 77

failures = []
servers = []


def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


# ---- the server -----------------------------------------------------------------------------------
class Server:
    """Started, then waited for until GET /health/ready answers 200 (the models load after the
    server listens). `env`: extra environment variables; `address`, `port` None: no such flag."""

    def __init__(self, binary, model, *flags, log_dir, env=None, address=HOST, port="0", wait_ready=True):
        self.log = open(os.path.join(log_dir, "server-%d.log" % len(servers)), "w")
        cmd = [binary, "--model", "demo=" + model] + (["--address", address] if address else [])
        cmd += (["--port", port] if port else []) + list(flags)
        self.proc, self.port = live_server.spawn(cmd, self.log, env=dict(os.environ, **(env or {})))
        servers.append(self)
        self.url = "http://%s:%d" % (HOST, self.port)
        self.first_health = curl(self.url + "/api/v1/health", max_time=10)  # at once, maybe still loading
        if wait_ready:
            live_server.wait_ready(self.proc, self.port)

    def stop(self, timeout=60):
        """SIGTERM, then the exit code (None if it had to be killed)."""
        return live_server.stop(self.proc, timeout)

    def kill(self):
        live_server.kill(self.proc)


@atexit.register
def kill_all():
    for s in servers:
        s.kill()


# ---- curl ------------------------------------------------------------------------------------------
class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def curl(url, *args, max_time=60):
    """One request with Debian's curl; returns status (0: no HTTP answer), headers, body."""
    with tempfile.TemporaryDirectory() as d:
        body_path, head_path = os.path.join(d, "body"), os.path.join(d, "head")
        cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", str(max_time), "-o", body_path, "-D", head_path,
               "-w", "%{http_code}"] + list(args) + [url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=max_time + 30)
        status = int(out.stdout.strip() or 0)
        headers = {}
        if os.path.exists(head_path):
            for line in open(head_path, encoding="latin-1").read().splitlines():
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
        body = open(body_path, encoding="utf-8", errors="replace").read() if os.path.exists(body_path) else ""
        return Reply(status, headers, body)


def segment(server, path, *fields, **kw):
    args = ["-F", "file=@%s" % path]
    for f in fields:
        args += ["-F", f]
    return curl(server.url + "/api/v1/segment", *args, **kw)


class PreparedSegment:
    """POST /segment of one image as curl -F file=@path sends it, on a connection opened now, sent by
    send() and answered by receive(). One thread sends all 32 clients' requests back to back, then
    reads the answers: the requests reach the server within milliseconds however loaded the machine
    is (32 client threads, or curl processes, can spread over 100 ms or more on a loaded 2-core
    machine, and a fast server then serves them one by one)."""

    def __init__(self, server, path):
        boundary = "sluice-integration-test"
        with open(path, "rb") as f:
            image = f.read()
        self.body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n") % (boundary, os.path.basename(path))).encode()
        self.body += image + ("\r\n--%s--\r\n" % boundary).encode()
        self.headers = {"Content-Type": "multipart/form-data; boundary=%s" % boundary}
        self.conn = http.client.HTTPConnection(HOST, server.port, timeout=120)
        self.conn.connect()
        self.error = None

    def send(self):
        try:
            self.conn.request("POST", "/api/v1/segment", self.body, self.headers)
        except OSError as e:
            self.error = str(e)

    def receive(self):
        try:
            if self.error is not None:
                return Reply(0, {}, self.error)
            r = self.conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace"))
        except OSError as e:
            return Reply(0, {}, str(e))
        finally:
            self.conn.close()


def metric_sum(text, name, model="demo"):
    m = re.search(r'^%s\{model="%s"\} ([0-9.e+-]+)$' % (re.escape(name), model), text, re.M)
    return float(m.group(1)) if m else None


# ---- test images -----------------------------------------------------------------------------------
def make_images(out_dir, count):
    """Synthetic spheroid images (the demo model's domain), each of a distinct size."""
    sys.path.insert(0, os.path.join(ROOT, "tools", "demo"))
    import cv2
    import numpy as np
    import make_data

    rng = np.random.default_rng(2024)
    paths = []
    for i in range(count):
        h, w = 96 + 3 * i, 112 + 2 * i
        image, _ = make_data.make_sample(rng, height=h, width=w)
        p = os.path.join(out_dir, "img%02d.png" % i)
        cv2.imwrite(p, image)
        paths.append(p)
    return paths


def polygon_area(points):
    """Shoelace area of a traced polygon."""
    n = len(points)
    return abs(sum(points[i]["x"] * points[(i + 1) % n]["y"] - points[(i + 1) % n]["x"] * points[i]["y"]
                   for i in range(n))) / 2.0


def same_result(a, b, keys=("image_size", "threshold_used", "model_used")):
    """The same segmentation in two result JSONs (timing and batch fields differ). Polygons must
    match in number, order, type and parent; their outlines may differ only where the float sums of
    a different batch size move a border pixel across the threshold: area within 2% + 2 px, and the
    confidence within 1e-3. The image size identifies the image exactly (every test image has its own)."""
    if not a or not b:
        return False
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    pa, pb = a.get("polygons", []), b.get("polygons", [])
    if len(pa) != len(pb):
        return False
    for x, y in zip(pa, pb):
        if x["type"] != y["type"] or x.get("parent_id") != y.get("parent_id"):
            return False
        ax, ay = polygon_area(x["points"]), polygon_area(y["points"])
        if abs(ax - ay) > 0.02 * max(ax, ay) + 2:
            return False
        if abs(x["confidence"] - y["confidence"]) > 1e-3:
            return False
    return True


def exact_result(a, b, keys=("image_size", "threshold_used", "model_used")):
    return same_result(a, b, keys) and all(x["points"] == y["points"] for x, y in zip(a["polygons"], b["polygons"]))


# ---- the tests -------------------------------------------------------------------------------------
def test_endpoints(s, images, work, segment_cli, model):
    r = curl(s.url + "/api/v1/health")
    check(r.status == 200 and r.json()["status"] == "healthy", "GET /health")
    r = curl(s.url + "/api/v1/models")
    j = r.json() or {}
    check(r.status == 200 and j.get("default_model") == "demo" and j["models"][0]["name"] == "demo"
          and "input_size" in j["models"][0], "GET /models")
    check("cbam_resunet" in j["models"][0].get("aliases", []), "GET /models: the network's name is an alias")
    r = curl(s.url + "/api/v1/status")
    check(r.status == 200 and "demo" in (r.json() or {}).get("models", {}), "GET /status")
    r = segment(s, images[0], "model=cbam_resunet")
    check(r.status == 200 and (r.json() or {}).get("model_used") == "demo", "model=cbam_resunet reaches 'demo'")
    r = segment(s, images[0], "model=resunet_advanced")
    check(r.status == 404 and "cbam_resunet" in (r.json() or {}).get("detail", ""),
          "an unconfigured model: 404 naming the models and their aliases")

    r = segment(s, images[0])
    j = r.json() or {}
    ok = r.status == 200 and j.get("success") is True and j.get("model_used") == "demo"
    for k in ("image_size", "polygons", "processing_info", "processing_time", "inference_time",
              "preprocessing_time", "batch_size_used"):
        ok = ok and k in j
    check(ok, "POST /segment multipart: result JSON with timing fields")
    h, w = 96, 112
    check(j.get("image_size") == {"width": w, "height": h}, "POST /segment reports the original image size")
    check(len(j.get("polygons", [])) > 0 or "warning" in j, "POST /segment: polygons, or the no-polygon warning")

    # The same image as a raw body with the options in the query string.
    raw = curl(s.url + "/api/v1/segment?model=demo&threshold=0.5&detect_holes=true", "-H", "Content-Type: image/png",
               "--data-binary", "@" + images[0])
    check(raw.status == 200 and same_result(raw.json(), j), "POST /segment raw image/png body == multipart")

    # Options change the answer: detect_holes=false gives only external polygons.
    r = segment(s, images[0], "threshold=0.3", "detect_holes=false")
    jj = r.json() or {}
    check(r.status == 200 and jj.get("threshold_used") == 0.3
          and all(p["type"] == "external" for p in jj.get("polygons", [])), "POST /segment threshold, detect_holes")

    # The segment CLI agrees with /segment for the same images.
    if segment_cli:
        compare_with_cli(s, images[:3], work, segment_cli, model)
    else:
        print("NOTE segment CLI not built: /segment vs CLI comparison skipped", flush=True)

    # batch-segment: one result per file, in order, each equal to /segment's.
    args = []
    for p in images[:5]:
        args += ["-F", "files=@%s" % p]
    r = curl(s.url + "/api/v1/batch-segment", *args)
    j = r.json() or {}
    ok = r.status == 200 and j.get("success") is True and j.get("batch_size") == 5 and j.get("successful_count") == 5
    ok = ok and j.get("failed_count") == 0 and [x["filename"] for x in j["results"]] == [os.path.basename(p) for p in images[:5]]
    check(ok, "POST /batch-segment: 5 files, all answered in order")
    singles = [segment(s, p).json() for p in images[:5]]
    check(all(same_result(a, b) for a, b in zip(j.get("results", []), singles)), "POST /batch-segment results == /segment's")
    check(j.get("total_polygons") == sum(len(x["polygons"]) for x in singles), "POST /batch-segment total_polygons")
    # More files than the max batch size (16): split across batches, not refused.
    args = []
    for p in images[:20]:
        args += ["-F", "files=@%s" % p]
    r = curl(s.url + "/api/v1/batch-segment", *args)
    check(r.status == 200 and (r.json() or {}).get("successful_count") == 20, "POST /batch-segment: 20 files > max batch 16")

    r = curl(s.url + "/metrics")
    check(r.status == 200 and "sluice_http_requests_total{" in r.body and "sluice_batch_size_count{" in r.body
          and "sluice_http_request_duration_seconds_bucket{" in r.body, "GET /metrics (Prometheus text)")


def compare_with_cli(s, images, work, segment_cli, model):
    """The segment CLI (its own Batcher, batch size 4) on the same files gives the same results."""
    out = os.path.join(work, "cli.jsonl")
    cmd = [segment_cli, "--model-json", model, "--threshold", "0.5", "--output", out, "--quiet"] + images
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if not check(res.returncode == 0, "segment CLI runs (%s)" % res.stderr.strip()[-200:]):
        return
    records = [json.loads(line) for line in open(out) if line.strip()]
    by_name = {os.path.basename(r.get("filename", "")): r for r in records}
    for p in images:
        cli = by_name.get(os.path.basename(p))
        if not check(cli is not None and cli.get("success") is True, "segment CLI result for %s" % os.path.basename(p)):
            continue
        served = segment(s, p).json()
        # The server reports its configured model name ("demo"), the CLI the network's: not compared.
        keys = ("image_size", "threshold_used")
        check(same_result(cli, served, keys), "/segment == segment CLI for %s (points identical: %s)"
              % (os.path.basename(p), exact_result(cli, served, keys)))


def test_errors(s, images, work):
    def err(r, status, what, code=None):
        j = r.json() or {}
        ok = r.status == status and j.get("success") is False and isinstance(j.get("detail"), str)
        if code:
            ok = ok and j.get("error") == code
        check(ok, "%s -> %d (%s)" % (what, status, r.body[:120]))

    err(segment(s, images[0], "model=nope"), 404, "unknown model", "not_found")
    err(segment(s, images[0], "threshold=0.95"), 400, "threshold out of range")
    err(segment(s, images[0], "threshold=abc"), 400, "threshold not a number")
    err(segment(s, images[0], "detect_holes=maybe"), 400, "bad detect_holes")
    err(segment(s, images[0], "colour=red"), 400, "unknown field")
    err(curl(s.url + "/api/v1/segment", "-F", "model=demo"), 400, "missing file")
    notes = os.path.join(work, "notes.txt")
    open(notes, "w").write("not an image")
    err(curl(s.url + "/api/v1/segment", "-F", "file=@%s" % notes), 400, "file extension")
    garbage = os.path.join(work, "garbage.png")
    open(garbage, "wb").write(os.urandom(4000))
    err(segment(s, garbage), 400, "not a decodable image")
    err(curl(s.url + "/api/v1/segment", "-H", "Content-Type: application/json", "--data", "{}"), 415,
        "unsupported Content-Type")
    err(curl(s.url + "/api/v1/segment", "-H", "Content-Type: multipart/form-data; boundary=XX", "--data-binary",
             "--XX\r\nbroken"), 400, "malformed multipart")
    err(curl(s.url + "/api/v1/nothing"), 404, "unknown path")
    r = curl(s.url + "/api/v1/segment")
    err(r, 405, "GET on a POST endpoint")
    check(r.headers.get("allow") == "POST", "405 carries Allow: POST")
    # Body over --max-body-bytes (4 MB here).
    big = os.path.join(work, "big.png")
    with open(big, "wb") as f:
        f.write(open(images[0], "rb").read())
        f.write(b"\0" * (5 * 1024 * 1024))
    err(curl(s.url + "/api/v1/segment", "-H", "Content-Type: image/png", "--data-binary", "@" + big), 413,
        "body too large", "payload_too_large")
    # An image over --max-pixels (1 Mpx here): refused from its header, before decoding.
    import cv2
    import numpy as np
    large = os.path.join(work, "large.png")
    cv2.imwrite(large, np.zeros((1100, 1000), np.uint8))
    err(segment(s, large), 413, "image over the pixel limit", "image_too_large")
    # A server error still leaves the server serving.
    check(curl(s.url + "/api/v1/health").status == 200, "still healthy after the errors")


def test_timeouts_and_connection_cap(binary, model, work):
    # Header timeout 1.5 s: a connection that sends nothing is closed by the server. curl's telnet
    # mode holds a connection open without sending anything; the server's open-connection gauge
    # (read with curl, which counts itself) shows it open, then closed.
    s = Server(binary, model, "--header-timeout-ms", "1500", "--body-timeout-ms", "1000", "--max-connections", "3",
               log_dir=work)

    def open_connections():
        m = re.search(r"^sluice_http_open_connections (\d+)$", curl(s.url + "/metrics").body, re.M)
        return int(m.group(1)) if m else -1

    idle = subprocess.Popen(["sh", "-c", "sleep 8 | curl -s --noproxy '*' telnet://%s:%d" % (HOST, s.port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    seen_open = False
    for _ in range(40):  # until the server has accepted it (bounded: 40 x 50 ms)
        time.sleep(0.05)
        if open_connections() == 2:
            seen_open = True
            break
    closed = False
    for _ in range(60):  # then until the header timeout closes it (bounded: 60 x 100 ms)
        time.sleep(0.1)
        if open_connections() == 1:
            closed = True
            break
    os.killpg(idle.pid, signal.SIGKILL)
    idle.wait()
    check(seen_open and closed, "idle connection closed by the header timeout (open seen %s, closed %s)"
          % (seen_open, closed))
    # Body timeout 1 s: an upload throttled to 2 KB/s (the body needs ~10 s) is cut off.
    slow = os.path.join(work, "slow.bin")
    open(slow, "wb").write(b"x" * 20000)
    r = curl(s.url + "/api/v1/segment", "-H", "Content-Type: image/png", "--limit-rate", "2K", "--data-binary",
             "@" + slow, max_time=30)
    check(r.status == 0, "slow upload cut off by the body timeout (curl got no answer)")
    # Connection cap 3: three idle connections are held open; a fourth client takes the place of the
    # one that has waited longest for a header, and the eviction is counted.
    holders = [subprocess.Popen(["sh", "-c", "sleep 8 | curl -s --noproxy '*' telnet://%s:%d" % (HOST, s.port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
               for _ in range(3)]
    time.sleep(0.3)  # well within the 1.5 s header timeout: they still count as open
    r = curl(s.url + "/api/v1/health")
    metrics = curl(s.url + "/metrics").body
    for h in holders:
        os.killpg(h.pid, signal.SIGKILL)
        h.wait()
    check(r.status == 200, "at the connection cap an idle connection makes room (%d)" % r.status)
    check(re.search(r"^sluice_http_connections_evicted_total [1-9]", metrics, re.M) is not None,
          "the eviction is counted")
    time.sleep(1.0)
    check(curl(s.url + "/api/v1/health").status == 200, "served again once connections closed")
    check(s.stop() == 0, "server exits 0 on SIGTERM")


def run_concurrently(fn, items, workers):
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def test_bad_settings(binary, model):
    """A bad setting stops the server before it listens: exit status 2 and the reason on stderr."""
    for flags, env, reason in ((["--batch-split", "sometimes"], {}, "never, always or auto"),
                               (["--lanes", "two"], {}, "needs a number"),
                               ([], {"SLUICE_PORT": "70000"}, "SLUICE_PORT"),
                               ([], {"SLUICE_ADDRESS": "not-an-address"}, "SLUICE_ADDRESS"),
                               (["--address", "1.2.3"], {}, "not an IPv4 or IPv6 address"),
                               (["--deadline-ms", "-5"], {}, "deadline_ms")):
        p = subprocess.run([binary, "--model", model, "--port", "0"] + flags, capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, **env))
        what = " ".join(flags + ["%s=%s" % kv for kv in env.items()])
        check(p.returncode == 2, "%s: exit status %d, expected 2" % (what, p.returncode))
        check(reason in p.stderr and "listening" not in p.stdout,
              "%s: stderr %r lacks %r" % (what, p.stderr.strip(), reason))


def test_environment_and_health(binary, model, work):
    """SLUICE_ADDRESS / SLUICE_PORT set where it listens, flags win over them; the health paths
    answer from the moment the server listens."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        free = probe.getsockname()[1]
    s = Server(binary, model, log_dir=work, address=None, port=None,
               env={"SLUICE_ADDRESS": HOST, "SLUICE_PORT": str(free)})
    check(s.port == free, "SLUICE_ADDRESS/SLUICE_PORT: listens on %s:%d (got %d)" % (HOST, free, s.port))
    first = s.first_health.json() or {}
    check(s.first_health.status == 200 and first.get("status") in ("loading", "healthy"),
          "health answers as soon as the server listens (%s %r)" % (s.first_health.status, first.get("status")))
    for path in ("/health", "/api/v1/health"):
        r = curl(s.url + path)
        j = r.json() or {}
        check(r.status == 200 and j.get("status") == "healthy" and j.get("ready") is True
              and isinstance(j.get("timestamp"), str) and "gpu_available" in j.get("device", {}),
              "GET %s once ready: healthy, with the service's fields" % path)
    check(curl(s.url + "/health/live").status == 200, "GET /health/live: 200")
    check(curl(s.url + "/health/ready").status == 200, "GET /health/ready once ready: 200")
    check(s.stop() == 0, "server exits 0 on SIGTERM")
    # --port beats SLUICE_PORT.
    s = Server(binary, model, log_dir=work, env={"SLUICE_PORT": str(free)})
    check(s.port != free, "--port 0 wins over SLUICE_PORT")
    check(s.stop() == 0, "server exits 0 on SIGTERM")


def test_queue_full_and_deadline(binary, model, images, work):
    # A queue of one image and batches of one: most of 16 simultaneous requests find it full.
    s = Server(binary, model, "--max-queue-size", "1", "--max-batch-size", "1", "--controller", "fixed",
               log_dir=work)
    replies = run_concurrently(lambda p: segment(s, p), images[:16], 16)
    statuses = [r.status for r in replies]
    full = [r for r in replies if r.status == 503]
    check(all(x in (200, 503) for x in statuses) and len(full) > 0 and statuses.count(200) > 0,
          "queue full -> 503 (%s)" % statuses)
    check(all(r.headers.get("retry-after") == "1" and (r.json() or {}).get("error") == "queue_full" for r in full),
          "queue-full 503s carry Retry-After and error=queue_full")
    check(s.stop() == 0, "server exits 0 on SIGTERM")
    # Deadline 150 ms with batches of one: requests queued behind others miss it. 32 of them, so that
    # the last ones wait well past it (12 at ~12 ms each, the CPU backend's speed now, sat at 150 ms).
    s = Server(binary, model, "--deadline-ms", "150", "--max-batch-size", "1", "--controller", "fixed", log_dir=work)
    replies = run_concurrently(lambda p: segment(s, p), images[:32], 32)
    statuses = [r.status for r in replies]
    late = [r for r in replies if r.status == 504]
    check(all(x in (200, 504) for x in statuses) and len(late) > 0, "deadline missed -> 504 (%s)" % statuses)
    check(all((r.json() or {}).get("error") == "deadline_exceeded" for r in late), "504s say deadline_exceeded")
    check(s.stop() == 0, "server exits 0 on SIGTERM")


def test_concurrent_batching(binary, model, images, work):
    """32 clients, one image each, at once: answered right, and in batches. A fixed controller that
    waits up to 300 ms for a batch to fill, so that batches form however loaded the machine is (the
    default SloController rightly runs batches of one when arrivals spread out past its budget)."""
    s = Server(binary, model, "--controller", "fixed", "--max-batch-size", "8", "--max-queue-delay-ms", "300",
               log_dir=work)
    try:
        check_concurrent_batching(s, images)
    finally:
        check(s.stop() == 0, "server exits 0 on SIGTERM")


def check_concurrent_batching(s, images):
    expected = {p: segment(s, p).json() for p in images[:32]}
    before = curl(s.url + "/metrics").body
    sum0, n0 = metric_sum(before, "sluice_batch_size_sum"), metric_sum(before, "sluice_batch_size_count")
    clients = [PreparedSegment(s, p) for p in images[:32]]
    for c in clients:
        c.send()
    replies = [c.receive() for c in clients]
    check(all(r.status == 200 for r in replies), "32 concurrent clients: all 200 (%s)" % [r.status for r in replies])
    check(all(same_result(r.json() or {}, expected[p]) for r, p in zip(replies, images[:32])),
          "32 concurrent clients: each got the result of its own image")
    exact = sum(exact_result(r.json() or {}, expected[p]) for r, p in zip(replies, images[:32]))
    print("NOTE %d of 32 batched results are point-for-point identical to the unbatched ones" % exact, flush=True)
    after = curl(s.url + "/metrics").body
    sum1, n1 = metric_sum(after, "sluice_batch_size_sum"), metric_sum(after, "sluice_batch_size_count")
    batches, items = n1 - n0, sum1 - sum0
    mean = items / batches if batches else 0
    check(items == 32 and mean > 1.0, "32 concurrent clients: %d images in %d batches, mean batch size %.2f > 1"
          % (items, batches, mean))
    sizes = [(r.json() or {}).get("batch_size_used", 0) for r in replies]
    check(max(sizes) > 1, "responses report batch_size_used > 1 (max %d)" % max(sizes))


def test_graceful_shutdown(binary, model, images, work):
    s = Server(binary, model, log_dir=work)
    args = []
    for p in images[:24]:
        args += ["-F", "files=@%s" % p]
    result = {}

    def request():
        result["r"] = curl(s.url + "/api/v1/batch-segment", *args, max_time=120)

    t = threading.Thread(target=request)
    t.start()
    in_flight = False
    for _ in range(400):  # until the server holds the images (bounded: 400 x 25 ms)
        st = curl(s.url + "/api/v1/status", max_time=5).json() or {}
        if st.get("images_in_flight", 0) > 0:
            in_flight = True
            break
        time.sleep(0.025)
    check(in_flight, "batch-segment is in flight before SIGTERM")
    code = s.stop(timeout=120)
    t.join(150)
    r = result.get("r")
    check(r is not None and r.status == 200 and (r.json() or {}).get("successful_count") == 24,
          "SIGTERM: the in-flight request finished (%s)" % (r.status if r else None))
    check(code == 0, "SIGTERM: server exited 0 (%s)" % code)
    check(curl(s.url + "/api/v1/health", max_time=5).status == 0, "SIGTERM: no longer accepting")


def test_large_inputs(binary, model, work):
    """With the default body and pixel limits: a batch of five ~16 MiB files (an 80 MiB body, spooled to disk) and a
    180 Mpx JPEG (decoded reduced) are answered 200; the JPEG's polygons are in its original size."""
    import cv2
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "tools", "demo"))
    import make_data

    spool = os.path.join(work, "spool")
    os.makedirs(spool, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(5):  # noise does not compress: ~16.5 MiB each
        p = os.path.join(work, "noise%d.png" % i)
        cv2.imwrite(p, rng.integers(0, 256, (2350, 2450, 3), dtype=np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 0])
        paths.append(p)
    sample, _ = make_data.make_sample(rng, height=120, width=150)
    huge = os.path.join(work, "huge.jpg")
    cv2.imwrite(huge, cv2.resize(sample, (15000, 12000), interpolation=cv2.INTER_LINEAR),
                [cv2.IMWRITE_JPEG_QUALITY, 80])
    # Default body and pixel limits. --max-decode-mib 64 is below the JPEG's full decode (180 MB):
    # only a reduced decode gets it through.
    s = Server(binary, model, "--spool-dir", spool, "--max-decode-mib", "64", log_dir=work)
    try:
        args = []
        for p in paths:
            args += ["-F", "files=@%s" % p]
        r = curl(s.url + "/api/v1/batch-segment", *args, max_time=120)
        body = r.json() or {}
        check(r.status == 200 and [x.get("success") for x in body.get("results", [])] == [True] * 5,
              "5 x ~16 MiB batch (%d bytes): 200, every file segmented (%s)"
              % (sum(os.path.getsize(p) for p in paths), r.status))
        r = segment(s, huge, max_time=120)
        j = r.json() or {}
        size = j.get("image_size", {})
        check(r.status == 200 and size == {"width": 15000, "height": 12000},
              "180 Mpx JPEG: 200 in its original size (%s, %s)" % (r.status, size))
        xs = [pt["x"] for poly in j.get("polygons", []) for pt in poly.get("points", [])]
        check(bool(xs) and max(xs) > 2000 and max(xs) <= 15000,
              "180 Mpx JPEG: polygons scaled back to the original size (max x %s)" % (max(xs) if xs else None))
        check(os.listdir(spool) == [], "nothing is left in the spool directory")
    finally:
        check(s.stop() == 0, "large inputs: server exits 0 on SIGTERM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--segment", default="")
    ap.add_argument("--work", default="")
    a = ap.parse_args()
    if not os.path.exists(a.model):
        print("SKIP: no demo model at %s" % a.model)
        return SKIP
    work = a.work or tempfile.mkdtemp(prefix="sluice-serve-")
    os.makedirs(work, exist_ok=True)
    os.makedirs(os.path.join(work, "images"), exist_ok=True)
    images = make_images(os.path.join(work, "images"), 32)
    segment_cli = a.segment if a.segment and os.path.isfile(a.segment) and os.access(a.segment, os.X_OK) else ""

    s = Server(a.server, a.model, "--max-body-bytes", str(4 * 1024 * 1024), "--max-pixels", str(1000 * 1000),
               "--max-batch-size", "16", log_dir=work)
    try:
        test_endpoints(s, images, work, segment_cli, a.model)
        test_errors(s, images, work)
    finally:
        check(s.stop() == 0, "server exits 0 on SIGTERM")
    test_large_inputs(a.server, a.model, work)
    test_concurrent_batching(a.server, a.model, images, work)
    test_timeouts_and_connection_cap(a.server, a.model, work)
    test_bad_settings(a.server, a.model)
    test_environment_and_health(a.server, a.model, work)
    test_queue_full_and_deadline(a.server, a.model, images, work)
    test_graceful_shutdown(a.server, a.model, images, work)

    print("%d failure(s)" % len(failures) + ("" if not failures else ": " + "; ".join(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
