"""The PyTorch peer of bench_gpu: exports the weights, inputs and fp32 reference outputs that both
sides run, measures the device's matrix-multiply peak, counts each network's FLOPs, and times the
PyTorch networks (tools/reference/sluice_reference) on the same GPU:

- "eager_fp32": float32, NCHW, cudnn.benchmark on, PyTorch's default TF32 setting for convolutions
  (recorded in the output);
- "autocast_fp16_cl": torch.autocast(float16), model and input channels_last;
- "compile_fp16_cl": torch.compile (--compile-mode, default max-autotune, dynamic=False) of the
  autocast fp16 channels_last model, run under no_grad, for a few (network, size, batch) configurations only
  (--compile-configs): a max-autotune compile takes minutes per configuration. --compile-mode may
  list modes cheapest first ("default,max-autotune"): each configuration is timed in the best mode
  whose compile finished in the warm-up, recorded as the row's "compile_mode".

Throughput is model only (input already on the GPU), per batch: p50 of timed iterations, each
synchronised. Work stops at --deadline-s; what is left is reported as "skipped". The eager modes stop
--compile-reserve-s earlier so that the compiled configurations get their turn; each compile runs
under an alarm at the deadline (a compile cut short is reported "timeout" and ends the compile work),
and an Inductor failure is recorded per configuration as "error". torch.json is written after the
eager timings and again at the end, so a run killed during compilation keeps its eager rows.

Compilation is slow and mostly CPU work, so it is split in two runs sharing Inductor's on-disk caches
(FX graph cache, autotuning results, Triton kernels: all under TORCHINDUCTOR_CACHE_DIR):
  --compile-warm-only --out warm.json: compiles and runs each configuration once per mode, untimed,
      while the GPU is not being timed (check.sh starts it in the background during the build);
      warm.json is rewritten after every compile;
  --compile-warm-status warm.json (the timing run): compiles only what the warm-up finished (a cache
      hit: seconds instead of minutes), unless --compile-cold; the rest is "skipped".

Run: python3 bench/gpu/peer_torch.py --data DIR --out torch.json [--networks hrnet,...]
         [--sizes 1024,512] [--batches 1,2,4,8,16] [--deadline-s 200] [--export-only]
         [--compile-configs NET:SIZE:BATCH,...] [--compile-mode max-autotune]
         [--compile-warm-status warm.json] [--compile-reserve-s 90] [--compile-cold]
     python3 bench/gpu/peer_torch.py --compile-warm-only --out warm.json --deadline-s 150
         [--networks ...] [--sizes ...] [--compile-configs ...] [--compile-mode ...]
"""
import argparse
import contextlib
import json
import os
import signal
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
COMPILE_MODE_NAME = "compile_fp16_cl"
# (network, size, batch) compiled by default, most wanted first: the warm-up fills the caches in this
# order and is cut off when its time is up. HRNet-W48 1024 is the goal's configuration.
DEFAULT_COMPILE_CONFIGS = ("hrnet:1024:16,hrnet:1024:4,resunet_small:1024:16,"
                           "advanced_resunet:512:16,cbam_resunet:1024:16")
# Expected seconds for one configuration whose compile comes from the warm caches (Dynamo still
# traces the network; Inductor loads the compiled graph and kernels) plus its timing: what the eager
# modes leave free per configuration.
CACHED_COMPILE_GUESS_S = 25
MIN_COMPILE_WINDOW_S = 8  # a configuration is not started with less time than this left


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


def timing_settings():
    """Backend settings of every timed and compiled forward (the warm-up's compile must see the
    same ones for its cache entries to match the timing run's)."""
    torch.backends.cudnn.benchmark = True


