#!/usr/bin/python3
"""Replay test of sluice_serve, run by ctest: the requests the spheroid segmentation application's
Node backend sends to its ML service, byte for byte in their layout, against a live sluice_serve with
the demo model, and a check of every answer field that backend reads, with its type and unit.

What the backend sends (its files, as facts of that application):
  backend/src/services/segmentationService.ts -- axios, baseURL SEGMENTATION_SERVICE_URL, timeout
    300000 ms, header Accept: application/json;
    GET  /api/v1/health          reads status == "healthy"
    POST /api/v1/segment         form-data: file (filename, contentType), model, threshold,
                                 detect_holes; headers of form-data plus x-request-id, x-user-id,
                                 x-operation and trace headers; reads success, polygons[] (points
                                 {x, y}, type external|internal, parent_id string, confidence),
                                 model_used, threshold_used, processing_time (seconds: it stores
                                 round(processing_time * 1000) as milliseconds), image_size {width,
                                 height} (numbers, required)
    POST /api/v1/batch-segment   form-data: files (repeated), then model, threshold, detect_holes;
                                 reads results[i] in file order: success, polygons, model_used,
                                 threshold_used, confidence, processing_time, image_size
  backend/src/services/metrics/metricsCalculator.ts -- axios, Content-Type: application/json,
    timeout 30000 ms;
    POST /api/calculate-metrics  {contour: [[x, y]...], holes: [[[x, y]...]...]}; requires the 18
                                 metric keys
    POST /api/disintegration-index {mask_polygons, core_polygons, image_width, image_height,
                                 pixel_size_um}; reads di, w1, reference, n_pixels, note, warnings,
                                 index_b and the panel fields (number or null)

The multipart bodies are laid out as Node's form-data package writes them (its boundary of 26
dashes and 24 digits, a Content-Type per file part, CRLF after each part), sent once with a
Content-Length (axios 1.x measures form-data) and once chunked (a stream of unknown length), in
chunks that split the boundary. Plain sockets, so that the bytes and the chunking are exact.

    replay_test.py --server BIN --model MODEL_JSON [--work DIR]
"""
import argparse
import atexit
import http.client
import json
import math
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import live_server

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SAMPLES = os.path.join(ROOT, "examples", "data", "samples")
HOST = "127.0.0.1"
SKIP = 77
AXIOS_UA = "axios/1.7.9"
METRIC_KEYS = ["Area", "Perimeter", "PerimeterWithHoles", "EquivalentDiameter", "Circularity", "FeretDiameterMax",
               "FeretDiameterMaxOrthogonalDistance", "FeretDiameterMin", "FeretAspectRatio",
               "LengthMajorDiameterThroughCentroid", "LengthMinorDiameterThroughCentroid", "BoundingBoxWidth",
               "BoundingBoxHeight", "Extent", "Compactness", "Convexity", "Solidity", "Sphericity"]
DI_PANEL = ["index_b", "reach_p90", "n_fragments", "largest_fragment_frac", "solidity", "n_core_components",
            "largest_core_component_frac", "core_centroid_shift", "core_fragmented", "unvalidated_regime",
            "below_validated_regime"]

failures = []
procs = []


def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


@atexit.register
def kill_all():
    for p in procs:
        if p.poll() is None:
            p.kill()


# ---- the wire -------------------------------------------------------------------------------------
def form_data_boundary(rng):
    return "-" * 26 + "".join(str(rng.randrange(10)) for _ in range(24))


