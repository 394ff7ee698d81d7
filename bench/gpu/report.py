"""Joins bench_gpu's results (JSON lines) with the PyTorch peer's (JSON) into one table: per network,
size, precision and batch -- images/s, p50 ms, peak memory, PyTorch's images/s in the matching mode
and the ratio, torch.compile's images/s and the ratio to it where that configuration was compiled,
achieved TFLOP/s against the device's measured matrix-multiply peak for that arithmetic, and the
relative L2 error against PyTorch's strict fp32 output. Then the best batch of each configuration,
the issue's goal line for HRNet-W48 at 1024 in fp16, the accuracy check: fp32 within 1e-4, a reduced
precision within twice PyTorch's own error in it (TF32, autocast fp16 / bf16 against the same strict
fp32 output). sluice's strict fp32 is compared for speed with PyTorch's eager default, which runs
convolutions in TF32: the tf32 rows are the like-for-like ones.

Further tables where their data exist (older files without the fields just leave them out):
- torch.compile per configuration: compile seconds (warm-up and timing run), images/s, gain over eager;
- per-operation profile of one forward (bench_gpu --profile: "profile": [{"op", "ms", "calls"}]) for
  the best fp16 batch of each network and size and every fp16 batch of HRNet 1024, with the
  convolutions' own TFLOP/s (all of the forward's FLOPs over the "conv" time);
- cuDNN workspace limit: rows of another run ("tag", "workspace_mib") beside the main run's;
- CUDA graphs: rows with "graphs": false beside the main run's replayed forwards.

The main table takes the main run's rows (no "tag", or ""); rows with a tag, in --sluice or in any
--sluice-extra file, feed only the comparisons.

Run: python3 bench/gpu/report.py --sluice sluice.jsonl --torch torch.json [--sluice-extra FILE ...]
         [--out-dir DIR]
"""
import argparse
import json
import os

# sluice precision -> (PyTorch mode it is compared with, the peak it is measured against)
PEER = {"fp32": ("eager_fp32", "fp32"), "tf32": ("eager_fp32", "tf32"),
        "fp16": ("autocast_fp16_cl", "fp16"), "bf16": ("autocast_fp16_cl", "bf16")}
# sluice precision -> the compiled PyTorch mode it is compared with
COMPILED_PEER = {"fp16": "compile_fp16_cl", "bf16": "compile_fp16_cl"}
COMPILE_MODE = "compile_fp16_cl"


def fmt(v, spec):
    """format(v, spec), or a dash as wide as the spec asks."""
    if v is not None:
        return format(v, spec)
    width = spec.split(".")[0]
    return "-".rjust(int(width)) if width.isdigit() else "-"


def ratio(a, b):
    return a / b if a and b else None


def read_jsonl(path):
    """JSON objects, one a line; [] for a missing file; a line that is not JSON (a run killed
    mid-write) is dropped."""
    rows = []
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    return rows


def config_key(r):
    return r.get("network"), r.get("size"), r.get("precision"), r.get("batch")


def ok_ips(r):
    return r.get("images_per_s") if r and r.get("status") == "ok" else None


def profile_ops(r):
    """The row's profile as [{"op", "ms", "calls"}], longest first; [] when absent or malformed. A
    mapping {op: ms} or {op: {"ms", "calls"}} is accepted as well."""
    prof = r.get("profile")
    if isinstance(prof, dict):
        prof = [dict(v, op=k) if isinstance(v, dict) else {"op": k, "ms": v} for k, v in prof.items()]
    if not isinstance(prof, list):
        return []
    ops = [dict(p, calls=as_int(p.get("calls"))) for p in prof if isinstance(p, dict) and isinstance(p.get("ms"), (int, float))]
    return sorted(ops, key=lambda p: -p["ms"])


def as_int(v):
    return int(v) if isinstance(v, (int, float)) else None


