#!/usr/bin/env python3
"""Network throughput of sluice's CPU backend (fp32 and bf16) beside the CPU inference runtimes:
PyTorch, ONNX Runtime, OpenVINO fp32 and OpenVINO bf16 (INFERENCE_PRECISION_HINT), on the same
weights and inputs, at the same thread count. Each network of tools/reference is built at its
deployed widths with random weights (pytorch_peer.py); sluice reads those weights as safetensors,
the runtimes as ONNX exported from the same module. One configuration (network, size, batch) at a
time, the engines one after the other, `--rounds` times round; each engine's time is the median
over its runs (and rounds). Every engine's output for the first image is compared with PyTorch's
float32 output (relative L2): they all compute the same network. Prints markdown tables.

Run (from the repository root, after building bench_models in a release build):
  /usr/bin/python3 bench/models/compare_peers.py --build build/release [--threads 2] [--reps 3]
      [--rounds 1] [--networks hrnet,resunet_small,advanced_resunet,cbam_resunet] [--sizes 256]
      [--batches 1,4] [--engines sluice_fp32,sluice_bf16,sluice_bf16_vdpbf16ps,torch,ort,ov_fp32,ov_bf16]
      [--venv build/peers-venv] [--cache build/peers-cache] [--json rows.json]
The runtimes live in a venv (pip: onnxruntime, openvino, onnx, numpy) that the first run makes and
later runs reuse; torch is Debian's (this script runs under /usr/bin/python3).
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import pytorch_peer  # noqa: E402
from compare import NETWORKS, find_binary, int_list, run_bench_models, write_case  # noqa: E402

# sluice_bf16 runs on AMX tiles where the CPU has them; sluice_bf16_vdpbf16ps keeps the AVX512_BF16
# kernel there (SLUICE_CPU_AMX=off), for the two side by side.
ENGINES = ["sluice_fp32", "sluice_bf16", "sluice_bf16_vdpbf16ps", "torch", "ort", "ov_fp32", "ov_bf16"]
VENV_PACKAGES = ["onnxruntime", "openvino", "onnx", "numpy"]


def ensure_venv(path):
    """The venv's python, made (and the runtimes installed) on first use."""
    python = os.path.join(path, "bin", "python")
    probe = [python, "-c", "import onnxruntime, openvino, onnx, numpy"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"making the peers' venv in {path} (pip: {' '.join(VENV_PACKAGES)})", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *VENV_PACKAGES], check=True)
    subprocess.run(probe, check=True)
    return python