def form_data(boundary, parts):
    """parts: (name, value) for a field, (name, bytes, filename, content_type) for a file."""
    out = b""
    for p in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        if len(p) == 4:
            name, data, filename, ctype = p
            out += ('Content-Disposition: form-data; name="%s"; filename="%s"\r\n' % (name, filename)).encode()
            out += ("Content-Type: %s\r\n\r\n" % ctype).encode() + data + b"\r\n"
        else:
            out += ('Content-Disposition: form-data; name="%s"\r\n\r\n' % p[0]).encode() + p[1].encode() + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def exchange(port, method, path, headers, body=b"", chunks=None, timeout=300):
    """One request on its own connection: the head, then the body whole (Content-Length) or as
    the given chunk sizes (Transfer-Encoding: chunked). Returns (status, headers, parsed JSON or
    None, seconds from the first byte sent to the answer read)."""
    head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\n" % (method, path, HOST, port)
    for k, v in headers:
        head += "%s: %s\r\n" % (k, v)
    if chunks is None:
        if method != "GET":
            head += "Content-Length: %d\r\n" % len(body)
        wire = [head.encode() + b"\r\n" + body]
    else:
        head += "Transfer-Encoding: chunked\r\n"
        wire, at = [head.encode() + b"\r\n"], 0
        sizes = iter(chunks)
        while at < len(body):
            n = min(next(sizes, 65536), len(body) - at)
            wire.append(b"%x\r\n" % n + body[at:at + n] + b"\r\n")
            at += n
        wire.append(b"0\r\n\r\n")
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        t0 = time.monotonic()
        for piece in wire:
            sock.sendall(piece)
        r = http.client.HTTPResponse(sock)
        r.begin()
        data = r.read()
        elapsed = time.monotonic() - t0
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed, elapsed


def axios_headers(content_type=None, accept="application/json", extra=()):
    h = [("Accept", accept)]
    if content_type:
        h.append(("Content-Type", content_type))
    h += [("User-Agent", AXIOS_UA), ("Accept-Encoding", "gzip, compress, deflate, br"), ("Connection", "keep-alive")]
    return h + list(extra)


def png_size(data):
    return struct.unpack(">II", data[16:24])


# ---- the checks of what the backend reads ---------------------------------------------------------
def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def polygon_problems(polys, width, height):
    """What the backend's saveSegmentationResultsInternal would drop or misread, as text."""
    out = []
    ids = {p.get("id") for p in polys}
    for i, p in enumerate(polys):
        pts = p.get("points")
        if not isinstance(pts, list) or len(pts) < 3:
            out.append("polygon %d: fewer than 3 points" % i)
            continue
        if not all(isinstance(q, dict) and is_number(q.get("x")) and is_number(q.get("y")) for q in pts):
            out.append("polygon %d: a point is not {x: number, y: number}" % i)
        elif not all(-1 <= q["x"] <= width + 1 and -1 <= q["y"] <= height + 1 for q in pts):
            out.append("polygon %d: a point outside the original image (not in its pixels)" % i)
        if p.get("type") not in ("external", "internal"):
            out.append("polygon %d: type %r" % (i, p.get("type")))
        if "parent_id" in p and (p["type"] != "internal" or not isinstance(p["parent_id"], str)
                                 or p["parent_id"] not in ids):
            out.append("polygon %d: parent_id %r" % (i, p.get("parent_id")))
        if not (is_number(p.get("confidence")) and 0 <= p["confidence"] <= 1):
            out.append("polygon %d: confidence %r" % (i, p.get("confidence")))
    return out


def check_image_result(j, what, size, model, threshold, elapsed):
    w, h = size
    check(isinstance(j, dict) and j.get("success") is True, what + ": success true")
    if not isinstance(j, dict):
        return 0
    polys = j.get("polygons")
    check(isinstance(polys, list), what + ": polygons is a list")
    polys = polys if isinstance(polys, list) else []
    problems = polygon_problems(polys, w, h)
    check(not problems, what + ": every polygon as the backend reads it %s" % problems[:3])
    check(j.get("model_used") == model, what + ": model_used %r" % j.get("model_used"))
    check(is_number(j.get("threshold_used")) and abs(j["threshold_used"] - threshold) < 1e-9,
          what + ": threshold_used %r is the number sent" % j.get("threshold_used"))
    pt = j.get("processing_time")
    # Seconds: positive and no more than the request's own round trip (milliseconds would exceed it).
    check(is_number(pt) and 0 < pt <= elapsed + 0.05,
          what + ": processing_time %r s within the round trip of %.3f s" % (pt, elapsed))
    check(j.get("image_size") == {"width": w, "height": h} and all(isinstance(v, int) for v in j["image_size"].values()),
          what + ": image_size %r is the upload's %dx%d" % (j.get("image_size"), w, h))
    check("confidence" not in j or j["confidence"] is None or is_number(j["confidence"]),
          what + ": confidence absent, null or a number")
    return len(polys)


