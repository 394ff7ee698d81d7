#!/usr/bin/python3
"""Smoke test of a packed sluice_serve (bench/gpu/serve_package.sh) on this machine's CPU: the
binary, started with only the package's libraries and cuDNN on LD_LIBRARY_PATH by the caller,
segments a PNG, a JPEG, a TIFF and a BMP (200, the image's size in the answer), and refuses files
with the signatures of the formats whose libraries the package replaced by stubs -- NITF (GDAL),
DICOM (GDCM), OpenEXR -- with a 4xx while it keeps serving.

    LD_LIBRARY_PATH=STAGE/lib:/usr/local/cuda/lib bench/gpu/serve_smoke.py --server STAGE/bin/sluice_serve
Exit status 0 when every answer is as expected.
"""
import argparse
import http.client
import json
import os
import sys
import tempfile

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "serve"))
import load  # noqa: E402  (Server, multipart)


def post(port, body_bytes):
    body, ctype = load.multipart(body_bytes)
    c = http.client.HTTPConnection(load.HOST, port, timeout=60)
    c.request("POST", "/api/v1/segment", body=body, headers={"Content-Type": ctype})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, "examples", "data", "demo", "model.json"))
    a = ap.parse_args()
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    good = {ext: cv2.imencode(ext, image)[1].tobytes() for ext in (".png", ".jpg", ".tif", ".bmp")}
    bad = {
        "NITF (GDAL)": b"NITF02.10" + bytes(400),
        "DICOM (GDCM)": bytes(128) + b"DICM" + bytes(400),
        "OpenEXR": b"\x76\x2f\x31\x01" + bytes(400),
    }
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        server = load.Server(a.server, a.model, ["--backend", "cpu", "--warmup-runs", "0"],
                             os.path.join(tmp, "server.log"))
        try:
            server.wait_ready(120)
            for ext, data in good.items():
                status, answer = post(server.port, data)
                ok = status == 200 and json.loads(answer)["image_size"] == {"width": 120, "height": 90}
                failures += not ok
                print("%-14s %d %s" % (ext, status, "ok" if ok else answer[:200]))
            for name, data in bad.items():
                status, answer = post(server.port, data)
                ok = 400 <= status < 500
                failures += not ok
                print("%-14s %d %s" % (name, status, "refused, ok" if ok else answer[:200]))
            alive = server.proc.poll() is None and post(server.port, good[".png"])[0] == 200
            failures += not alive
            print("still serving: %s" % ("yes" if alive else "NO"))
        finally:
            server.stop()
            if failures:
                print(open(os.path.join(tmp, "server.log")).read()[-2000:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
