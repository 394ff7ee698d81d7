#!/usr/bin/python3
"""sluice_serve's Open Inference Protocol with NVIDIA's own client, tritonclient, run by ctest (label oip).

Makes (once, then reuses) a virtual environment with tritonclient[http,grpc], numpy and pillow from
PyPI -- when pip fails the test fails, it does not skip -- and re-runs itself inside it. Starts the
server with the demo model on loopback and checks over HTTP: liveness, readiness, server and model
metadata, the repository index; inference with binary tensors (BYTES files) and JSON tensors (UINT8
pixels), MASK / PROBABILITY / POLYGONS, the parameters, the raw network model demo_network; 32
concurrent clients; errors as tritonclient raises them; and that POLYGONS equal the segment CLI's
polygons on the sample images (examples/data/samples) with a MASK that agrees with them. When the
server accepts --grpc-port (its --help says so), the same checks run over gRPC.
    oip_tritonclient_test.py --server BIN --model MODEL_JSON --segment BIN --venv DIR [--work DIR]
"""
import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SAMPLES = os.path.join(ROOT, "examples", "data", "samples")
SKIP = 77
REQUIREMENTS = ["tritonclient[http,grpc]", "numpy", "pillow"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the demo model's normalisation (model.json)

failures = []


def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


# ---- the virtual environment ------------------------------------------------------------------------
def ensure_venv(venv):
    """The venv's python with the requirements importable; exits 1 (loudly) when pip cannot provide them."""
    python = os.path.join(venv, "bin", "python")
    probe = [python, "-c", "import tritonclient.http, tritonclient.grpc, numpy, PIL"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not os.path.exists(python):
        r = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
        if r.returncode != 0:
            print("FAIL cannot create the virtual environment %s:\n%s" % (venv, r.stderr), flush=True)
            sys.exit(1)
    r = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + REQUIREMENTS,
                       capture_output=True, text=True, timeout=1200)
    if r.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        print("FAIL pip could not install %s (needs network access to PyPI):\n%s%s"
              % (" ".join(REQUIREMENTS), r.stdout[-2000:], r.stderr[-4000:]), flush=True)
        sys.exit(1)
    return python


# ---- references ------------------------------------------------------------------------------------
def cli_results(segment_cli, model, images, work):
    """The segment CLI's result per image file name."""
    out = os.path.join(work, "cli.jsonl")
    cmd = [segment_cli, "--model-json", model, "--threshold", "0.5", "--output", out, "--quiet"] + images
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if not check(r.returncode == 0, "segment CLI runs (%s)" % r.stderr.strip()[-200:]):
        return {}
    records = [json.loads(line) for line in open(out) if line.strip()]
    return {os.path.basename(x.get("filename", "")): x for x in records}


def rasterize(polygons, width, height):
    """A 0/1 mask from the result's polygons: external outlines filled, holes cut out (their outline
    pixels stay, as the traced outline of a hole lies on object pixels)."""
    import numpy as np
    from PIL import Image, ImageDraw
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    for p in polygons:
        if p["type"] == "external":
            draw.polygon([(q["x"], q["y"]) for q in p["points"]], fill=1, outline=1)
    for p in polygons:
        if p["type"] == "internal" and len(p["points"]) >= 3:
            draw.polygon([(q["x"], q["y"]) for q in p["points"]], fill=0, outline=1)
    return np.asarray(img, dtype=np.uint8)


def iou(a, b):
    import numpy as np
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / float(union)


def same_polygons(a, b):
    """Identical polygons: count, order, type, parent, every point."""
    pa, pb = a.get("polygons", []), b.get("polygons", [])
    return len(pa) == len(pb) and all(x["type"] == y["type"] and x.get("parent_id") == y.get("parent_id")
                                      and x["points"] == y["points"] for x, y in zip(pa, pb))


# ---- one protocol's checks ---------------------------------------------------------------------------
class Protocol:
    """tritonclient's HTTP or gRPC module behind one interface (their InferInput/Output differ a little)."""

    def __init__(self, kind, url):
        if kind == "http":
            import tritonclient.http as tc
        else:
            import tritonclient.grpc as tc
        self.kind, self.tc, self.url = kind, tc, url
        self.client = self.new_client()

    def new_client(self):
        return self.tc.InferenceServerClient(url=self.url)

    def input(self, name, array, datatype, binary=True):
        x = self.tc.InferInput(name, list(array.shape), datatype)
        if self.kind == "http":
            x.set_data_from_numpy(array, binary_data=binary)
        else:
            x.set_data_from_numpy(array)
        return x

    def output(self, name, binary=True):
        return self.tc.InferRequestedOutput(name, binary_data=binary) if self.kind == "http" else self.tc.InferRequestedOutput(name)

    def metadata(self, model):
        md = self.client.get_model_metadata(model)
        if self.kind == "http":
            return md
        return {"name": md.name, "versions": list(md.versions), "platform": md.platform,
                "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in md.inputs],
                "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in md.outputs]}

    def server_metadata(self):
        md = self.client.get_server_metadata()
        return md if self.kind == "http" else {"name": md.name, "version": md.version, "extensions": list(md.extensions)}


def polygons_of(result, row=0):
    v = result.as_numpy("POLYGONS")[row]
    return json.loads(v.decode() if isinstance(v, bytes) else v)


def run_checks(p, files, cli, work):
    import numpy as np
    from PIL import Image
    tag = p.kind.upper()
    from tritonclient.utils import InferenceServerException
    exc = InferenceServerException

    check(p.client.is_server_live(), "%s: server live" % tag)
    check(p.client.is_server_ready(), "%s: server ready" % tag)
    md = p.server_metadata()
    check(md["name"] == "sluice" and "binary_tensor_data" in md["extensions"], "%s: server metadata %s" % (tag, md))
    m = p.metadata("demo")
    check(m["name"] == "demo" and m["versions"] == ["1"] and [t["name"] for t in m["inputs"]] == ["IMAGE"]
          and [t["name"] for t in m["outputs"]] == ["MASK", "PROBABILITY", "POLYGONS"], "%s: model metadata of demo" % tag)
    n = p.metadata("demo_network")
    check([int(d) for d in n["inputs"][0]["shape"]] == [-1, 3, 128, 128] and n["outputs"][0]["name"] == "LOGITS",
          "%s: model metadata of demo_network (%s)" % (tag, n["inputs"][0]["shape"]))
    check(p.client.is_model_ready("demo") and p.client.is_model_ready("demo_network", "1"), "%s: models ready" % tag)
    check(not p.client.is_model_ready("nope"), "%s: an unknown model is not ready" % tag)
    if p.kind == "http":
        index = p.client.get_model_repository_index()
        check(sorted(x["name"] for x in index) == ["demo", "demo_network"], "%s: repository index %s" % (tag, index))

    # Every sample as a BYTES file (binary tensors): POLYGONS equal the CLI's, MASK agrees with them.
    exact, masks = 0, {}
    for path in files:
        name = os.path.basename(path)
        data = open(path, "rb").read()
        r = p.client.infer("demo", [p.input("IMAGE", np.array([data], dtype=np.object_), "BYTES")],
                           outputs=[p.output("MASK"), p.output("POLYGONS", binary=False)])
        mask, result = r.as_numpy("MASK"), polygons_of(r)
        masks[name] = (mask, result)
        w, h = Image.open(path).size
        check(mask.dtype == np.uint8 and mask.shape == (1, h, w) and set(np.unique(mask)) <= {0, 1},
              "%s %s: MASK uint8 [1, %d, %d] of 0/1" % (tag, name, h, w))
        ref = cli.get(name)
        if ref is not None:
            same = same_polygons(ref, result)
            exact += same
            check(same and ref["image_size"] == result["image_size"], "%s %s: POLYGONS identical to the segment CLI's (%d)"
                  % (tag, name, len(result["polygons"])))
        agree = iou(rasterize(result["polygons"], w, h), mask[0])
        check(agree > 0.95, "%s %s: MASK agrees with the polygons (IoU %.4f)" % (tag, name, agree))

    # The same file as UINT8 RGB pixels in JSON (HTTP) / raw (gRPC): the same MASK and POLYGONS, exactly.
    name = os.path.basename(files[0])
    rgb = np.asarray(Image.open(files[0]).convert("RGB"), dtype=np.uint8)[None]
    r = p.client.infer("demo", [p.input("IMAGE", rgb, "UINT8", binary=False)],
                       outputs=[p.output("MASK", binary=False), p.output("POLYGONS", binary=False), p.output("PROBABILITY")])
    check(np.array_equal(r.as_numpy("MASK"), masks[name][0]), "%s %s: UINT8 pixels give the file's MASK" % (tag, name))
    check(same_polygons(polygons_of(r), masks[name][1]), "%s %s: UINT8 pixels give the file's POLYGONS" % (tag, name))
    prob = r.as_numpy("PROBABILITY")
    check(prob.dtype == np.float32 and prob.shape == rgb.shape[:3] and float(prob.min()) >= 0 and float(prob.max()) <= 1
          and np.array_equal((prob > 0.5).astype(np.uint8), r.as_numpy("MASK")),
          "%s: PROBABILITY FP32 in [0, 1], MASK = PROBABILITY > threshold" % tag)

    # Two rows in one request, the parameters.
    data = open(files[0], "rb").read()
    r = p.client.infer("demo", [p.input("IMAGE", np.array([data, data], dtype=np.object_), "BYTES")],
                       outputs=[p.output("POLYGONS")], parameters={"threshold": 0.7, "detect_holes": False})
    two = [polygons_of(r, i) for i in range(2)]
    check(len(r.as_numpy("POLYGONS")) == 2 and all(x["threshold_used"] == 0.7 for x in two)
          and not any(q["type"] == "internal" for x in two for q in x["polygons"]),
          "%s: two rows, threshold 0.7 and detect_holes false" % tag)

    # The raw network: a 128 x 128 image normalised here gives logits whose sigmoid is the file's PROBABILITY.
    small = Image.open(files[1]).convert("RGB").resize((128, 128), Image.BILINEAR)
    small_path = os.path.join(work, "small-%s.png" % p.kind)
    small.save(small_path)
    x = (np.asarray(small, dtype=np.float32) / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    r = p.client.infer("demo_network", [p.input("INPUT", x, "FP32")], outputs=[p.output("LOGITS")])
    logits = r.as_numpy("LOGITS")
    r2 = p.client.infer("demo", [p.input("IMAGE", np.array([open(small_path, "rb").read()], dtype=np.object_), "BYTES")],
                        outputs=[p.output("PROBABILITY")])
    worst = float(np.abs(1.0 / (1.0 + np.exp(-logits[0, 0].astype(np.float64))) - r2.as_numpy("PROBABILITY")[0]).max())
    check(logits.shape == (1, 1, 128, 128) and worst < 1e-4,
          "%s: demo_network's LOGITS, through a sigmoid, are demo's PROBABILITY (max diff %.2e)" % (tag, worst))

    # Errors as tritonclient raises them.
    def raises(fn, needle, what):
        try:
            fn()
            check(False, "%s: %s raises" % (tag, what))
        except exc as e:
            check(needle in str(e), "%s: %s raises (%s)" % (tag, what, str(e)[:160]))

    raises(lambda: p.client.infer("nope", [p.input("IMAGE", np.array([data], dtype=np.object_), "BYTES")]), "nope", "unknown model")
    raises(lambda: p.client.infer("demo", [p.input("PIXELS", np.array([data], dtype=np.object_), "BYTES")]), "PIXELS", "unknown input")
    raises(lambda: p.client.infer("demo", [p.input("IMAGE", np.array([b"not an image"], dtype=np.object_), "BYTES")]),
           "IMAGE[0]", "an undecodable image")
    raises(lambda: p.client.infer("demo", [p.input("IMAGE", np.array([data], dtype=np.object_), "BYTES")],
                                  parameters={"threshold": 3.0}), "threshold", "a threshold out of range")

    # 32 concurrent clients, each with its own connection: every one gets its own image's answer.
    def one(i):
        c = p.new_client()
        path = files[i % len(files)]
        d = open(path, "rb").read()
        rr = c.infer("demo", [p.input("IMAGE", np.array([d], dtype=np.object_), "BYTES")], outputs=[p.output("POLYGONS")])
        return os.path.basename(path), polygons_of(rr)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    right = sum(same_polygons(res, masks[name][1]) for name, res in answers)
    batches = max(res["processing_info"]["batch_size"] for _, res in answers)
    check(right == 32, "%s: 32 concurrent clients each get their own image's polygons (%d/32; largest batch %d)"
          % (tag, right, batches))
    return exact


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--segment", default="")
    ap.add_argument("--venv", required=True)
    ap.add_argument("--work", default="")
    ap.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not os.path.exists(a.model) or not os.path.isdir(SAMPLES):
        print("SKIP: no demo model at %s or no samples" % a.model)
        return SKIP
    if not a.in_venv:
        python = ensure_venv(a.venv)
        os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:] + ["--in-venv"])

    import live_server
    work = a.work or tempfile.mkdtemp(prefix="sluice-oip-")
    os.makedirs(work, exist_ok=True)
    files = [os.path.join(SAMPLES, f) for f in sorted(os.listdir(SAMPLES)) if f.endswith(".png")]
    cli = cli_results(a.segment, a.model, files, work) if a.segment and os.access(a.segment, os.X_OK) else {}
    check(len(cli) == len(files), "segment CLI results for all %d samples" % len(files))

    help_text = subprocess.run([a.server, "--help"], capture_output=True, text=True, timeout=60)
    grpc = "--grpc-port" in help_text.stdout + help_text.stderr
    cmd = [a.server, "--model", "demo=" + a.model, "--address", live_server.HOST, "--port", "0"]
    grpc_port = free_port() if grpc else 0
    if grpc:
        cmd += ["--grpc-port", str(grpc_port)]
    with open(os.path.join(work, "server.log"), "w") as log:
        proc, port = live_server.spawn(cmd, log)
        try:
            live_server.wait_ready(proc, port)
            exact = run_checks(Protocol("http", "%s:%d" % (live_server.HOST, port)), files, cli, work)
            print("HTTP: %d/%d samples with polygons identical to the CLI's" % (exact, len(files)), flush=True)
            if grpc:
                exact = run_checks(Protocol("grpc", "%s:%d" % (live_server.HOST, grpc_port)), files, cli, work)
                print("gRPC: %d/%d samples with polygons identical to the CLI's" % (exact, len(files)), flush=True)
            else:
                print("SKIP gRPC: %s has no --grpc-port" % os.path.basename(a.server), flush=True)
        finally:
            check(live_server.stop(proc) == 0, "server exits 0 on SIGTERM")
    print("%d failure(s)" % len(failures) + ("" if not failures else ": " + "; ".join(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
