#!/usr/bin/python3
"""Expected shape metrics and Disintegration Index read-outs for sluice's tests.

Writes tests/data/metrics/shape_metrics.json (POST /api/calculate-metrics) and
tests/data/metrics/disintegration_index.json (POST /api/disintegration-index).

The definitions are the spheroid service's (backend/segmentation/utils/characteristic_functions.py,
backend/segmentation/api/metrics_endpoint.py, backend/segmentation/api/disintegration_metrics.py);
the arithmetic here is independent of sluice's C++: areas and perimeters with numpy, hulls with
scipy's qhull, components with scipy.ndimage.label, the hull image with
skimage.morphology.convex_hull_image; OpenCV only where the service itself calls it (minAreaRect,
boxPoints, fitEllipse, boundingRect, fillPoly). Each shape also carries its closed-form values
(area, perimeter of the ideal figure) so the fixture documents how close the polygon is.

Needs numpy, cv2, scipy and scikit-image:  /usr/bin/python3 tools/reference/shape_metrics_reference.py
"""
import json
import math
import os
import sys

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage.morphology import convex_hull_image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "metrics")


# ---- polygons ---------------------------------------------------------------------------------
def circle(cx, cy, r, n):
    t = 2 * math.pi * np.arange(n) / n
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def ellipse(cx, cy, a, b, n, angle_deg=0.0):
    t = 2 * math.pi * np.arange(n) / n
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def rect(x0, y0, w, h, angle_deg=0.0):
    pts = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=float) - [w / 2, h / 2]
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    rot = pts @ np.array([[c, s], [-s, c]])
    return rot + [x0 + w / 2, y0 + h / 2]


def star(cx, cy, r_out, r_in, k):
    t = math.pi * np.arange(2 * k) / k
    r = np.where(np.arange(2 * k) % 2 == 0, r_out, r_in)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def blob(cx, cy, n):
    t = 2 * math.pi * np.arange(n) / n
    r = 50 + 10 * np.sin(5 * t) + 5 * np.cos(3 * t)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


# ---- the service's metrics, computed independently --------------------------------------------
def f32(ring):
    return np.asarray(ring, dtype=np.float32).astype(np.float64)


def shoelace(p):
    x, y = p[:, 0], p[:, 1]
    return abs(float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))) / 2


def ring_length(p):
    return float(np.sum(np.hypot(*(np.roll(p, -1, axis=0) - p).T)))


def metrics(contour, holes):
    c = f32(contour)
    hs = [f32(h) for h in holes]
    c_cv = np.asarray(contour, dtype=np.float32).reshape(-1, 1, 2)
    area0 = shoelace(c)
    perim = ring_length(c)
    pwh = perim + sum(ring_length(h) for h in hs)
    hull = ConvexHull(c)
    hull_area, hull_perim = float(hull.volume), float(hull.area)
    _, _, bw, bh = cv2.boundingRect(c_cv)
    (w, h) = cv2.minAreaRect(c_cv)[1]
    box = cv2.boxPoints(cv2.minAreaRect(c_cv)).astype(np.int64)  # np.int0: truncation toward zero
    sides = [float(np.linalg.norm(box[i] - box[(i + 1) % 4])) for i in range(4)]
    if len(c) >= 5:
        ew, eh = cv2.fitEllipse(c_cv)[1]
    else:
        ew = eh = 0.0
    area = max(0.0, area0 - sum(shoelace(h) for h in hs)) if hs else area0
    pos = area > 0
    return {
        "Area": area,
        "Perimeter": perim,
        "PerimeterWithHoles": pwh,
        "EquivalentDiameter": math.sqrt(4 * area / math.pi) if pos else 0.0,
        "Circularity": min(1.0, 4 * math.pi * area / pwh ** 2) if pos else 0.0,
        "FeretDiameterMax": float(max(w, h)),
        "FeretDiameterMaxOrthogonalDistance": min(sides),
        "FeretDiameterMin": float(min(w, h)),
        "FeretAspectRatio": float(max(w, h) / min(w, h)) if min(w, h) else 0.0,
        "LengthMajorDiameterThroughCentroid": float(ew),
        "LengthMinorDiameterThroughCentroid": float(eh),
        "Compactness": pwh ** 2 / (4 * math.pi * area) if pos else 0.0,
        "Convexity": hull_perim / pwh,
        "Solidity": area / hull_area if pos else 0.0,
        "Sphericity": math.pi * math.sqrt(4 * area / math.pi) / pwh if pos else 0.0,
        "Extent": area / (bw * bh) if pos else 0.0,
        "BoundingBoxWidth": float(bw),
        "BoundingBoxHeight": float(bh),
    }