# ---- the replays ----------------------------------------------------------------------------------
def replay_health(port):
    for path in ("/api/v1/health", "/health"):
        status, headers, j, _ = exchange(port, "GET", path, axios_headers())
        check(status == 200 and headers.get("content-type", "").startswith("application/json"),
              "GET %s: 200 JSON" % path)
        check(isinstance(j, dict) and j.get("status") == "healthy", "GET %s: status == 'healthy'" % path)
        check(isinstance(j, dict) and isinstance(j.get("timestamp"), str) and isinstance(j.get("device"), dict)
              and isinstance(j["device"].get("gpu_available"), bool), "GET %s: the service's fields" % path)


def replay_segment(port, rng, images, model):
    """requestSegmentation: one image, Content-Length and chunked, with the backend's headers."""
    polygons = 0
    for chunked in (False, True):
        for name, data in images[:3]:
            boundary = form_data_boundary(rng)
            body = form_data(boundary, [("file", data, name, "image/png"), ("model", model), ("threshold", "0.5"),
                                        ("detect_holes", "true")])
            extra = [("traceparent", "00-%032x-%016x-01" % (rng.getrandbits(128), rng.getrandbits(64))),
                     ("x-request-id", "req_%d_%08x" % (int(time.time() * 1000), rng.getrandbits(32))),
                     ("x-user-id", "5b3c7c1e-8a0f-4f55-9f0e-2d1c4b8a7e61"), ("x-operation", "segmentation_request")]
            chunks = [rng.choice([1, 7, 26, 27, 100, 4096, 65536]) for _ in range(4096)] if chunked else None
            status, headers, j, elapsed = exchange(
                port, "POST", "/api/v1/segment",
                axios_headers("multipart/form-data; boundary=" + boundary, extra=extra), body, chunks)
            what = "POST /api/v1/segment %s (%s)" % (name, "chunked" if chunked else "Content-Length")
            if check(status == 200, what + ": 200 (got %s: %r)" % (status, j)):
                polygons += check_image_result(j, what, png_size(data), "demo", 0.5, elapsed)
    check(polygons > 0, "POST /api/v1/segment: the sample spheroids give polygons (%d)" % polygons)
    # The backend's default model, not configured here: a 404 whose detail names what is.
    boundary = form_data_boundary(rng)
    body = form_data(boundary, [("file", images[0][1], images[0][0], "image/png"), ("model", "hrnet"),
                                ("threshold", "0.5"), ("detect_holes", "true")])
    status, _, j, _ = exchange(port, "POST", "/api/v1/segment",
                               axios_headers("multipart/form-data; boundary=" + boundary), body)
    check(status == 404 and isinstance(j, dict) and "cbam_resunet" in str(j.get("detail")),
          "POST /api/v1/segment model=hrnet (not served): 404 naming the models (%s)" % status)


def replay_batch(port, rng, images, model):
    """requestBatchSegmentation: the files, then model, threshold and detect_holes."""
    for chunked in (False, True):
        boundary = form_data_boundary(rng)
        parts = [("files", data, name, "image/png") for name, data in images]
        parts += [("model", model), ("threshold", "0.45"), ("detect_holes", "false")]
        body = form_data(boundary, parts)
        chunks = [rng.choice([3, 26, 1000, 65536]) for _ in range(8192)] if chunked else None
        status, _, j, elapsed = exchange(port, "POST", "/api/v1/batch-segment",
                                         axios_headers("multipart/form-data; boundary=" + boundary), body, chunks)
        what = "POST /api/v1/batch-segment (%s)" % ("chunked" if chunked else "Content-Length")
        if not check(status == 200 and isinstance(j, dict) and isinstance(j.get("results"), list),
                     what + ": 200 with results (got %s)" % status):
            continue
        results = j["results"]
        check(len(results) == len(images), what + ": one result per file")
        for i, (r, (name, data)) in enumerate(zip(results, images)):
            check(r.get("batch_index") == i and r.get("filename") == name, what + ": result %d is file %d" % (i, i))
            check_image_result(r, "%s result %d" % (what, i), png_size(data), "demo", 0.45, elapsed)
            check(all(p.get("type") == "external" for p in r.get("polygons", [])),
                  what + " result %d: detect_holes=false gives external outlines only" % i)
        check(is_number(j.get("processing_time")) and 0 < j["processing_time"] <= elapsed + 0.05,
              what + ": batch processing_time in seconds")


