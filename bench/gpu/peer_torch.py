"""The PyTorch peer of bench_gpu: exports the weights, inputs and fp32 reference outputs that both
sides run, measures the device's matrix-multiply peak, counts each network's FLOPs, and times the
PyTorch networks (tools/reference/sluice_reference) on the same GPU:

- "eager_fp32": float32, NCHW, cudnn.benchmark on, PyTorch's default TF32 setting for convolutions
  (recorded in the output);
- "autocast_fp16_cl": torch.autocast(float16), model and input channels_last.

Throughput is model only (input already on the GPU), per batch: p50 of timed iterations, each
synchronised. Work stops at --deadline-s; what is left is reported as "skipped".

Run: python3 bench/gpu/peer_torch.py --data DIR --out torch.json [--networks hrnet,...]
         [--sizes 1024,512] [--batches 1,2,4,8,16] [--deadline-s 200] [--export-only]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
from sluice_reference import models, safetensors  # noqa: E402

# The deployed configurations (tools/reference/README.md): HRNet-W48, ResUNetSmall's and CBAM-ResUNet's
# defaults, AdvancedResUNet at its deployed widths.
CONFIGS = {
    "hrnet": {},
    "resunet_small": {},
    "advanced_resunet": {"features": [64, 128, 256, 512]},
    "cbam_resunet": {},
}
SEED = 7
MODES = ("eager_fp32", "autocast_fp16_cl")


def f16_grid(t):
    return t.to(torch.float16).to(t.dtype)


def build(name):
    torch.manual_seed(SEED + list(CONFIGS).index(name))
    model = models.build(name, **CONFIGS[name]).float().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.InstanceNorm2d):  # random affine parameters, not PyTorch's 1 / 0
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        for p in model.parameters():  # weights on the float16 grid: stored as F16 exactly
            p.copy_(f16_grid(p))
    return model


def count_flops(model, x):
    """2 x multiply-accumulates of convolutions, transposed convolutions, linear layers and the
    self-attention's two matrix products, for input x."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.ConvTranspose2d):
            total[0] += 2 * inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += 2 * out.numel() * m.in_features
        elif type(m).__name__ == "LightweightSelfAttention":
            n, c, h, w = inp[0].shape
            total[0] += 2 * 2 * n * (h * w) * (h * w) * c  # q k^T and A v over all heads

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def sync():
    torch.cuda.synchronize()


