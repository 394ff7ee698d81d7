#!/usr/bin/python3
"""Trains sluice's demo model: a reduced-width CBAM-ResUNet on synthetic spheroid images (make_data.py),
on the CPU, in minutes. Writes the weights as safetensors (PyTorch state-dict keys, float32) and
model.json, the description the segment CLI reads.

    /usr/bin/python3 tools/demo/train.py --out examples/data/demo --minutes 14 --wall-minutes 35

Preprocessing matches sluice's pipeline (include/sluice/vision/preprocess.hpp): bilinear resize of the 8-bit image
to the input size, RGB, / 255, ImageNet mean/std. The loss is BCE + soft Dice against the mask
area-resized to the input size (soft targets keep sub-pixel border information).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import make_data  # noqa: E402

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def build_network(features):
    """The PyTorch reference network (tools/reference), whose state-dict keys sluice loads."""
    from sluice_reference.models import build
    return build("cbam_resunet", features=list(features)), "sluice_reference"


def preprocess(image_rgb, size):
    """uint8 H x W x 3 RGB -> float32 3 x h x w, exactly as sluice's pipeline does."""
    resized = cv2.resize(image_rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    x = resized.astype(np.float32) / 255.0
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def to_rgb(image):
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def draw_set(seed, count, base, jitter):
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        h = base + int(rng.integers(-jitter, jitter + 1))
        w = base + int(rng.integers(-jitter, jitter + 1))
        image, mask = make_data.make_sample(rng, h, w)
        samples.append((to_rgb(image), mask))
    return samples


def save_safetensors(path, state, metadata):
    """The safetensors layout: u64 header length, JSON header (dtype, shape, data_offsets), raw data."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(state):
        array = state[name].detach().cpu().contiguous().numpy().astype("<f4")
        raw = array.tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path):
    """Reads a float32 safetensors file written by save_safetensors (to continue training)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    state = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{name}: only F32 is read here")
        b, e = info["data_offsets"]
        state[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"]).copy())
    return state


def predict_masks(net, samples, size, threshold=0.5):
    """The sluice pipeline in NumPy: preprocess, network, sigmoid, bilinear back, strict threshold."""
    net.eval()
    masks = []
    with torch.no_grad():
        for i in range(0, len(samples), 8):
            chunk = samples[i:i + 8]
            x = torch.from_numpy(np.stack([preprocess(img, size) for img, _ in chunk]))
            prob = torch.sigmoid(net(x))[:, 0].numpy()
            for (img, _), p in zip(chunk, prob):
                full = cv2.resize(p, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
                masks.append(full > threshold)
    net.train()
    return masks


def iou(pred, truth):
    truth = truth > 0
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else np.logical_and(pred, truth).sum() / union


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "..", "examples", "data", "demo"))
    parser.add_argument("--minutes", type=float, default=14.0,
                        help="training budget in CPU minutes of this process (all threads)")
    parser.add_argument("--wall-minutes", type=float, default=35.0,
                        help="and in wall-clock minutes, whichever ends first (a shared machine may be busy)")
    parser.add_argument("--crop", type=int, default=64,
                        help="train on random crops of this size first (4x cheaper at 64), then on whole inputs")
    parser.add_argument("--full-fraction", type=float, default=0.3,
                        help="the last fraction of the budget trains on whole inputs (instance-norm statistics)")
    parser.add_argument("--init", default="", help="continue from these safetensors weights")
    parser.add_argument("--cache", default="", help="an .npz file to keep the preprocessed training set in")
    parser.add_argument("--features", type=int, nargs=4, default=[8, 16, 32, 64])
    parser.add_argument("--input", type=int, default=128, help="square model input size")
    parser.add_argument("--train-images", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    size = (args.input, args.input)
    net, origin = build_network(args.features)
    if args.init:
        net.load_state_dict(load_safetensors(args.init), strict=True)
    print(f"network: cbam_resunet {args.features} from {origin}, "
          f"{sum(p.numel() for p in net.parameters())} parameters", flush=True)

    t0 = time.time()
    if args.cache and os.path.exists(args.cache):
        cached = np.load(args.cache)
        x_np, y_np = cached["x"], cached["y"]
    else:
        train = draw_set(args.seed, args.train_images, 256, 48)
        x_np = np.stack([preprocess(img, size) for img, _ in train])
        y_np = np.stack([cv2.resize(m.astype(np.float32) / 255.0, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                         for _, m in train])[:, None]
        if args.cache:
            np.savez(args.cache, x=x_np, y=y_np)
    x_all, y_all = torch.from_numpy(x_np), torch.from_numpy(y_np)
    held_out = draw_set(args.seed + 1000, 24, 256, 48)
    print(f"data: {len(x_all)} training images in {time.time() - t0:.0f} s", flush=True)

    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    cpu_budget = args.minutes * 60.0
    wall_budget = args.wall_minutes * 60.0
    cpu_start, wall_start = time.process_time(), time.time()
    step = 0
    rng = np.random.default_rng(args.seed)
    while True:
        # Progress through the budget: CPU or wall clock, whichever is further along.
        progress = max((time.process_time() - cpu_start) / cpu_budget, (time.time() - wall_start) / wall_budget)
        elapsed = time.process_time() - cpu_start
        if progress >= 1.0:
            break
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * progress))  # cosine over the budget
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.from_numpy(rng.integers(0, len(x_all), size=args.batch))
        x, y = x_all[idx], y_all[idx]
        if progress < 1.0 - args.full_fraction and args.crop < args.input:
            # Random crops: the network is fully convolutional, so most learning happens 4x cheaper.
            top, left = (int(v) for v in rng.integers(0, args.input - args.crop + 1, size=2))
            x = x[:, :, top:top + args.crop, left:left + args.crop]
            y = y[:, :, top:top + args.crop, left:left + args.crop]
        # Augment with the dihedral group: the task is rotation and reflection invariant.
        k = int(rng.integers(0, 4))
        x, y = torch.rot90(x, k, (2, 3)), torch.rot90(y, k, (2, 3))
        if rng.random() < 0.5:
            x, y = torch.flip(x, (3,)), torch.flip(y, (3,))
        logits = net(x)
        bce = F.binary_cross_entropy_with_logits(logits, y)
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
        loss = bce + dice.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            print(f"step {step} cpu {elapsed:.0f}s wall {time.time() - t0:.0f}s lr {lr:.2e} loss {loss.item():.4f}", flush=True)

    masks = predict_masks(net, held_out, size)
    scores = [iou(m, t) for m, (_, t) in zip(masks, held_out)]
    print(f"held-out mean IoU {np.mean(scores):.4f} (min {np.min(scores):.4f}) after {step} steps", flush=True)

    os.makedirs(args.out, exist_ok=True)
    weights = "cbam_resunet.safetensors"
    save_safetensors(os.path.join(args.out, weights), net.state_dict(),
                     {"network": "cbam_resunet", "features": json.dumps(args.features)})
    description = {
        "network": "cbam_resunet",
        "features": args.features,
        "weights": weights,
        "input_size": {"height": size[0], "width": size[1]},
        "mean": MEAN,
        "std": STD,
        "threshold": 0.5,
        "trained": {"steps": step, "batch": args.batch, "minutes": args.minutes,
                    "held_out_mean_iou": round(float(np.mean(scores)), 4), "seed": args.seed},
    }
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(description, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}/{weights} and model.json", flush=True)


if __name__ == "__main__":
    main()
