#!/usr/bin/python3
"""Runs the container images' build script (deploy/build-server.sh, what the Dockerfiles' build stage
runs) and checks what it installed: sluice_serve, the demo model, and the list of runtime packages
the image's runtime stage installs (each one a real, installed package). Then the installed server,
with two models, must serve: ready on /v2/health/ready, one sample image segmented, the autoscaling
gauges in /metrics and each metric family's TYPE line there once.

    image_build_test.py --script deploy/build-server.sh --work DIR
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    prefix = os.path.join(a.work, "prefix")
    env = dict(os.environ, CCACHE_BASEDIR=ROOT, CCACHE_NOHASHDIR="true")
    subprocess.run([a.script, prefix, "--build-dir", os.path.join(a.work, "build")], check=True, env=env)

    server = os.path.join(prefix, "bin", "sluice_serve")
    model = os.path.join(prefix, "share", "sluice", "models", "demo", "model.json")
    check(os.access(server, os.X_OK), "bin/sluice_serve installed")
    weights = json.load(open(model))["weights"]
    check(os.path.exists(os.path.join(os.path.dirname(model), weights)), "the demo model and its weights installed")
    packages = open(os.path.join(prefix, "share", "sluice", "runtime-packages.txt")).read().split()
    check(any(p.startswith("libopencv-imgcodecs") for p in packages),
          "runtime packages name OpenCV's image codecs: %s" % " ".join(packages))
    not_installed = [p for p in packages if "install ok installed" not in subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout]
    check(not not_installed, "every runtime package is a real, installed package (not: %s)" % " ".join(not_installed))

    # Two models (the demo one under two names): /metrics must still name each family once.
    proc = subprocess.Popen([server, "--model", "demo=" + model, "--model", "other=" + model,
                             "--address", "127.0.0.1", "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+)/", proc.stdout.readline()).group(1))
        ready = False
        for _ in range(1200):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/v2/health/ready")
            if c.getresponse().status == 200:
                ready = True
                break
            time.sleep(0.1)
        check(ready, "the installed server becomes ready")
        png = open(os.path.join(ROOT, "examples", "data", "samples", "spheroids_0001.png"), "rb").read()
        body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
                b'Content-Type: image/png\r\n\r\n' + png + b"\r\n--b--\r\n")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("POST", "/api/v1/segment", body=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        r = c.getresponse()
        answer = r.read()
        check(r.status == 200 and "polygons" in json.loads(answer), "an image segmented (%d)" % r.status)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        for gauge in ("sluice_queue_depth", "sluice_batches_in_flight", "sluice_requests_in_flight"):
            check(re.search(r'^%s\{model="demo"\} 0$' % gauge, text, re.M) is not None, "/metrics has %s 0" % gauge)
        types = re.findall(r"^# TYPE (\S+) ", text, re.M)
        repeated = sorted({t for t in types if types.count(t) > 1})
        check(not repeated and 'sluice_queue_depth{model="other"}' in text,
              "/metrics of two models names each family once (repeated: %s)" % " ".join(repeated))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    check(proc.returncode == 0, "the server stops cleanly on SIGTERM")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
