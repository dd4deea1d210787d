"""Regions between Label Studio and pixels (pure). Label Studio stores a rectangle as percent (0-100) of
the original image: x/y the top-left corner, rotation in degrees about that corner; a polygon as its
points in percent; a brush mask as run-length-encoded RGBA (loop.clients.labelstudio has the codec)."""

from __future__ import annotations

import math
from typing import Any


def bbox_to_region(bbox_xywh, label: str, width: int, height: int, *, from_name: str = "label",
                   to_name: str = "image", score: float | None = None) -> dict[str, Any]:
    """A pixel [x, y, w, h] box as a RectangleLabels region the way Label Studio stores it."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    region = {"from_name": from_name, "to_name": to_name, "type": "rectanglelabels",
              "original_width": int(width), "original_height": int(height), "image_rotation": 0,
              "value": {"x": 100.0 * x / width, "y": 100.0 * y / height, "width": 100.0 * w / width,
                        "height": 100.0 * h / height, "rotation": 0, "rectanglelabels": [label]}}
    if score is not None:
        region["score"] = float(score)
    return region


def region_to_bbox(region: dict[str, Any], width: int, height: int) -> list[float] | None:
    """A RectangleLabels region (percent of the original image, x/y top-left, rotation in degrees about
    the top-left corner) as a COCO [x, y, w, h] in pixels, clipped to the image; None if empty."""
    value = region.get("value", {})
    w = region.get("original_width") or width
    h = region.get("original_height") or height
    x0, y0 = value["x"] * w / 100.0, value["y"] * h / 100.0
    bw, bh = value["width"] * w / 100.0, value["height"] * h / 100.0
    angle = math.radians(value.get("rotation") or 0.0)
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        corners = [(x0 + dx * c - dy * s, y0 + dx * s + dy * c) for dx, dy in ((0, 0), (bw, 0), (bw, bh), (0, bh))]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    else:
        xs, ys = [x0, x0 + bw], [y0, y0 + bh]
    left, top = max(0.0, min(xs)), max(0.0, min(ys))
    right, bottom = min(float(w), max(xs)), min(float(h), max(ys))
    if right - left <= 0 or bottom - top <= 0:
        return None
    return [round(left, 2), round(top, 2), round(right - left, 2), round(bottom - top, 2)]


def _region(kind: str, value: dict[str, Any], label: str, width: int, height: int, from_name: str, to_name: str,
            score: float | None) -> dict[str, Any]:
    region = {"from_name": from_name, "to_name": to_name, "type": kind.lower(), "original_width": int(width),
              "original_height": int(height), "image_rotation": 0, "value": {**value, kind.lower(): [label]}}
    if score is not None:
        region["score"] = float(score)
    return region


def polygon_to_region(points_xy, label: str, width: int, height: int, *, from_name: str = "polygon",
                      to_name: str = "image", score: float | None = None) -> dict[str, Any]:
    """A pixel polygon [(x, y), ...] as a PolygonLabels region the way Label Studio stores it."""
    points = [[100.0 * float(x) / width, 100.0 * float(y) / height] for x, y in points_xy]
    return _region("PolygonLabels", {"points": points, "closed": True}, label, width, height, from_name, to_name,
                   score)


def region_to_polygon(region: dict[str, Any], width: int, height: int) -> list[tuple[float, float]] | None:
    """A PolygonLabels region as pixel points clipped to the image; None with fewer than 3 points."""
    w = region.get("original_width") or width
    h = region.get("original_height") or height
    points = region.get("value", {}).get("points") or []
    if len(points) < 3:
        return None
    return [(min(max(px * w / 100.0, 0.0), float(w)), min(max(py * h / 100.0, 0.0), float(h))) for px, py in points]


def brush_to_region(rle: list[int], label: str, width: int, height: int, *, from_name: str = "brush",
                    to_name: str = "image", score: float | None = None) -> dict[str, Any]:
    """A brush mask already in Label Studio's RLE as a BrushLabels region."""
    return _region("BrushLabels", {"format": "rle", "rle": list(rle)}, label, width, height, from_name, to_name,
                   score)
