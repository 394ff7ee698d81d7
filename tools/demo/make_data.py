#!/usr/bin/python3
"""Synthetic spheroid microscopy images with ground-truth masks, for the sluice demo model.

Each image holds several non-overlapping blobs ("spheroids") on an uneven background: round or
irregular outlines with a rough, textured border, brighter or darker than the background, some
with a hole (a necrotic core that shows background through it). Then blur and noise. Everything
is drawn from one seeded generator, so a seed names a data set.

    make_data.py --out DIR --count N --seed S [--width W --height H] [--jitter PX]

writes DIR/images/NNNN.png (8-bit, gray or RGB) and DIR/masks/NNNN.png (0 or 255).
The functions are imported by train.py, which draws its training set in memory.
"""
import argparse
import math
import os

import cv2
import numpy as np


def smooth_noise(rng, height, width, scale):
    """Gaussian-blurred white noise with structures about `scale` pixels wide, scaled to [-1, 1]."""
    small_h = max(2, int(height / scale) + 2)
    small_w = max(2, int(width / scale) + 2)
    coarse = rng.standard_normal((small_h, small_w)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    peak = float(np.abs(field).max()) or 1.0
    return field / peak


def blob_radius(rng, base, irregular):
    """Harmonics of a polar outline r(theta) = base * (1 + sum a_k cos(k theta + phi_k))."""
    harmonics = []
    if irregular:
        for k in range(2, 7):
            harmonics.append((k, rng.uniform(0.02, 0.16) / math.sqrt(k - 1), rng.uniform(0, 2 * math.pi)))
    else:
        harmonics.append((2, rng.uniform(0.0, 0.12), rng.uniform(0, 2 * math.pi)))  # slightly elliptic
    # A rough border: many small high-frequency wiggles.
    for k in rng.integers(9, 24, size=4):
        harmonics.append((int(k), rng.uniform(0.0, 0.025), rng.uniform(0, 2 * math.pi)))
    return base, harmonics


def outline(theta, base, harmonics):
    r = np.ones_like(theta)
    for k, a, phi in harmonics:
        r += a * np.cos(k * theta + phi)
    return base * r


def make_sample(rng, height=256, width=256, gray=None):
    """One image (uint8, H x W or H x W x 3) and its mask (uint8, 0 or 255)."""
    if gray is None:
        gray = rng.random() < 0.7
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    short = min(height, width)

    # Uneven background: a tilted plane, a vignette and large smooth blotches.
    background = rng.uniform(0.3, 0.65)
    gx, gy = rng.uniform(-0.15, 0.15, size=2)
    image = background + gx * (xx / width - 0.5) + gy * (yy / height - 0.5)
    r2 = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / (short / 2) ** 2
    image -= rng.uniform(0.0, 0.12) * r2
    image += rng.uniform(0.02, 0.08) * smooth_noise(rng, height, width, short / 3)

    mask = np.zeros((height, width), np.uint8)
    bright = rng.random() < 0.5
    count = int(rng.integers(1, 6))
    placed = []
    for _ in range(count * 20):
        if len(placed) == count:
            break
        base = rng.uniform(0.07, 0.2) * short
        cx = rng.uniform(base * 1.1, width - base * 1.1)
        cy = rng.uniform(base * 1.1, height - base * 1.1)
        if any(math.hypot(cx - px, cy - py) < (base + pr) * 1.35 + 6 for px, py, pr in placed):
            continue
        placed.append((cx, cy, base))

        irregular = rng.random() < 0.5
        base, harmonics = blob_radius(rng, base, irregular)
        dx, dy = xx - cx, yy - cy
        theta = np.arctan2(dy, dx)
        dist = np.sqrt(dx * dx + dy * dy)
        edge = outline(theta, base, harmonics)
        inside = dist < edge

        # Intensity: a contrast of either sign, a rim at the border, and internal texture.
        contrast = rng.uniform(0.12, 0.35) * (1 if bright else -1)
        depth = np.clip((edge - dist) / np.maximum(edge, 1e-3), 0, 1)  # 0 at the border, 1 at the centre
        rim = rng.uniform(-0.12, 0.12) * np.exp(-((edge - dist) / rng.uniform(2.0, 5.0)) ** 2)
        texture = rng.uniform(0.03, 0.1) * smooth_noise(rng, height, width, rng.uniform(3, 8))
        body = contrast * (0.6 + 0.4 * depth ** rng.uniform(0.3, 1.5)) + rim + texture
        blob_mask = inside.copy()

        if rng.random() < 0.3:  # a hole: background shows through the core
            hole_base = base * rng.uniform(0.25, 0.45)
            hx = cx + rng.uniform(-0.15, 0.15) * base
            hy = cy + rng.uniform(-0.15, 0.15) * base
            _, hole_harm = blob_radius(rng, hole_base, rng.random() < 0.5)
            hdx, hdy = xx - hx, yy - hy
            hole = np.sqrt(hdx * hdx + hdy * hdy) < outline(np.arctan2(hdy, hdx), hole_base, hole_harm)
            blob_mask &= ~hole
        image = np.where(blob_mask, image + body, image)
        mask[blob_mask] = 255

    # Optics and sensor: blur, then shot-like and read noise.
    sigma = rng.uniform(0.4, 1.6)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    image = image + rng.uniform(0.01, 0.05) * rng.standard_normal(image.shape).astype(np.float32)
    image = np.clip(image, 0.0, 1.0)

    if gray:
        out = (image * 255 + 0.5).astype(np.uint8)
    else:
        tint = rng.uniform(0.75, 1.0, size=3).astype(np.float32)
        out = (np.clip(image[..., None] * tint, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out, mask


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--jitter", type=int, default=0, help="vary each side by up to +-PX")
    parser.add_argument("--no-masks", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    if not args.no_masks:
        os.makedirs(os.path.join(args.out, "masks"), exist_ok=True)
    for i in range(args.count):
        w = args.width + (int(rng.integers(-args.jitter, args.jitter + 1)) if args.jitter else 0)
        h = args.height + (int(rng.integers(-args.jitter, args.jitter + 1)) if args.jitter else 0)
        image, mask = make_sample(rng, h, w)
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        name = f"{i:04d}.png"
        cv2.imwrite(os.path.join(args.out, "images", name), image)
        if not args.no_masks:
            cv2.imwrite(os.path.join(args.out, "masks", name), mask)


if __name__ == "__main__":
    main()
