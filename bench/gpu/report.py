"""Joins bench_gpu's results (JSON lines) with the PyTorch peer's (JSON) into one table: per network,
size, precision and batch -- images/s, p50 ms, peak memory, PyTorch's images/s in the matching mode
and the ratio, achieved TFLOP/s against the device's measured matrix-multiply peak for that
arithmetic, and the relative L2 error against PyTorch's strict fp32 output. Then the best batch of
each configuration, the issue's goal line for HRNet-W48 at 1024 in fp16, and the accuracy check:
fp32 within 1e-4, a reduced precision within twice PyTorch's own error in it (TF32, autocast fp16 /
bf16 against the same strict fp32 output). sluice's strict fp32 is compared for speed with
PyTorch's eager default, which runs convolutions in TF32: the tf32 rows are the like-for-like ones.

Run: python3 bench/gpu/report.py --sluice sluice.jsonl --torch torch.json [--out-dir DIR]
"""
import argparse
import json
import os

# sluice precision -> (PyTorch mode it is compared with, the peak it is measured against)
PEER = {"fp32": ("eager_fp32", "fp32"), "tf32": ("eager_fp32", "tf32"),
        "fp16": ("autocast_fp16_cl", "fp16"), "bf16": ("autocast_fp16_cl", "bf16")}