def main_table(sluice, torch_rows, flops, peaks, have_compile):
    header = (f"{'network':17s} {'size':>5s} {'prec':4s} {'batch':>5s} {'img/s':>8s} {'p50 ms':>8s} {'peak MiB':>9s} "
              f"{'torch img/s':>11s} {'torch mode':16s} {'ratio':>6s} "
              + (f"{'compile':>8s} {'ratio':>6s} " if have_compile else "")
              + f"{'TFLOP/s':>8s} {'% peak':>7s} {'rel L2':>9s}")
    lines = [header, "-" * len(header)]
    table = []
    for r in sluice:
        if r.get("precision") not in PEER:
            continue
        mode, peak_key = PEER[r["precision"]]
        t = torch_rows.get((r["network"], r["size"], mode, r["batch"]), {})
        c = torch_rows.get((r["network"], r["size"], COMPILED_PEER.get(r["precision"]), r["batch"]), {})
        per_image = (flops.get(r["network"], {}) or {}).get(str(r["size"]))
        ok = r.get("status") == "ok"
        ips = ok_ips(r)
        tips = ok_ips(t)
        cips = ok_ips(c)
        tflops = ips * per_image / 1e12 if ips and per_image else None
        row = {"network": r["network"], "size": r["size"], "precision": r["precision"], "batch": r["batch"],
               "status": r.get("status"), "images_per_s": ips, "p50_ms": r.get("p50_ms") if ok else None,
               "peak_mib": r["peak_bytes"] / 2**20 if ok and r.get("peak_bytes") is not None else None,
               "torch_mode": mode, "torch_images_per_s": tips,
               "torch_status": t.get("status"), "ratio": ratio(ips, tips), "tflops": tflops,
               "compile_images_per_s": cips, "compile_status": c.get("status"), "compile_ratio": ratio(ips, cips),
               "percent_of_peak": 100 * tflops / peaks[peak_key] if tflops and peaks.get(peak_key) else None,
               "rel_l2": r.get("rel_l2"), "torch_peak_mib": t["peak_bytes"] / 2**20 if t.get("peak_bytes") else None,
               "torch_rel_l2": t.get("rel_l2"), "workspace_mib": r.get("workspace_mib"), "graphs": r.get("graphs")}
        table.append(row)
        status = "" if ok else f"  [{r.get('status')}]"
        lines.append(f"{row['network']:17s} {row['size']:5d} {row['precision']:4s} {row['batch']:5d} "
                     f"{fmt(ips, '8.2f')} {fmt(row['p50_ms'], '8.1f')} {fmt(row['peak_mib'], '9.0f')} "
                     f"{fmt(tips, '11.2f')} {mode:16s} {fmt(row['ratio'], '6.2f')} "
                     + (f"{fmt(cips, '8.2f')} {fmt(row['compile_ratio'], '6.2f')} " if have_compile else "")
                     + f"{fmt(tflops, '8.1f')} {fmt(row['percent_of_peak'], '7.1f')} {fmt(row['rel_l2'], '9.2e')}{status}")
    return lines, table


def best_batches(table, torch_rows):
    lines = ["", "best batch per configuration (sluice vs PyTorch's best batch in the matching mode"
             + (", and vs torch.compile's best compiled batch" if any(m == COMPILE_MODE for _, _, m, _ in torch_rows)
                else "") + "):"]
    best = {}
    for row in table:
        if row["images_per_s"] is None:
            continue
        key = (row["network"], row["size"], row["precision"])
        if key not in best or row["images_per_s"] > best[key]["images_per_s"]:
            best[key] = row

    def peer_best(net, size, mode):
        return max(((r["images_per_s"], b) for (n, s, m, b), r in torch_rows.items()
                    if n == net and s == size and m == mode and ok_ips(r)), default=(None, None))

    for (net, size, prec), row in sorted(best.items()):
        mode = PEER[prec][0]
        tbest, _ = peer_best(net, size, mode)
        r = ratio(row["images_per_s"], tbest)
        line = (f"  {net:17s} {size:5d} {prec:4s} batch {row['batch']:2d}: {row['images_per_s']:8.2f} img/s, "
                f"{fmt(row['percent_of_peak'], '.1f')}% of peak; PyTorch {mode} best {fmt(tbest, '.2f')} img/s; "
                f"ratio {fmt(r, '.2f')}")
        cbest, cbatch = peer_best(net, size, COMPILED_PEER.get(prec))
        if cbest:
            line += f"; torch.compile best {cbest:.2f} img/s (batch {cbatch}); ratio {ratio(row['images_per_s'], cbest):.2f}"
        lines.append(line)
        if net == "hrnet" and size == 1024 and prec == "fp16":
            goal = r is not None and r >= 2 and (row["percent_of_peak"] or 0) >= 40
            lines.append(f"  goal (HRNet-W48 1024 fp16: >= 2x PyTorch autocast channels_last, >= 40% of the "
                         f"tensor-core peak): {'MET' if goal else 'NOT MET'}")
    return lines