def shape_cases():
    cases = []

    def add(name, contour, holes=(), closed=None):
        # The coordinates the fixture stores are the ones measured.
        contour = np.round(np.asarray(contour, dtype=float), 4)
        holes = [np.round(np.asarray(h, dtype=float), 4) for h in holes]
        cases.append({
            "name": name,
            "contour": np.asarray(contour).tolist(),
            "holes": [np.asarray(h).tolist() for h in holes],
            "expected": metrics(contour, holes),
            "closed_form": closed or {},
        })

    r = 50.0
    add("circle_r50_720", circle(100, 100, r, 720),
        closed={"Area": math.pi * r * r, "Perimeter": 2 * math.pi * r, "Circularity": 1.0})
    add("square_40", rect(10, 10, 40, 40),
        closed={"Area": 1600.0, "Perimeter": 160.0, "Circularity": math.pi / 4})
    add("rectangle_80x20", rect(5, 7, 80, 20), closed={"Area": 1600.0, "Perimeter": 200.0})
    add("rectangle_60x30_rot30", rect(100, 100, 60, 30, 30), closed={"Area": 1800.0, "Perimeter": 180.0})
    a, b = 60.0, 25.0
    h = ((a - b) / (a + b)) ** 2
    ramanujan = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    add("ellipse_60x25_720", ellipse(200, 150, a, b, 720),
        closed={"Area": math.pi * a * b, "Perimeter": ramanujan})
    add("ellipse_60x25_rot45", ellipse(200, 150, a, b, 720, 45.0),
        closed={"Area": math.pi * a * b, "Perimeter": ramanujan})
    add("square_100_with_hole_40", rect(0, 0, 100, 100), [rect(30, 30, 40, 40)],
        closed={"Area": 10000.0 - 1600.0, "Perimeter": 400.0, "PerimeterWithHoles": 560.0})
    add("circle_with_two_holes", circle(300, 300, 80, 720), [circle(270, 300, 20, 360), circle(340, 310, 15, 360)],
        closed={"Area": math.pi * (80 ** 2 - 20 ** 2 - 15 ** 2)})
    add("star_5", star(120, 80, 60, 25, 5))
    add("blob_400", blob(250, 250, 400))
    add("l_shape", [[0, 0], [60, 0], [60, 20], [20, 20], [20, 70], [0, 70]], closed={"Area": 60 * 20 + 20 * 50})
    add("triangle_3_4_5", [[0, 0], [30, 0], [0, 40]], closed={"Area": 600.0, "Perimeter": 120.0})
    add("pentagon_fractional", circle(40.3, 60.7, 25.25, 5))
    add("hole_larger_than_outer", rect(0, 0, 10, 10), [rect(-5, -5, 20, 20)])
    return cases


# ---- Disintegration Index, as the service computes it from polygons ---------------------------
MIN_CORE_PX = 16048


def di_readout(mask_polys, core_polys, width, height, um_per_px):
    mask = np.zeros((height, width), np.uint8)
    for polys, value in ((mask_polys, 1), (core_polys, 2)):
        for p in polys:
            pts = np.asarray(p, dtype=np.float32)
            if pts.ndim == 2 and pts.shape[1] == 2 and pts.shape[0] >= 3:
                cv2.fillPoly(mask, [pts.astype(np.int32)], int(value))
    fg, core = mask > 0, mask == 2
    n_fg, n_core = int(fg.sum()), int(core.sum())
    out = {"n_pixels": n_fg}

    lbl, n = ndimage.label(core, structure=np.ones((3, 3), int))
    if n:
        sizes = np.bincount(lbl.ravel())[1:]
        k = int(np.argmax(sizes)) + 1
        cy, cx = np.nonzero(core)
        ly, lx = np.nonzero(lbl == k)
        shift = float(np.hypot(cx.mean() - lx.mean(), cy.mean() - ly.mean()) / np.sqrt(core.sum() / np.pi))
        largest_cc = float(sizes.max() / sizes.sum())
    else:
        shift = largest_cc = None

    warnings = []
    if (width, height) != (2048, 2048):
        warnings.append(f"frame is {width}x{height} px; the model and the Disintegration Index were validated only "
                        f"on 2048x2048 px brightfield frames at ~1.28 um/px (5x objective). The read-out is returned "
                        f"but was never tested at this size.")
    if um_per_px is not None and um_per_px > 0 and math.isfinite(um_per_px) and abs(um_per_px / 1.28 - 1) > 0.1:
        warnings.append(f"pixel size is {um_per_px:.4g} um/px; the model and the Disintegration Index were validated "
                        f"only at ~1.28 um/px (2048x2048 px frames, 5x objective). The read-out is returned but was "
                        f"never tested at this scale.")
    out["warnings"] = warnings
    out["largest_core_component_frac"] = largest_cc
    out["core_centroid_shift"] = shift

    if n_fg == 0 or n_core == 0 or n_core < MIN_CORE_PX:
        out.update({"di": 0.0, "w1": 0.0,
                    "reference": "none" if n_fg == 0 else "no_core" if n_core == 0 else "core_too_small"})
        for key in ("index_b", "reach_p90", "n_fragments", "largest_fragment_frac", "solidity", "core_fragmented",
                    "unvalidated_regime", "below_validated_regime"):
            out[key] = None
        out.update({"area_core_px": n_core if n_fg else None, "area_corona_px": n_fg - n_core if n_fg else None,
                    "area_total_px": n_fg if n_fg else None, "n_core_components": int(n) if n_fg else None})
        return out

    cy, cx = np.nonzero(core)
    r_c = np.sqrt(n_core / np.pi)
    fy, fx = np.nonzero(fg)
    d = np.sort(np.hypot(fx - cx.mean(), fy - cy.mean()) / r_c)
    u = (np.arange(d.size) + 0.5) / d.size
    w1 = float(np.mean(np.abs(d - np.sqrt(u))))
    corona = fg & ~core
    clbl, n_frag = ndimage.label(corona)
    largest = float(np.bincount(clbl.ravel())[1:].max() / corona.sum()) if n_frag else 0.0
    index_b = (n_fg - n_core) / n_fg
    hull_px = float(convex_hull_image(fg).sum())
    out.update({
        "di": float(np.tanh(w1)), "w1": w1, "reference": "core", "index_b": index_b,
        "reach_p90": float(np.percentile(d, 90)), "n_fragments": int(n_frag), "largest_fragment_frac": largest,
        "solidity": n_fg / hull_px, "area_core_px": n_core, "area_corona_px": n_fg - n_core, "area_total_px": n_fg,
        "n_core_components": int(n),
        "core_fragmented": int(largest_cc < 0.99 or shift > 0.1),
        "unvalidated_regime": int(0.15 <= index_b < 0.30),
        "below_validated_regime": int(np.tanh(w1) < 0.6),
    })
    return out


