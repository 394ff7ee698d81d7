"""Checks of the GPU check's Python side that need no GPU (the GPU run happens once; a fault found
there costs the run):

- report.py on made-up results: every table (torch.compile column and table, per-operation profile
  with the convolutions' TFLOP/s, cuDNN workspace and CUDA graph comparisons) with figures computed
  here, and the same report from files without the newer fields (older runs) or missing altogether;
- peer_torch.py's control flow on the CPU, PyTorch's CUDA calls and torch.compile replaced by stand-ins
  (tiny inputs, 64 x 64): the warm-up's records, the timing run taking each configuration's best
  warmed mode, an Inductor failure recorded per configuration, a compile cut off at the deadline
  ("timeout", the rest "skipped", the eager rows kept), and the warm-up stopping at its deadline.

Run: /usr/bin/python3 bench/gpu/selftest.py      (a python3 with torch; exits 1 on the first failure)
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "peer_torch.py")
REPORT = os.path.join(HERE, "report.py")


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok: {what}")


# ---- report.py ----

def row(network, size, precision, batch, ips, **extra):
    r = {"impl": "sluice", "network": network, "size": size, "precision": precision, "batch": batch,
         "status": "ok", "images_per_s": ips, "p50_ms": batch / ips * 1e3, "peak_bytes": 2**30, "rel_l2": 1e-5}
    r.update(extra)
    return r


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def run_report(tmp, sluice, torch_json, extra=(), name="out"):
    out_dir = os.path.join(tmp, name)
    cmd = [sys.executable, REPORT, "--sluice", sluice, "--torch", torch_json, "--out-dir", out_dir]
    for e in extra:
        cmd += ["--sluice-extra", e]
    p = subprocess.run(cmd, capture_output=True, text=True)
    check(p.returncode == 0, f"report.py exits 0 ({name}){'' if p.returncode == 0 else ': ' + p.stderr[-2000:]}")
    with open(os.path.join(out_dir, "results.json")) as f:
        return p.stdout, json.load(f)


def test_report(tmp):
    flops = {"hrnet": {"1024": 1e12, "512": 2.5e11}, "resunet_small": {"1024": 5e11}}
    profile = [{"op": "instance_norm", "ms": 30.0, "calls": 100}, {"op": "conv", "ms": 60.0, "calls": 140},
               {"op": "add", "ms": 10.0, "calls": 40}]
    main_rows = [
        row("hrnet", 1024, "fp16", 1, 40.0, workspace_mib=1024, tag="", graphs=True, profile=profile),
        row("hrnet", 1024, "fp16", 16, 120.0, workspace_mib=1024, tag="", graphs=True, profile=profile),
        row("hrnet", 1024, "bf16", 16, 150.0, workspace_mib=1024, tag="", graphs=True),
        row("hrnet", 512, "fp16", 4, 100.0, workspace_mib=1024, tag="", graphs=True, profile=profile),
        row("hrnet", 512, "fp16", 16, 400.0, workspace_mib=1024, tag="", graphs=True, profile=profile),
        row("resunet_small", 1024, "tf32", 4, 25.0, workspace_mib=1024, tag="", graphs=True),
        row("resunet_small", 1024, "tf32", 16, 26.0, workspace_mib=1024, tag="", graphs=True),
        dict(row("resunet_small", 1024, "fp32", 16, 1.0, workspace_mib=1024, tag="", graphs=True), status="skipped"),
    ]
    ws_rows = [row("resunet_small", 1024, "tf32", 4, 50.0, workspace_mib=8192, tag="ws8192", graphs=True),
               row("resunet_small", 1024, "tf32", 16, 65.0, workspace_mib=8192, tag="ws8192", graphs=True),
               row("resunet_small", 1024, "fp32", 16, 14.0, workspace_mib=8192, tag="ws8192", graphs=True)]
    ws_base_rows = [row("resunet_small", 1024, "tf32", 16, 27.0, workspace_mib=1024, tag="ws1024", graphs=True),
                    row("resunet_small", 1024, "fp32", 16, 13.0, workspace_mib=1024, tag="ws1024", graphs=True)]
    launch_rows = [row("hrnet", 1024, "fp16", 1, 32.0, workspace_mib=1024, tag="eager_launch", graphs=False),
                   row("hrnet", 1024, "fp16", 16, 119.0, workspace_mib=1024, tag="eager_launch", graphs=False)]
    sluice = os.path.join(tmp, "sluice.jsonl")
    ws = os.path.join(tmp, "sluice_ws8192.jsonl")
    launch = os.path.join(tmp, "sluice_eager_launch.jsonl")
    write_jsonl(sluice, main_rows)
    write_jsonl(ws, ws_rows)
    ws_base = os.path.join(tmp, "sluice_ws1024.jsonl")
    write_jsonl(ws_base, ws_base_rows)
    write_jsonl(launch, launch_rows)
    with open(launch, "a") as f:
        f.write('{"impl": "sluice", "netw')  # a run killed mid-line
    torch_rows = [
        {"network": "hrnet", "size": 1024, "mode": "autocast_fp16_cl", "batch": 16, "status": "ok", "images_per_s": 60.0},
        {"network": "hrnet", "size": 1024, "mode": "autocast_fp16_cl", "batch": 1, "status": "ok", "images_per_s": 20.0},
        {"network": "hrnet", "size": 1024, "mode": "compile_fp16_cl", "batch": 16, "status": "ok", "images_per_s": 80.0,
         "compile_s": 21.0, "warm_compile_s": 140.0, "compile_mode": "max-autotune", "graph_breaks": 0, "rel_l2": 0.04},
        {"network": "hrnet", "size": 1024, "mode": "compile_fp16_cl", "batch": 4, "status": "skipped",
         "error": "deadline", "compile_mode": "max-autotune"},
        {"network": "cbam_resunet", "size": 1024, "mode": "compile_fp16_cl", "batch": 16, "status": "error",
         "error": "in the warm-up: BackendCompilerFailed: boom", "compile_mode": "default"},
    ]
    torch_json = os.path.join(tmp, "torch.json")
    with open(torch_json, "w") as f:
        json.dump({"torch": "2.11", "flops": flops, "peak_tflops": {"fp16": 800.0, "bf16": 800.0, "tf32": 400.0, "fp32": 50.0},
                   "results": torch_rows, "compile": {"modes": ["max-autotune"]}}, f)

    text, res = run_report(tmp, sluice, torch_json, [ws, ws_base, launch], "full")
    rows = {(r["network"], r["size"], r["precision"], r["batch"]): r for r in res["rows"]}
    check(len(res["rows"]) == len(main_rows), "main table holds the main run's rows only")
    h = rows[("hrnet", 1024, "fp16", 16)]
    check(h["compile_images_per_s"] == 80.0 and abs(h["compile_ratio"] - 1.5) < 1e-9 and abs(h["ratio"] - 2.0) < 1e-9,
          "fp16 row: ratio to autocast 2.0 and to torch.compile 1.5")
    b = rows[("hrnet", 1024, "bf16", 16)]
    check(abs(b["compile_ratio"] - 150 / 80) < 1e-9, "bf16 row compares against compile_fp16_cl")
    check(rows[("hrnet", 1024, "fp16", 1)]["compile_images_per_s"] is None, "no compile figure where that batch was not compiled")
    check("compile" in text.splitlines()[1], "compile column in the table header")
    check("torch.compile best 80.00 img/s (batch 16); ratio 1.50" in text, "best-batch line names torch.compile's best")
    comp = {(c["network"], c["batch"]): c for c in res["compile"]}
    check(abs(comp[("hrnet", 16)]["gain_over_eager"] - 80 / 60) < 1e-9 and comp[("hrnet", 16)]["warm_compile_s"] == 140.0,
          "compile table: gain over eager autocast and warm-up compile seconds")
    check("BackendCompilerFailed: boom" in text and comp[("cbam_resunet", 16)]["status"] == "error",
          "compile table shows the failed configuration's error")
    profs = {(p["network"], p["size"], p["batch"]): p for p in res["profiles"]}
    check(set(profs) == {("hrnet", 1024, 1), ("hrnet", 1024, 16), ("hrnet", 512, 16)},
          "profiles: best fp16 batch per network and size, and every HRNet 1024 fp16 batch")
    p = profs[("hrnet", 1024, 16)]
    check([o["op"] for o in p["ops"]] == ["conv", "instance_norm", "add"] and abs(p["ops"][0]["share"] - 0.6) < 1e-9,
          "profile sorted by time with the share of the profiled forward")
    # 16 images x 1e12 FLOP over 60 ms of convolutions = 266.7 TFLOP/s, 33.3% of the 800 TFLOP/s peak
    check(abs(p["conv_tflops"] - 16e12 / 0.060 / 1e12) < 1e-6 and abs(p["conv_percent_of_peak"] - 100 * p["conv_tflops"] / 800) < 1e-9,
          "conv TFLOP/s = all FLOPs over the conv time")
    check("convolutions alone: 266.7 TFLOP/s" in text, "conv TFLOP/s printed")
    wsc = {(w["precision"], w["batch"]): w for w in res["workspace_comparison"]}
    check(set(wsc) == {("tf32", 4), ("tf32", 16), ("fp32", 16)} and abs(wsc[("tf32", 4)]["other_over_main"] - 2.0) < 1e-9
          and wsc[("tf32", 4)]["workspace_mib_main"] == 1024 and wsc[("tf32", 4)]["workspace_mib_other"] == 8192,
          "workspace table: 1024 vs 8192 MiB per batch with the ratio")
    check(abs(wsc[("tf32", 16)]["other_over_main"] - 65 / 27) < 1e-9 and abs(wsc[("fp32", 16)]["other_over_main"] - 14 / 13) < 1e-9
          and wsc[("fp32", 16)]["tag_main"] == "ws1024",
          "workspace table: the dedicated 1024 MiB run stands in for the main run's rows (one skipped there)")
    gc = {g["batch"]: g for g in res["graphs_comparison"]}
    check(set(gc) == {1, 16} and abs(gc[1]["other_over_main"] - 0.8) < 1e-9, "graphs table: replayed vs launched")
    check("8192 MiB" in text and "launched" in text, "workspace and graphs tables printed")

    # older files: no tag / workspace_mib / graphs / profile fields, no compile rows
    old_rows = [{k: v for k, v in r.items() if k not in ("tag", "workspace_mib", "graphs", "profile")} for r in main_rows]
    old_sluice = os.path.join(tmp, "old.jsonl")
    write_jsonl(old_sluice, old_rows)
    old_ws = os.path.join(tmp, "old_ws.jsonl")
    write_jsonl(old_ws, [{k: v for k, v in r.items() if k not in ("tag", "workspace_mib", "graphs")} for r in ws_rows])
    old_torch = os.path.join(tmp, "old_torch.json")
    with open(old_torch, "w") as f:
        json.dump({"torch": "2.11", "flops": flops, "peak_tflops": {"fp16": 800.0},
                   "results": [r for r in torch_rows if r["mode"] != "compile_fp16_cl"]}, f)
    text, res = run_report(tmp, old_sluice, old_torch, [old_ws, os.path.join(tmp, "absent.jsonl")], "old")
    check(len(res["rows"]) == len(main_rows), "older files: the main table is whole (rows of the untagged extra file kept out)")
    check("compile" not in text.splitlines()[1] and not res["compile"] and not res["profiles"]
          and not res["workspace_comparison"] and not res["graphs_comparison"],
          "older files: no compile column, no profile / workspace / graphs tables")
    text, res = run_report(tmp, os.path.join(tmp, "none.jsonl"), os.path.join(tmp, "none.json"), [], "missing")
    check(res["rows"] == [] and "accuracy" in text, "missing files: an empty report, no crash")


# ---- peer_torch.py on the CPU with stand-ins ----

CHILD = r'''
import collections, os, signal, sys, time, types
import torch
sys.path.insert(0, os.environ["PEER_DIR"])
torch.cuda.is_available = lambda: True
torch.cuda.synchronize = lambda *a, **k: None
torch.cuda.empty_cache = lambda *a, **k: None
torch.cuda.reset_peak_memory_stats = lambda *a, **k: None
torch.cuda.max_memory_allocated = lambda *a, **k: 12345
torch.cuda.get_device_name = lambda *a, **k: "stand-in"
torch.cuda.is_bf16_supported = lambda *a, **k: True
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
behaviour = dict(item.split("=") for item in os.environ.get("FAKE_COMPILE", "").split(",") if item)
calls = []

def fake_compile(model, mode=None, dynamic=None):
    # behaviour "Class:mode=error|sleep|hang" (hang: deaf to the deadline's alarm, as a compile stuck
    # in native code would be; check.sh must stop it)
    what = behaviour.get(f"{type(model).__name__}:{mode}")
    assert dynamic is False
    if what == "hang":
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
    if what in ("sleep", "hang"):
        time.sleep(3600)
    if what == "error":
        raise RuntimeError("\nfake Inductor failure")
    def compiled(x):
        counters["stats"]["unique_graphs"] = 1
        return model(x)
    return compiled

torch.compile = fake_compile
counters = collections.defaultdict(collections.Counter)
dynamo = types.ModuleType("torch._dynamo")
dynamo.reset = lambda: None
utils = types.ModuleType("torch._dynamo.utils")
utils.counters = counters
dynamo.utils = utils
sys.modules["torch._dynamo"] = dynamo
sys.modules["torch._dynamo.utils"] = utils
torch._dynamo = dynamo
import peer_torch
peer_torch.matmul_peaks = lambda: {"fp16": 100.0, "bf16": 100.0, "tf32": 50.0, "fp32": 10.0}
sys.argv = ["peer_torch.py"] + sys.argv[1:]
peer_torch.main()
'''


def run_peer(tmp, args, fake="", timeout=600):
    env = dict(os.environ, PEER_DIR=HERE, FAKE_COMPILE=fake)
    p = subprocess.run([sys.executable, "-c", CHILD] + args, capture_output=True, text=True, env=env, timeout=timeout)
    check(p.returncode == 0, f"peer_torch.py {' '.join(a for a in args if not a.startswith(tmp))} exits 0"
          + ("" if p.returncode == 0 else ": " + p.stderr[-3000:]))
    return p.stderr


def test_peer(tmp):
    data = os.path.join(tmp, "data")
    common = ["--networks", "hrnet,resunet_small,cbam_resunet", "--sizes", "64", "--batches", "1,2",
              "--min-time-s", "0", "--min-iterations", "1", "--max-iterations", "2"]
    configs = ["--compile-configs", "hrnet:64:2,resunet_small:64:1,cbam_resunet:64:1,hrnet:512:1,advanced_resunet:64:1"]
    modes = ["--compile-mode", "default,max-autotune"]
    warm = os.path.join(tmp, "warm.json")
    run_peer(tmp, ["--compile-warm-only", "--out", warm, "--deadline-s", "300"] + common + configs + modes,
             fake="ResUNetSmall:max-autotune=error,CBAMResUNet:default=error,CBAMResUNet:max-autotune=error")
    with open(warm) as f:
        w = {(c["network"], c["size"], c["batch"], c["compile_mode"]): c for c in json.load(f)["configs"]}
    check(len(w) == 10, "warm-up: one record per configuration and mode")
    check(w[("hrnet", 64, 2, "default")]["status"] == "ok" and w[("hrnet", 64, 2, "max-autotune")]["status"] == "ok"
          and w[("hrnet", 64, 2, "max-autotune")]["compile_s"] >= 0, "warm-up: compiled and ran, with its seconds")
    check(w[("resunet_small", 64, 1, "max-autotune")]["status"] == "error"
          and "fake Inductor failure" in w[("resunet_small", 64, 1, "max-autotune")]["error"],
          "warm-up: an Inductor failure is recorded with its message")
    check(w[("hrnet", 512, 1, "default")]["status"] == "skipped" and w[("advanced_resunet", 64, 1, "default")]["status"] == "skipped",
          "warm-up: configurations outside the run's networks and sizes are skipped")

    out = os.path.join(tmp, "torch.json")
    run_peer(tmp, ["--data", data, "--out", out, "--deadline-s", "300", "--compile-warm-status", warm]
             + common + configs + modes)
    with open(out) as f:
        report = json.load(f)
    rows = report["results"]
    eager = [r for r in rows if r["mode"] != "compile_fp16_cl"]
    check(len(eager) == 3 * 2 * 2 and all(r["status"] == "ok" for r in eager), "timing run: every eager row measured")
    comp = {(r["network"], r["size"], r["batch"]): r for r in rows if r["mode"] == "compile_fp16_cl"}
    h = comp[("hrnet", 64, 2)]
    check(h["status"] == "ok" and h["compile_mode"] == "max-autotune" and h["cache"] == "warm" and h["images_per_s"] > 0
          and "rel_l2" in h and h.get("graphs") == 1 and "warm_compile_s" in h,
          "timing run: a warmed configuration timed in its best mode, with compile seconds, graphs and rel L2")
    check(comp[("resunet_small", 64, 1)]["status"] == "ok" and comp[("resunet_small", 64, 1)]["compile_mode"] == "default",
          "timing run: falls back to the cheaper mode where the better one failed in the warm-up")
    check(comp[("cbam_resunet", 64, 1)]["status"] == "error" and "in the warm-up" in comp[("cbam_resunet", 64, 1)]["error"],
          "timing run: a configuration that failed in the warm-up is reported, not retried")
    check(comp[("advanced_resunet", 64, 1)]["status"] == "skipped", "timing run: network outside the run skipped")

    # a compile cut off by the deadline: the eager rows stay, the compile row says "timeout"
    out2 = os.path.join(tmp, "torch_timeout.json")
    run_peer(tmp, ["--data", data, "--out", out2, "--deadline-s", "60", "--compile-reserve-s", "40",
                   "--compile-configs", "cbam_resunet:64:1,hrnet:64:1", "--compile-mode", "max-autotune"]
             + common, fake="CBAMResUNet:max-autotune=sleep")
    with open(out2) as f:
        rows = json.load(f)["results"]
    comp = {(r["network"], r["batch"]): r for r in rows if r["mode"] == "compile_fp16_cl"}
    check(comp[("cbam_resunet", 1)]["status"] == "timeout" and comp[("hrnet", 1)]["status"] == "skipped",
          "a compile past the deadline is cut off ('timeout') and the rest skipped; the run ends")
    check(sum(1 for r in rows if r["mode"] != "compile_fp16_cl") == 12, "... with every eager row in torch.json")

    # the warm-up stops at its own deadline
    warm2 = os.path.join(tmp, "warm2.json")
    run_peer(tmp, ["--compile-warm-only", "--out", warm2, "--deadline-s", "10", "--compile-mode", "max-autotune",
                   "--compile-configs", "hrnet:64:1,resunet_small:64:1"] + common, fake="HRNetV2:max-autotune=sleep")
    with open(warm2) as f:
        st = [c["status"] for c in json.load(f)["configs"]]
    check(st == ["timeout", "skipped"], "warm-up: cut off at its deadline, the rest skipped, its file written")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_report(tmp)
        try:
            import torch  # noqa: F401
        except ImportError:
            print("no torch in this python: peer_torch.py's checks not run")
            return
        test_peer(tmp)
    print("all checks passed")


if __name__ == "__main__":
    main()