def compile_table(peer, torch_rows):
    """torch.compile per configuration: how long it compiled and what it gained over eager."""
    rows = [r for r in peer.get("results", []) if r.get("mode") == COMPILE_MODE
            and r.get("error") != "network or size not in this run"]  # not asked for in this run
    if not rows:
        return [], []
    info = peer.get("compile", {})
    modes = info.get("modes") or [info.get("mode", "?")]
    lines = ["", f"torch.compile (modes tried: {', '.join(map(str, modes))}; autocast fp16 channels_last, dynamic=False; "
                 f"compile s: warm-up run / timing run from the warm caches):"]
    out = []
    for r in rows:
        eager = ok_ips(torch_rows.get((r["network"], r["size"], "autocast_fp16_cl", r["batch"]), {}))
        ips = ok_ips(r)
        c = {"network": r["network"], "size": r["size"], "batch": r["batch"], "status": r.get("status"),
             "images_per_s": ips, "p50_ms": r.get("p50_ms"), "compile_s": r.get("compile_s"),
             "warm_compile_s": r.get("warm_compile_s"), "eager_images_per_s": eager,
             "gain_over_eager": ratio(ips, eager), "graphs": r.get("graphs"), "graph_breaks": as_int(r.get("graph_breaks")),
             "rel_l2": r.get("rel_l2"), "error": r.get("error"), "compile_mode": r.get("compile_mode")}
        out.append(c)
        lines.append(f"  {c['network']:17s} {c['size']:5d} batch {c['batch']:2d}: {c['status'] or '?':8s} "
                     f"{fmt(ips, '8.2f')} img/s (eager autocast {fmt(eager, '.2f')}"
                     + (f", x{c['gain_over_eager']:.2f}" if c["gain_over_eager"] else "") + "); "
                     f"{c.get('compile_mode') or ''} "
                     f"compile {fmt(c['warm_compile_s'], '.1f')} / {fmt(c['compile_s'], '.1f')} s; "
                     f"graph breaks {fmt(c['graph_breaks'], 'd')}; rel L2 {fmt(c['rel_l2'], '.1e')}"
                     + (f"; {c['error']}" if c["error"] else ""))
    return lines, out


