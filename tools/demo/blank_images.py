#!/usr/bin/python3
"""Blank (constant) images through the PyTorch reference of the demo model, postprocessed as
sluice does (sigmoid, bilinear resize to the image size, probability > threshold, contours with
an area of at least 50 px). Prints each image's polygons, to compare with

    segment --list-polygons --model-json examples/data/demo/model.json DIR

on the same blank images (--write DIR writes them). See docs/demo-model.md, "Blank images".

    blank_images.py [--size 256] [--values 0 40 128 255] [--write DIR]
"""
import argparse
import json
import os
import sys

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from sluice_reference import models, safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-json", default=os.path.join(HERE, "..", "..", "examples", "data", "demo", "model.json"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--values", type=int, nargs="+", default=[0, 40, 128, 255])
    ap.add_argument("--write", help="also write the blank images as DIR/blank<value>.png")
    args = ap.parse_args()

    desc = json.load(open(args.model_json))
    net = models.build(desc["network"], features=desc["features"])
    tensors, _ = safetensors.read(os.path.join(os.path.dirname(args.model_json), desc["weights"]))
    net.load_state_dict(tensors)
    net.eval()
    h, w = desc["input_size"]["height"], desc["input_size"]["width"]
    mean, std = np.array(desc["mean"], np.float32), np.array(desc["std"], np.float32)
    for v in args.values:
        if args.write:
            os.makedirs(args.write, exist_ok=True)
            cv2.imwrite(os.path.join(args.write, f"blank{v}.png"), np.full((args.size, args.size, 3), v, np.uint8))
        x = (np.full((h, w, 3), v / 255.0, np.float32) - mean) / std
        with torch.no_grad():
            logits = net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0, 0].numpy()
        prob = 1.0 / (1.0 + np.exp(-logits))
        full = cv2.resize(prob, (args.size, args.size), interpolation=cv2.INTER_LINEAR)
        contours, _ = cv2.findContours((full > desc.get("threshold", 0.5)).astype(np.uint8), cv2.RETR_TREE,
                                       cv2.CHAIN_APPROX_SIMPLE)
        kept = [c for c in contours if len(c) >= 3 and cv2.contourArea(c) >= 50]
        band = max(1, h // 16)
        print(f"blank{v}: {len(kept)} polygons, confidence {full.max():.3f}; network map: max probability "
              f"{prob.max():.3f} within {band} px of the border, {prob[band:-band, band:-band].max():.3f} inside")
        for c in kept:
            bx, by, bw, bh = cv2.boundingRect(c)
            print(f"    {len(c):4d} vertices  area {cv2.contourArea(c):8.0f} px  box {bx},{by} {bw}x{bh}")


if __name__ == "__main__":
    main()