def fmt(v, spec):
    """format(v, spec), or a dash as wide as the spec asks."""
    if v is not None:
        return format(v, spec)
    width = spec.split(".")[0]
    return "-".rjust(int(width)) if width.isdigit() else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--torch", required=True)
    ap.add_argument("--out-dir")
    args = ap.parse_args()

    sluice = []
    if os.path.exists(args.sluice):
        with open(args.sluice) as f:
            sluice = [json.loads(line) for line in f if line.strip()]
    peer = {}
    if os.path.exists(args.torch):
        with open(args.torch) as f:
            peer = json.load(f)
    flops = peer.get("flops", {})
    peaks = peer.get("peak_tflops", {})
    torch_rows = {(r["network"], r["size"], r["mode"], r["batch"]): r for r in peer.get("results", [])}

    device = next((r.get("device") for r in sluice if r.get("device")), peer.get("device", "?"))
    lines = [f"device: {device}; PyTorch {peer.get('torch', '?')} (eager fp32 with cudnn.allow_tf32="
             f"{peer.get('cudnn_allow_tf32', '?')}); matmul peaks TFLOP/s: "
             + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())]
    header = (f"{'network':17s} {'size':>5s} {'prec':4s} {'batch':>5s} {'img/s':>8s} {'p50 ms':>8s} {'peak MiB':>9s} "
              f"{'torch img/s':>11s} {'torch mode':16s} {'ratio':>6s} {'TFLOP/s':>8s} {'% peak':>7s} {'rel L2':>9s}")
    lines += [header, "-" * len(header)]
    table = []
    for r in sluice:
        if "precision" not in r:
            continue
        mode, peak_key = PEER[r["precision"]]
        t = torch_rows.get((r["network"], r["size"], mode, r["batch"]), {})
        per_image = (flops.get(r["network"], {}) or {}).get(str(r["size"]))
        ok = r.get("status") == "ok"
        ips = r.get("images_per_s") if ok else None
        tips = t.get("images_per_s") if t.get("status") == "ok" else None
        tflops = ips * per_image / 1e12 if ips and per_image else None
        row = {"network": r["network"], "size": r["size"], "precision": r["precision"], "batch": r["batch"],
               "status": r.get("status"), "images_per_s": ips, "p50_ms": r.get("p50_ms") if ok else None,
               "peak_mib": r["peak_bytes"] / 2**20 if ok else None, "torch_mode": mode, "torch_images_per_s": tips,
               "torch_status": t.get("status"), "ratio": ips / tips if ips and tips else None, "tflops": tflops,
               "percent_of_peak": 100 * tflops / peaks[peak_key] if tflops and peaks.get(peak_key) else None,
               "rel_l2": r.get("rel_l2"), "torch_peak_mib": t["peak_bytes"] / 2**20 if t.get("peak_bytes") else None,
               "torch_rel_l2": t.get("rel_l2")}
        table.append(row)
        status = "" if ok else f"  [{r.get('status')}]"
        lines.append(f"{row['network']:17s} {row['size']:5d} {row['precision']:4s} {row['batch']:5d} "
                     f"{fmt(ips, '8.2f')} {fmt(row['p50_ms'], '8.1f')} {fmt(row['peak_mib'], '9.0f')} "
                     f"{fmt(tips, '11.2f')} {mode:16s} {fmt(row['ratio'], '6.2f')} {fmt(tflops, '8.1f')} "
                     f"{fmt(row['percent_of_peak'], '7.1f')} {fmt(row['rel_l2'], '9.2e')}{status}")

    lines += ["", "best batch per configuration (sluice vs PyTorch's best batch in the matching mode):"]
    best = {}
    for row in table:
        if row["images_per_s"] is None:
            continue
        key = (row["network"], row["size"], row["precision"])
        if key not in best or row["images_per_s"] > best[key]["images_per_s"]:
            best[key] = row
    for (net, size, prec), row in sorted(best.items()):
        mode = PEER[prec][0]
        tbest = max((r["images_per_s"] for (n, s, m, b), r in torch_rows.items()
                     if n == net and s == size and m == mode and r.get("status") == "ok"), default=None)
        ratio = row["images_per_s"] / tbest if tbest else None
        lines.append(f"  {net:17s} {size:5d} {prec:4s} batch {row['batch']:2d}: {row['images_per_s']:8.2f} img/s, "
                     f"{fmt(row['percent_of_peak'], '.1f')}% of peak; PyTorch {mode} best {fmt(tbest, '.2f')} img/s; "
                     f"ratio {fmt(ratio, '.2f')}")
        if net == "hrnet" and size == 1024 and prec == "fp16":
            goal = ratio is not None and ratio >= 2 and (row["percent_of_peak"] or 0) >= 40
            lines.append(f"  goal (HRNet-W48 1024 fp16: >= 2x PyTorch autocast channels_last, >= 40% of the "
                         f"tensor-core peak): {'MET' if goal else 'NOT MET'}")
    own = peer.get("precision_rel_l2", {})

    def accuracy_bound(row):
        if row["precision"] == "fp32":
            return 1e-4
        e = own.get(row["network"], {}).get(str(row["size"]), {}).get(row["precision"])
        if e is None and row["precision"] in ("tf32", "fp16"):  # results without precision_rel_l2
            e = row["torch_rel_l2"]  # eager (TF32 convolutions) / autocast fp16, same network, size, batch
        return 2 * e if e is not None else None

    checked = [(r, accuracy_bound(r)) for r in table if r["rel_l2"] is not None]
    bad = [f"{r['network']} {r['size']} {r['precision']} b{r['batch']}: {r['rel_l2']:.2e} > {b:.2e}"
           for r, b in checked if b is not None and r["rel_l2"] > b]
    unchecked = sum(1 for _, b in checked if b is None)
    if own:
        lines.append("PyTorch's own error vs its strict fp32 (network size: tf32 / fp16 / bf16): "
                     + "; ".join(f"{n} {s}: " + " / ".join(f"{e.get(p, float('nan')):.1e}" for p in ("tf32", "fp16", "bf16"))
                                 for n, sizes in own.items() for s, e in sizes.items()))
    lines.append(f"accuracy (fp32 <= 1e-4; tf32, fp16, bf16 <= 2x PyTorch's own error): "
                 f"{'all ' + str(len(checked) - unchecked) + ' rows within' if not bad else str(len(bad)) + ' rows outside: ' + '; '.join(bad)}"
                 f"{'; ' + str(unchecked) + ' rows without a PyTorch figure' if unchecked else ''}")
    text = "\n".join(lines)
    print(text)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "results.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(args.out_dir, "results.json"), "w") as f:
            json.dump({"device": device, "peak_tflops": peaks, "flops_per_image": flops, "rows": table,
                       "torch": peer.get("results", [])}, f, indent=1)


if __name__ == "__main__":
    main()