def profile_tables(sluice, flops, peaks):
    """The per-operation split of one forward: the best fp16 batch of each network and size, and every
    fp16 batch of HRNet 1024."""
    rows = [r for r in sluice if r.get("precision") == "fp16" and r.get("status") == "ok" and profile_ops(r)]
    if not rows:
        return [], []
    chosen = {}
    for r in rows:
        key = (r["network"], r["size"])
        if key not in chosen or r["images_per_s"] > chosen[key]["images_per_s"]:
            chosen[key] = r
    picked = {config_key(r): r for r in chosen.values()}
    for r in rows:
        if r["network"] == "hrnet" and r["size"] == 1024:
            picked[config_key(r)] = r
    lines = ["", "per-operation profile, fp16 (device time of one forward by backend operation: ms, share of the "
                 "profiled time, calls, GB/s = activation bytes read and written over the time); conv TFLOP/s = "
                 "all of the forward's FLOPs over the convolutions' time"]
    out = []
    for key in sorted(picked, key=lambda k: (k[0], -k[1], k[3])):
        r = picked[key]
        ops = profile_ops(r)
        total = sum(p["ms"] for p in ops)
        per_image = (flops.get(r["network"], {}) or {}).get(str(r["size"]))
        conv_ms = sum(p["ms"] for p in ops if p.get("op") in CONV_OPS)
        conv_tflops = per_image * r["batch"] / (conv_ms / 1e3) / 1e12 if per_image and conv_ms else None
        whole_tflops = per_image * r["batch"] / (total / 1e3) / 1e12 if per_image and total else None
        prof = {"network": r["network"], "size": r["size"], "batch": r["batch"], "p50_ms": r.get("p50_ms"),
                "profiled_ms": total, "conv_ms": conv_ms, "conv_tflops": conv_tflops,
                "conv_percent_of_peak": 100 * conv_tflops / peaks["fp16"] if conv_tflops and peaks.get("fp16") else None,
                "ops": [{"op": p.get("op"), "ms": p["ms"], "share": p["ms"] / total if total else None,
                         "calls": p.get("calls"),
                         "gb_per_s": p["bytes"] / (p["ms"] / 1e3) / 1e9 if p.get("bytes") and p["ms"] else None}
                        for p in ops]}
        out.append(prof)
        lines.append(f"  {r['network']} {r['size']} fp16 batch {r['batch']}: {total:.1f} ms profiled, "
                     f"p50 {fmt(r.get('p50_ms'), '.1f')} ms")
        for p in prof["ops"]:
            lines.append(f"    {str(p['op']):22s} {p['ms']:9.2f} ms {fmt(100 * p['share'] if p['share'] is not None else None, '6.1f')}%"
                         f" {fmt(p['calls'], '7d')} calls {fmt(p['gb_per_s'], '8.0f')} GB/s")
        if conv_tflops:
            lines.append(f"    convolutions alone: {conv_tflops:.1f} TFLOP/s during the conv time "
                         f"({fmt(prof['conv_percent_of_peak'], '.1f')}% of the fp16 peak) vs "
                         f"{fmt(whole_tflops, '.1f')} TFLOP/s over the profiled forward; the other "
                         f"{100 * (1 - conv_ms / total):.0f}% of the time is the memory-bound rest")
    return lines, out


# Operations whose FLOPs peer_torch.py counts: the convolutions (transposed ones too).
CONV_OPS = ("conv", "conv2d", "conv_transpose2x2")


def extra_comparison(main_rows, extra_rows, field, title, label, admit):
    """For each network, size, precision and batch that another run measured: images/s at the main
    run's value of `field` beside images/s at each other value, and other / main. A tagged row stands
    in for the main run's at the same value (it ran next to the row it is compared with); `admit`
    keeps out rows that differ in something else too."""
    values = [r.get(field) for r in main_rows if r.get(field) is not None]
    if not values:
        return [], []
    base = max(set(values), key=values.count)  # the main run's setting
    by_key = {}
    for r in main_rows + extra_rows:  # tagged rows last: they replace the main run's
        if r.get(field) is not None and admit(r):
            by_key.setdefault(config_key(r), {})[r[field]] = r
    pairs = [(d[base], d[v]) for d in by_key.values() if base in d for v in d if v != base
             and (d[base].get("tag") or d[v].get("tag"))]
    if not pairs:
        return [], []
    lines = ["", title]
    out = []
    for m, e in sorted(pairs, key=lambda p: (p[0]["network"], -p[0]["size"], p[0]["precision"], p[0]["batch"])):
        a, b = ok_ips(m), ok_ips(e)
        c = {"network": m["network"], "size": m["size"], "precision": m["precision"], "batch": m["batch"],
             "tag_main": m.get("tag") or "", "tag_other": e.get("tag") or "", field + "_main": m.get(field),
             field + "_other": e.get(field), "images_per_s_main": a, "images_per_s_other": b,
             "other_over_main": ratio(b, a)}
        out.append(c)
        lines.append(f"  {m['network']:17s} {m['size']:5d} {m['precision']:4s} batch {m['batch']:2d}: "
                     f"{label(m.get(field))} {fmt(a, '8.2f')} img/s{'' if a else ' [' + str(m.get('status')) + ']'}, "
                     f"{label(e.get(field))} {fmt(b, '8.2f')} img/s{'' if b else ' [' + str(e.get('status')) + ']'}; "
                     f"ratio {fmt(c['other_over_main'], '.2f')}")
    return lines, out