def time_forward(run, args):
    """Per-iteration seconds of run() followed by a synchronisation: at least --min-iterations and
    --min-time-s, at most --max-iterations."""
    times = []
    while len(times) < args.max_iterations and (len(times) < args.min_iterations or sum(times) < args.min_time_s):
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def timing_fields(times, batch):
    p50 = sorted(times)[len(times) // 2]
    return dict(status="ok", p50_ms=p50 * 1e3, mean_ms=sum(times) / len(times) * 1e3, images_per_s=batch / p50,
                iterations=len(times), peak_bytes=torch.cuda.max_memory_allocated())


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


def bench(args, nets, inputs, outputs, log, start, stop_at):
    """The eager modes; rows not started by `stop_at` seconds after `start` are "skipped"."""
    results = []
    timing_settings()
    for name in nets:
        if time.time() - start > stop_at:  # not even the model's construction
            results += [{"impl": "torch", "network": name, "size": s, "mode": mode, "batch": b, "status": "skipped"}
                        for mode in MODES for s in args.sizes for b in args.batches]
            continue
        model = build(name).cuda()
        for mode in MODES:
            if mode == "autocast_fp16_cl":
                model = model.to(memory_format=torch.channels_last)
            for s in args.sizes:
                failed = False
                for b in args.batches:
                    r = {"impl": "torch", "network": name, "size": s, "mode": mode, "batch": b}
                    if failed or time.time() - start > stop_at:
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
                            times = time_forward(run, args)
                        r.update(timing_fields(times, b))
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


# ---- torch.compile ----

class CompileTimeout(BaseException):
    """Raised by the alarm at the deadline. A BaseException, so that Dynamo and Inductor, which wrap
    ordinary exceptions of a failed compile, let it through."""


@contextlib.contextmanager
def time_limit(seconds):
    """Raises CompileTimeout in the main thread after `seconds` (SIGALRM)."""
    def on_alarm(signum, frame):
        raise CompileTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_compile_configs(text):
    """"net:size:batch,..." -> [(net, size, batch)]; raises ValueError on a malformed item."""
    configs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        net, size, batch = item.split(":")
        configs.append((net, int(size), int(batch)))
    return configs


def error_text(e):
    """The first line that says something of an exception (Inductor's start with a blank line)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:500]


def reset_compiler():
    """Forget compiled code and CUDA graph pools of the previous configuration (each configuration
    is compiled from scratch, as a deployment would; the disk caches stay)."""
    import torch._dynamo
    torch._dynamo.reset()
    try:
        from torch._inductor import cudagraph_trees
        cudagraph_trees.reset_cudagraph_trees()
    except (ImportError, AttributeError):
        pass
    try:
        from torch._dynamo.utils import counters
        counters.clear()
    except ImportError:
        pass
    torch.cuda.empty_cache()


def compile_stats():
    """Graphs Dynamo produced and graph breaks it took, when its counters are available."""
    try:
        from torch._dynamo.utils import counters
        return {"graphs": counters["stats"].get("unique_graphs", 0),
                "graph_breaks": sum(counters["graph_break"].values())}
    except (ImportError, KeyError, AttributeError):
        return {}


def compiled_runner(name, x, compile_mode):
    """The compiled autocast fp16 channels_last model of `name` and a function running it on x: the
    same model, settings and call in the warm-up and the timing run, so that the cache keys match."""
    model = build(name).cuda().to(memory_format=torch.channels_last)
    compiled = torch.compile(model, mode=compile_mode, dynamic=False)
    mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)

    def run():
        if mark_step is not None:  # each call is a new step for CUDA graph trees (max-autotune)
            mark_step()
        with torch.autocast("cuda", dtype=torch.float16):
            return compiled(x)
    return run


def compile_input(inputs, size, batch):
    base = inputs[size] if inputs is not None else f16_grid(torch.randn(1, 3, size, size))
    return base.cuda().repeat(batch, 1, 1, 1).contiguous(memory_format=torch.channels_last)


def compile_one(args, name, size, batch, mode, inputs, ref, window_s, timed):
    """Compiles one configuration in `mode` under an alarm at `window_s` and runs it once (the
    compile), then, when `timed`, warms its CUDA graphs and times it. Returns the row's fields;
    CompileTimeout propagates."""
    r = {}
    x = run = None
    try:
        reset_compiler()
        x = compile_input(inputs, size, batch)
        with time_limit(window_s):
            run = compiled_runner(name, x, mode)  # model built outside no_grad: ordinary parameters
            # no_grad, not inference_mode: torch.compile's usual inference setting (inference tensors
            # have tripped Dynamo's fake tensors before)
            with torch.no_grad():
                t0 = time.perf_counter()
                y = run()
                sync()
                r["compile_s"] = time.perf_counter() - t0
                r.update(compile_stats())
                if timed:
                    if ref is not None:
                        r["rel_l2"] = rel_l2(y[:1].float().cpu(), ref)
                    del y
                    for _ in range(3):  # CUDA graph trees: warm-up call, recording, first replay
                        run()
                    sync()
                    torch.cuda.reset_peak_memory_stats()
                    r.update(timing_fields(time_forward(run, args), batch))
                else:
                    del y
                    r["status"] = "ok"
    except torch.cuda.OutOfMemoryError as e:
        r.update(status="oom", error=error_text(e))
    except Exception as e:  # Dynamo / Inductor / Triton failures of every kind: recorded, never fatal
        r.update(status="error", error=error_text(e))
    finally:
        x = run = None
        torch.cuda.empty_cache()
    return r


def read_warm_status(path):
    """(network, size, batch, compile mode) -> the warm-up's record; {} when the file is missing or
    unreadable (the warm-up was killed before its first write)."""
    try:
        with open(path) as f:
            return {(w["network"], w["size"], w["batch"], w["compile_mode"]): w for w in json.load(f).get("configs", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def plan_compile(args, nets):
    """The compile configurations in the order they will run, each in the best mode the warm-up
    finished (the modes are listed cheapest first): warmed first, then, with --compile-cold or without
    a warm-up, cold in the best mode. A row that already has a status is not tried."""
    warm = read_warm_status(args.compile_warm_status) if args.compile_warm_status else None
    planned = []
    for net, size, batch in args.compile_configs:
        row = {"impl": "torch", "network": net, "size": size, "mode": COMPILE_MODE_NAME, "batch": batch}
        records = {m: (warm or {}).get((net, size, batch, m)) for m in args.compile_modes}
        row["warm"] = {m: {k: w[k] for k in ("status", "compile_s", "error") if k in w}
                       for m, w in records.items() if w is not None}
        warmed = [m for m, w in records.items() if w is not None and w.get("status") == "ok"]
        failed = [w for w in records.values() if w is not None and w.get("status") in ("error", "oom")]
        if net not in nets or size not in args.sizes:
            row.update(status="skipped", error="network or size not in this run", compile_mode=args.compile_modes[-1])
        elif warmed:
            row.update(compile_mode=warmed[-1], cache="warm", warm_compile_s=records[warmed[-1]].get("compile_s"))
        elif warm is None or args.compile_cold:
            row.update(compile_mode=args.compile_modes[-1], cache="cold")
        elif failed:
            row.update(status=failed[-1]["status"], compile_mode=failed[-1].get("compile_mode"),
                       error="in the warm-up: " + str(failed[-1].get("error", "")))
        else:
            row.update(status="skipped", compile_mode=args.compile_modes[-1],
                       error="the warm-up did not compile it in its time; a cold compile would not fit")
        planned.append(row)
    return sorted(planned, key=lambda r: (r.get("cache") != "warm", "status" in r))


def compile_phase(args, planned, inputs, outputs, log, start, state):
    """Times the planned compile configurations until --deadline-s; returns their rows."""
    results = []
    timing_settings()
    for row in planned:
        r = dict(row)
        results.append(r)
        if "status" in r:
            log(json.dumps(r))
            continue
        window = args.deadline_s - (time.time() - start)
        if state.get("interrupted") or window < MIN_COMPILE_WINDOW_S:
            r.update(status="skipped", error="deadline")
            log(json.dumps(r))
            continue
        log(f"compiling {r['network']} {r['size']} batch {r['batch']} ({r['compile_mode']}, {r['cache']} cache, "
            f"{window:.0f}s left)")
        try:
            r.update(compile_one(args, r["network"], r["size"], r["batch"], r["compile_mode"], inputs,
                                 outputs[r["size"]].get(f"output_{r['network']}"), window, timed=True))
        except CompileTimeout:
            r.update(status="timeout", error=f"deadline reached after {window:.0f}s, during compile or timing")
            state["interrupted"] = True  # Inductor was stopped mid-way: no further compile in this process
        log(json.dumps(r))
    return results


def warm_only(args, nets, log, start):
    """--compile-warm-only: compiles and runs each configuration once in each mode (cheapest first),
    untimed, filling the disk caches; rewrites --out after every compile. Returns True when cut off by
    the deadline."""
    report = {"torch": torch.__version__, "compile_modes": args.compile_modes,
              "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"), "configs": []}
    interrupted = False
    timing_settings()
    for net, size, batch in args.compile_configs:
        for mode in args.compile_modes:
            w = {"network": net, "size": size, "batch": batch, "compile_mode": mode}
            window = args.deadline_s - (time.time() - start)
            if net not in nets or size not in args.sizes:
                w.update(status="skipped", error="network or size not in this run")
            elif interrupted or window < MIN_COMPILE_WINDOW_S:
                w.update(status="skipped", error="deadline")
            else:
                log(f"warming {net} {size} batch {batch} ({mode}, {window:.0f}s left)")
                try:
                    w.update(compile_one(args, net, size, batch, mode, None, None, window, timed=False))
                except CompileTimeout:
                    w.update(status="timeout", error=f"deadline reached after {window:.0f}s")
                    interrupted = True
            report["configs"].append(w)
            write_json(args.out, report)
            log(json.dumps(w))
    return interrupted


def write_json(path, obj):
    """Whole or not at all: a reader never sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="folder for the exported weights and inputs (not for --compile-warm-only)")
    ap.add_argument("--out", required=True, help="JSON results file")
    ap.add_argument("--networks", default=",".join(CONFIGS))
    ap.add_argument("--sizes", default="1024,512")
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--deadline-s", type=float, default=200)
    ap.add_argument("--min-time-s", type=float, default=0.5)
    ap.add_argument("--min-iterations", type=int, default=3)
    ap.add_argument("--max-iterations", type=int, default=20)
    ap.add_argument("--export-only", action="store_true", help="write the files, skip peak and timing")
    ap.add_argument("--compile-configs", default=DEFAULT_COMPILE_CONFIGS,
                    help="NET:SIZE:BATCH,... compiled with torch.compile, most wanted first; empty: none")
    ap.add_argument("--compile-mode", default="max-autotune",
                    help="torch.compile's mode, or modes cheapest first (default,max-autotune): the warm-up "
                         "compiles each in turn, the timing run times the best one the warm-up finished")
    ap.add_argument("--compile-warm-only", action="store_true",
                    help="compile and run each configuration once, untimed, to fill Inductor's disk caches")
    ap.add_argument("--compile-warm-status", help="the warm-up's --out: only what it compiled is compiled here")
    ap.add_argument("--compile-cold", action="store_true", help="also compile what the warm-up did not finish")
    ap.add_argument("--compile-reserve-s", type=float, default=90,
                    help="at most this much of --deadline-s is kept from the eager modes for compiled ones")
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    try:
        args.compile_configs = parse_compile_configs(args.compile_configs)
    except ValueError:
        ap.error(f"--compile-configs: NET:SIZE:BATCH,... expected, got {args.compile_configs!r}")
    args.compile_modes = [m for m in args.compile_mode.split(",") if m] or ["max-autotune"]
    nets = [n for n in args.networks.split(",") if n]
    for n in nets + [c[0] for c in args.compile_configs]:
        if n not in CONFIGS:
            ap.error(f"unknown network {n}")
    if not args.compile_warm_only and not args.data:
        ap.error("--data is required")
    start = time.time()

    def log(msg):
        print(f"[torch {time.time() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    gpu = torch.cuda.is_available()
    if not gpu and not args.export_only:
        log("no CUDA device visible to PyTorch: nothing to measure")
        sys.exit(2)
    if args.compile_warm_only:
        interrupted = warm_only(args, nets, log, start)
        log(f"warm-up done in {time.time() - start:.0f}s; wrote {args.out}")
        if interrupted:  # Inductor was stopped mid-way: leave without waiting for its workers
            sys.stderr.flush()
            os._exit(0)
        return
    flops, precision_errors, inputs, outputs = export(args, nets, log)
    report = {"torch": torch.__version__, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "flops": flops,
              "precision_rel_l2": precision_errors, "configs": CONFIGS}
    if gpu:
        report["device"] = torch.cuda.get_device_name()
    state = {}
    if not args.export_only:
        report["peak_tflops"] = matmul_peaks()
        log(f"matmul peaks (TFLOP/s): {report['peak_tflops']}")
        planned = plan_compile(args, nets)
        tried = sum(1 for r in planned if "status" not in r)
        # the eager modes are the main comparison: compiled configurations get at most 40% of the time
        reserve = min(args.compile_reserve_s, CACHED_COMPILE_GUESS_S * tried, 0.4 * args.deadline_s)
        report["compile"] = {"modes": args.compile_modes, "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
                             "warm_status": args.compile_warm_status, "reserve_s": reserve, "planned": tried}
        log(f"compile: {tried} of {len(planned)} configurations to try; eager modes stop {reserve:.0f}s early")
        report["results"] = bench(args, nets, inputs, outputs, log, start, args.deadline_s - reserve)
        write_json(args.out, report)  # the eager rows are safe whatever the compiles do
        log(f"wrote {args.out} (eager)")
        report["results"] += compile_phase(args, planned, inputs, outputs, log, start, state)
    write_json(args.out, report)
    log(f"wrote {args.out}")
    if state.get("interrupted"):
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
