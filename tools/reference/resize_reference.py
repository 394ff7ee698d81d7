#!/usr/bin/python3
"""Pillow's anti-aliased downscale of a synthetic 8-bit image, for sluice's resize tests.

Writes tests/data/resize/<name>.png (Pillow's Image.resize output) and tests/data/resize/cases.json
(source size, channels, output size, filter). The source is the integer pattern
v(x, y, c) = ((x * 37 + y * 91 + c * 53) ^ (x * y)) & 255, which tests/vision/pil_resample_test.cpp
rebuilds: high frequencies everywhere, so that aliasing shows.

Needs numpy and Pillow:  /usr/bin/python3 tools/reference/resize_reference.py
"""
import json
import os

import numpy as np
from PIL import Image, __version__ as pil_version

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "resize")
W, H = 360, 270
FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}


def source(channels):
    y, x = np.mgrid[0:H, 0:W].astype(np.int64)
    planes = [((x * 37 + y * 91 + c * 53) ^ (x * y)) & 255 for c in range(channels)]
    arr = np.stack(planes, axis=-1).astype(np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, "L" if channels == 1 else "RGB")


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []
    grey, rgb = source(1), source(3)
    plan = [(1, f, "lanczos") for f in (2, 3, 4, 5, 6, 7, 8, 9, 2.5, 3.7, 6.3)]
    plan += [(3, 2, "lanczos"), (3, 4.5, "lanczos"), (1, 3, "bilinear"), (1, 5.5, "bilinear")]
    for channels, factor, filt in plan:
        size = (round(W / factor), round(H / factor))
        name = f"{filt}_c{channels}_{str(factor).replace('.', 'p')}x"
        img = (grey if channels == 1 else rgb).resize(size, FILTERS[filt])
        img.save(os.path.join(OUT, name + ".png"))
        cases.append({"name": name, "channels": channels, "factor": factor, "width": size[0], "height": size[1],
                      "filter": filt})
    # Different factors along the two axes.
    size = (W // 7, H // 2)
    grey.resize(size, FILTERS["lanczos"]).save(os.path.join(OUT, "lanczos_c1_7x_2x.png"))
    cases.append({"name": "lanczos_c1_7x_2x", "channels": 1, "factor": 0, "width": size[0], "height": size[1],
                  "filter": "lanczos"})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"generator": "tools/reference/resize_reference.py", "pillow": pil_version,
                   "source": {"width": W, "height": H}, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