def di_cases():
    cases = []

    def add(name, mask_polys, core_polys, width, height, um_per_px=None):
        mask_polys = [np.round(np.asarray(p, dtype=float), 3) for p in mask_polys]
        core_polys = [np.round(np.asarray(p, dtype=float), 3) for p in core_polys]
        cases.append({
            "name": name,
            "request": {"mask_polygons": [np.asarray(p).tolist() for p in mask_polys],
                        "core_polygons": [np.asarray(p).tolist() for p in core_polys],
                        "image_width": width, "image_height": height, "pixel_size_um": um_per_px},
            "expected": di_readout(mask_polys, core_polys, width, height, um_per_px),
        })

    rng = np.random.default_rng(7)
    add("intact_disk", [circle(200, 200, 80, 360)], [circle(200, 200, 76, 360)], 400, 400, 1.28)
    fragments = [circle(200 + 150 * math.cos(a), 210 + 140 * math.sin(a), 12 + 4 * (i % 3), 48)
                 for i, a in enumerate(np.linspace(0, 2 * math.pi, 14, endpoint=False))]
    add("dispersed_corona", [circle(200, 210, 90, 360)] + fragments, [circle(195, 205, 75, 360)], 420, 440)
    blob_pts = blob(250, 260, 300) * 1.0
    add("irregular_blob_offcentre_core", [(blob_pts - [250, 260]) * 2.2 + [250, 260]],
        [circle(240, 270, 74, 200) + rng.normal(0, 0.7, (200, 2))], 512, 512, 0.65)
    add("fragmented_core", [circle(220, 220, 150, 360)],
        [circle(170, 220, 72, 200), circle(300, 220, 30, 100)], 450, 450)
    add("core_too_small", [circle(100, 100, 80, 200)], [circle(100, 100, 40, 200)], 220, 220)
    add("no_core", [circle(100, 100, 80, 200)], [], 2048, 2048)
    add("nothing_on_canvas", [[[-50, -50], [-10, -50], [-10, -10]]], [], 64, 64)
    big = [circle(1024 + 820 * math.cos(a), 1000 + 760 * math.sin(a), 30 + 6 * (i % 4), 64)
           for i, a in enumerate(np.linspace(0, 2 * math.pi, 40, endpoint=False))]
    add("validated_frame_2048", [blob(0, 0, 720) * 11 + [1024, 1000]] + big,
        [circle(1010, 990, 420, 720)], 2048, 2048, 1.28)
    add("polygon_clipped_by_frame", [circle(0, 0, 200, 360)], [circle(60, 60, 110, 360)], 300, 260, 1.3)
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"generator": "tools/reference/shape_metrics_reference.py", "numpy": np.__version__,
            "opencv": cv2.__version__}
    with open(os.path.join(OUT, "shape_metrics.json"), "w") as f:
        json.dump({**meta, "cases": shape_cases()}, f, separators=(",", ":"))
    with open(os.path.join(OUT, "disintegration_index.json"), "w") as f:
        json.dump({**meta, "cases": di_cases()}, f, separators=(",", ":"))
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