def matmul_peaks():
    """TFLOP/s of an 8192^3 matrix product per arithmetic (the peak the report divides by)."""
    n = 8192
    out = {}
    saved = torch.backends.cuda.matmul.allow_tf32
    for name, dtype, tf32 in (("fp16", torch.float16, False), ("bf16", torch.bfloat16, False),
                              ("tf32", torch.float32, True), ("fp32", torch.float32, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        for _ in range(3):
            a @ b
        sync()
        reps = 10 if dtype != torch.float32 or tf32 else 4
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        out[name] = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12
        del a, b
    torch.backends.cuda.matmul.allow_tf32 = saved
    torch.cuda.empty_cache()
    return out


def rel_l2(a, ref):
    a = a.double().flatten()
    ref = ref.double().flatten()
    return float(((a - ref).norm() / ref.norm().clamp_min(1e-30)).item())


def own_errors(model, x, ref):
    """PyTorch's own relative L2 error against its strict fp32 output `ref` in the reduced
    precisions sluice offers: TF32 convolutions, autocast fp16 and bf16 (the report's accuracy
    bound for sluice in the same precision)."""
    errors = {}
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    errors["tf32"] = rel_l2(model(x).float().cpu(), ref)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        with torch.autocast("cuda", dtype=dtype):
            errors[name] = rel_l2(model(x).float().cpu(), ref)
    return errors


def export(args, nets, log):
    """Weights (F16, exact), one input per size, each network's fp32 output on it (TF32 off) and
    PyTorch's own error in each reduced precision."""
    os.makedirs(args.data, exist_ok=True)
    flops = {}
    precision_errors = {}
    gen = torch.Generator().manual_seed(SEED)
    inputs = {s: f16_grid(torch.randn(1, 3, s, s, generator=gen)) for s in args.sizes}
    outputs = {s: {} for s in args.sizes}
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    for name in nets:
        model = build(name)
        safetensors.write(os.path.join(args.data, f"{name}.safetensors"),
                          {k: v.to(torch.float16) for k, v in model.state_dict().items()},
                          {"network": name, "config": json.dumps(CONFIGS[name])})
        flops[name] = {str(s): None for s in args.sizes}  # counted on the GPU (too slow on a CPU at 1024)
        precision_errors[name] = {}
        if torch.cuda.is_available():
            model = model.cuda()
            with torch.no_grad():
                for s in args.sizes:
                    x = inputs[s].cuda()
                    flops[name][str(s)] = count_flops(model, x)
                    outputs[s][f"output_{name}"] = model(x).float().cpu()
                    precision_errors[name][str(s)] = own_errors(model, x, outputs[s][f"output_{name}"])
        log(f"exported {name}: {sum(p.numel() for p in model.parameters()):,} parameters, "
            + ", ".join(f"{s}: {flops[name][str(s)] or 0:.3e} FLOP" for s in args.sizes)
            + f"; own rel L2 {precision_errors[name]}")
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    torch.backends.cudnn.allow_tf32 = tf32
    for s in args.sizes:
        safetensors.write(os.path.join(args.data, f"input_{s}.safetensors"), {"input": inputs[s], **outputs[s]},
                          {"size": str(s)})
    return flops, precision_errors, inputs, outputs


def bench(args, nets, inputs, outputs, log, start):
    results = []
    torch.backends.cudnn.benchmark = True
    for name in nets:
        model = build(name).cuda()
        for mode in MODES:
            if mode == "autocast_fp16_cl":
                model = model.to(memory_format=torch.channels_last)
            for s in args.sizes:
                failed = False
                for b in args.batches:
                    r = {"impl": "torch", "network": name, "size": s, "mode": mode, "batch": b}
                    if failed or time.time() - start > args.deadline_s:
                        r["status"] = "oom" if failed else "skipped"
                        results.append(r)
                        continue
                    try:
                        x = inputs[s].cuda().repeat(b, 1, 1, 1)
                        if mode == "autocast_fp16_cl":
                            x = x.contiguous(memory_format=torch.channels_last)

                        def run():
                            if mode == "autocast_fp16_cl":
                                with torch.autocast("cuda", dtype=torch.float16):
                                    return model(x)
                            return model(x)

                        with torch.inference_mode():
                            y = run()  # warm-up (cudnn.benchmark plans here)
                            run()
                            sync()
                            ref = outputs[s].get(f"output_{name}")
                            if ref is not None:
                                r["rel_l2"] = rel_l2(y[:1].float().cpu(), ref)
                            del y
                            torch.cuda.reset_peak_memory_stats()
                            times = []
                            while len(times) < args.max_iterations and (
                                    len(times) < args.min_iterations or sum(times) < args.min_time_s):
                                t0 = time.perf_counter()
                                run()
                                sync()
                                times.append(time.perf_counter() - t0)
                        p50 = sorted(times)[len(times) // 2]
                        r.update(status="ok", p50_ms=p50 * 1e3, mean_ms=sum(times) / len(times) * 1e3,
                                 images_per_s=b / p50, iterations=len(times),
                                 peak_bytes=torch.cuda.max_memory_allocated())
                    except torch.cuda.OutOfMemoryError as e:
                        r.update(status="oom", error=str(e).splitlines()[0])
                        failed = True
                    except RuntimeError as e:
                        r.update(status="error", error=str(e).splitlines()[0])
                        failed = True
                    finally:
                        x = None
                        torch.cuda.empty_cache()
                    results.append(r)
                    log(json.dumps(r))
        del model
        torch.cuda.empty_cache()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder for the exported weights and inputs")
    ap.add_argument("--out", required=True, help="JSON results file")
    ap.add_argument("--networks", default=",".join(CONFIGS))
    ap.add_argument("--sizes", default="1024,512")
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--deadline-s", type=float, default=200)
    ap.add_argument("--min-time-s", type=float, default=0.5)
    ap.add_argument("--min-iterations", type=int, default=3)
    ap.add_argument("--max-iterations", type=int, default=20)
    ap.add_argument("--export-only", action="store_true", help="write the files, skip peak and timing")
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    nets = [n for n in args.networks.split(",") if n]
    for n in nets:
        if n not in CONFIGS:
            ap.error(f"unknown network {n}")
    start = time.time()

    def log(msg):
        print(f"[torch {time.time() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    gpu = torch.cuda.is_available()
    if not gpu and not args.export_only:
        log("no CUDA device visible to PyTorch: nothing to measure")
        sys.exit(2)
    flops, precision_errors, inputs, outputs = export(args, nets, log)
    report = {"torch": torch.__version__, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "flops": flops,
              "precision_rel_l2": precision_errors, "configs": CONFIGS}
    if gpu:
        report["device"] = torch.cuda.get_device_name()
    if not args.export_only:
        report["peak_tflops"] = matmul_peaks()
        log(f"matmul peaks (TFLOP/s): {report['peak_tflops']}")
        report["results"] = bench(args, nets, inputs, outputs, log, start)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