def file_digest(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def export_onnx(model, size, path):
    """The module as ONNX (opset 17) for size x size inputs, any batch size; reused when present."""
    if os.path.exists(path):
        return path
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(model, x, path + ".part", opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    os.replace(path + ".part", path)
    return path


def relative_l2(a, ref):
    a = np.asarray(a, dtype=np.float64).ravel()
    ref = np.asarray(ref, dtype=np.float64).ravel()
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-30))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="times round the engines per configuration")
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--sizes", default="256")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--max-seconds", type=float, default=30.0,
                    help="stop repeating once an engine's timed runs used this long (per round)")
    ap.add_argument("--venv", default="build/peers-venv")
    ap.add_argument("--cache", default="build/peers-cache", help="ONNX exports, reused while the weights match")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    engines = args.engines.split(",")
    for e in engines:
        if e not in ENGINES:
            sys.exit(f"unknown engine {e}; engines: {','.join(ENGINES)}")
    binary = find_binary(args.build) if any(e.startswith("sluice") for e in engines) else None
    venv_python = ensure_venv(args.venv) if any(e in ("ort", "ov_fp32", "ov_bf16") for e in engines) else None
    os.makedirs(args.cache, exist_ok=True)
    sizes = int_list(args.sizes)
    batches = int_list(args.batches)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    rows = []
    with tempfile.TemporaryDirectory(prefix="sluice-peers-") as tmp:
        for name in args.networks.split(","):
            model, weights, inputs, tensors = write_case(name, tmp, sizes, max(batches))
            digest = file_digest(weights)
            for s in sizes:
                onnx_path = None
                if venv_python:
                    onnx_path = export_onnx(model, s, os.path.join(args.cache, f"{name}_{s}_{digest}.onnx"))
                expected = tensors[f"output_{s}"].numpy()
                for b in batches:
                    x = tensors[f"input_{s}"][:b].contiguous()
                    x_path = os.path.join(tmp, "x.npy")
                    np.save(x_path, x.numpy())
                    medians = {e: [] for e in engines}
                    errors, runs, kernels = {}, {e: 0 for e in engines}, {}
                    load = os.getloadavg()[0]
                    for _ in range(args.rounds):
                        for e in engines:
                            if e.startswith("sluice"):
                                engine_env = dict(env, SLUICE_CPU_AMX="off") if e.endswith("vdpbf16ps") else env
                                r = run_bench_models(binary, name, weights, inputs, args.threads, args.reps, s, b,
                                                     args.max_seconds, ["--precision", e.split("_")[1]], engine_env)
                                medians[e].append(r["median_s"])
                                runs[e] += r["runs"]
                                errors[e] = r["rel_l2_vs_torch"]
                                kernels[e] = r.get("gemm_kernel", r.get("precision"))
                                if r.get("precision") != e.split("_")[1]:
                                    print(f"note: {e} ran as {r.get('precision')}", file=sys.stderr)
                            elif e == "torch":
                                median, n = pytorch_peer.time_forward(model, x, args.reps, args.max_seconds)
                                medians[e].append(median)
                                runs[e] += n
                                errors[e] = 0.0
                            else:
                                y_path = os.path.join(tmp, f"y_{e}.npy")
                                out = subprocess.run(
                                    [venv_python, os.path.join(_HERE, "peer_runtime.py"), "--engine", e, "--onnx",
                                     onnx_path, "--input", x_path, "--threads", str(args.threads), "--reps",
                                     str(args.reps), "--max-seconds", str(args.max_seconds), "--output", y_path],
                                    check=True, capture_output=True, text=True, env=env).stdout
                                r = json.loads(out.strip().splitlines()[-1])
                                medians[e].append(r["median_s"])
                                runs[e] += r["runs"]
                                errors[e] = relative_l2(np.load(y_path), expected)
                    row = dict(network=name, size=s, batch=b, load=load, runs=runs, rel_l2=errors, kernels=kernels,
                               images_per_s={e: b / statistics.median(medians[e]) for e in engines})
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
            del model

    ips = lambda r, e: r["images_per_s"].get(e)  # noqa: E731
    ratios = [(a, b) for a, b in [("sluice_fp32", "ov_fp32"), ("sluice_fp32", "ort"), ("sluice_bf16", "ov_bf16"),
                                  ("sluice_fp32", "torch"), ("sluice_bf16", "sluice_fp32"),
                                  ("sluice_bf16", "sluice_bf16_vdpbf16ps")]
              if a in engines and b in engines]
    print(f"threads: {args.threads}, reps: {args.reps} x {args.rounds} round(s) (medians), torch {torch.__version__}; "
          f"images/s; load = 1-minute load average before the configuration")
    if rows and rows[0]["kernels"]:
        print("sluice's GEMM kernels: " + ", ".join(f"{e}: {k}" for e, k in rows[0]["kernels"].items()))
    print()
    print("| network | size | batch | " + " | ".join(engines) + " | " + " | ".join(f"{a} / {b}" for a, b in ratios) +
          " | load |")
    print("|---|---|---|" + "---|" * (len(engines) + len(ratios)) + "---|")
    for r in rows:
        cells = [f"{ips(r, e):.3f}" for e in engines] + [f"{ips(r, a) / ips(r, b):.2f}x" for a, b in ratios]
        print(f"| {r['network']} | {r['size']} | {r['batch']} | " + " | ".join(cells) + f" | {r['load']:.1f} |")
    print()
    print("Relative L2 of each engine's output (first image) against PyTorch float32:")
    print()
    others = [e for e in engines if e != "torch"]
    print("| network | size | batch | " + " | ".join(others) + " |")
    print("|---|---|---|" + "---|" * len(others))
    for r in rows:
        print(f"| {r['network']} | {r['size']} | {r['batch']} | " + " | ".join(f"{r['rel_l2'][e]:.1e}" for e in others) +
              " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