def accuracy(table, peer):
    own = peer.get("precision_rel_l2", {})

    def accuracy_bound(row):
        if row["precision"] == "fp32":
            return 1e-4
        e = own.get(row["network"], {}).get(str(row["size"]), {}).get(row["precision"])
        if e is None and row["precision"] in ("tf32", "fp16"):  # results without precision_rel_l2
            e = row["torch_rel_l2"]  # eager (TF32 convolutions) / autocast fp16, same network, size, batch
        return 2 * e if e is not None else None

    lines = []
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
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", required=True, help="bench_gpu's main run (JSON lines)")
    ap.add_argument("--sluice-extra", action="append", default=[],
                    help="another bench_gpu run with a tag (workspace, eager launch), for the comparisons")
    ap.add_argument("--torch", required=True)
    ap.add_argument("--out-dir")
    args = ap.parse_args()

    all_rows = read_jsonl(args.sluice)
    for path in args.sluice_extra:
        all_rows += [dict(r, tag=r.get("tag") or os.path.splitext(os.path.basename(path))[0]) for r in read_jsonl(path)]
    sluice = [r for r in all_rows if not r.get("tag")]
    extra = [r for r in all_rows if r.get("tag") and r.get("precision") in PEER]
    peer = {}
    if os.path.exists(args.torch):
        with open(args.torch) as f:
            peer = json.load(f)
    flops = peer.get("flops", {})
    peaks = peer.get("peak_tflops", {})
    torch_rows = {(r["network"], r["size"], r["mode"], r["batch"]): r for r in peer.get("results", [])}
    have_compile = any(m == COMPILE_MODE for _, _, m, _ in torch_rows)

    device = next((r.get("device") for r in all_rows if r.get("device")), peer.get("device", "?"))
    lines = [f"device: {device}; PyTorch {peer.get('torch', '?')} (eager fp32 with cudnn.allow_tf32="
             f"{peer.get('cudnn_allow_tf32', '?')}); matmul peaks TFLOP/s: "
             + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())]
    table_lines, table = main_table(sluice, torch_rows, flops, peaks, have_compile)
    lines += table_lines
    lines += best_batches(table, torch_rows)
    lines += accuracy(table, peer)
    compile_lines, compiled = compile_table(peer, torch_rows)
    lines += compile_lines
    profile_lines, profiles = profile_tables(sluice, flops, peaks)
    lines += profile_lines
    ws_lines, workspace = extra_comparison(
        sluice, extra, "workspace_mib", "cuDNN workspace limit per convolution (the main run's limit vs another; "
        "ratio other / main):", lambda v: f"{v} MiB", lambda r: r.get("graphs") is not False)
    lines += ws_lines
    main_ws = {r.get("workspace_mib") for r in sluice}
    graph_lines, graphs = extra_comparison(
        sluice, extra, "graphs", "CUDA graphs (forward replayed from a captured graph vs launched op by op; "
        "ratio other / main):", lambda v: "graph" if v else "launched", lambda r: r.get("workspace_mib") in main_ws)
    lines += graph_lines
    text = "\n".join(lines)
    print(text)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "results.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(args.out_dir, "results.json"), "w") as f:
            json.dump({"device": device, "peak_tflops": peaks, "flops_per_image": flops, "rows": table,
                       "torch": peer.get("results", []), "compile": compiled, "profiles": profiles,
                       "workspace_comparison": workspace, "graphs_comparison": graphs,
                       "other_runs": extra}, f, indent=1)


if __name__ == "__main__":
    main()