def replay_metrics(port):
    """calculatePolygonMetrics: a 100 x 100 square with a 20 x 20 hole."""
    body = json.dumps({"contour": [[10, 10], [110, 10], [110, 110], [10, 110]],
                       "holes": [[[50, 50], [70, 50], [70, 70], [50, 70]]]}).encode()
    status, _, j, _ = exchange(port, "POST", "/api/calculate-metrics",
                               axios_headers("application/json", accept="application/json, text/plain, */*"), body)
    check(status == 200 and isinstance(j, dict), "POST /api/calculate-metrics: 200 JSON")
    j = j if isinstance(j, dict) else {}
    missing = [k for k in METRIC_KEYS if k not in j]
    check(not missing, "POST /api/calculate-metrics: every key the backend requires (missing %s)" % missing)
    check(all(is_number(j.get(k)) for k in METRIC_KEYS if k in j), "POST /api/calculate-metrics: numbers")
    check(abs(j.get("Area", 0) - 9600) < 1 and abs(j.get("Perimeter", 0) - 400) < 1
          and abs(j.get("PerimeterWithHoles", 0) - 480) < 1,
          "POST /api/calculate-metrics: pixel units, the hole subtracted (Area %r)" % j.get("Area"))


def circle(cx, cy, r, n=96):
    return [[cx + r * math.cos(2 * math.pi * k / n), cy + r * math.sin(2 * math.pi * k / n)] for k in range(n)]


def replay_disintegration(port):
    """calculateImageDisintegrationIndex: the externals and the cores of one image."""
    body = json.dumps({"mask_polygons": [circle(256, 256, 160)], "core_polygons": [circle(256, 256, 100)],
                       "image_width": 512, "image_height": 512, "pixel_size_um": 1.28}).encode()
    status, _, j, _ = exchange(port, "POST", "/api/disintegration-index",
                               axios_headers("application/json", accept="application/json, text/plain, */*"), body)
    check(status == 200 and isinstance(j, dict), "POST /api/disintegration-index: 200 JSON")
    j = j if isinstance(j, dict) else {}
    check(j.get("reference") == "core", "POST /api/disintegration-index: reference 'core' (%r)" % j.get("reference"))
    check(is_number(j.get("di")) and 0 <= j["di"] < 1 and is_number(j.get("w1")) and j["w1"] >= 0,
          "POST /api/disintegration-index: di in [0, 1) and w1 >= 0")
    check(is_number(j.get("n_pixels")) and abs(j["n_pixels"] - math.pi * 160 ** 2) < 0.05 * math.pi * 160 ** 2,
          "POST /api/disintegration-index: n_pixels the foreground's pixels (%r)" % j.get("n_pixels"))
    check(isinstance(j.get("note", ""), str) and isinstance(j.get("warnings", []), list),
          "POST /api/disintegration-index: note a string, warnings a list")
    bad = [k for k in DI_PANEL if k not in j or not (j[k] is None or is_number(j[k]))]
    check(not bad, "POST /api/disintegration-index: panel fields numbers or null (bad %s)" % bad)


# ---- main -----------------------------------------------------------------------------------------
def start(binary, model, log):
    p, port = live_server.spawn([binary, "--model", "demo=" + model, "--address", HOST, "--port", "0"], log)
    procs.append(p)
    live_server.wait_ready(p, port)
    return p, port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", default="")
    a = ap.parse_args()
    if not os.path.exists(a.model) or not os.path.isdir(SAMPLES):
        print("SKIP: no demo model at %s or no samples" % a.model)
        return SKIP
    work = a.work or tempfile.mkdtemp(prefix="sluice-replay-")
    os.makedirs(work, exist_ok=True)
    images = [(f, open(os.path.join(SAMPLES, f), "rb").read()) for f in sorted(os.listdir(SAMPLES))
              if f.endswith(".png")][:4]
    rng = random.Random(20261204)
    with open(os.path.join(work, "server.log"), "w") as log:
        p, port = start(a.server, a.model, log)
        try:
            replay_health(port)
            # The service's name of the demo's network, as the backend would send it.
            replay_segment(port, rng, images, "cbam_resunet")
            replay_batch(port, rng, images, "cbam_resunet")
            replay_metrics(port)
            replay_disintegration(port)
        finally:
            p.send_signal(signal.SIGTERM)
            check(p.wait(60) == 0, "server exits 0 on SIGTERM")
    print("%d failure(s)" % len(failures) + ("" if not failures else ": " + "; ".join(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
