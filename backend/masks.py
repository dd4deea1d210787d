"""Instance masks -> what Label Studio draws (pure): a polygon around a mask, or the mask at the image's size.

A polygon traced through the centres of a mask's boundary pixels lies half a pixel inside the mask's edge,
which costs a 16 px circle about 6 % of its area; the contour is pushed out by that half pixel before it is
simplified, so the polygon covers the pixels the mask covers.
"""

from __future__ import annotations

import cv2
import numpy as np

# Polygons are simplified (Douglas-Peucker) to this many percent of the image's longer side: 0.2 % is about
# one pixel on a 640 px image, a fraction of what a person's click is off by.
POLYGON_TOLERANCE = 0.2


def _outward(contour: np.ndarray) -> np.ndarray:
    """The closed contour (pixel-centre coordinates) moved out by half a pixel along each vertex's normal."""
    pts = contour.astype(np.float64)
    if len(pts) < 3:
        return pts + 0.5
    tangent = np.roll(pts, -1, axis=0) - np.roll(pts, 1, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    x, y = pts[:, 0], pts[:, 1]
    clockwise_on_screen = np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0  # y grows downwards
    return pts + 0.5 + (0.5 if clockwise_on_screen else -0.5) * normal


def _bridged(rings: list[np.ndarray]) -> np.ndarray:
    """One closed polygon through several rings: each ring after the first is reached from the nearest point
    of the polygon so far by a zero-width bridge, traced whole, and left the same way back. A rasteriser
    fills each ring and (next to) nothing along the bridges, so one Label Studio region holds every part."""
    polygon = rings[0]
    for ring in rings[1:]:
        gaps = np.linalg.norm(polygon[:, None, :] - ring[None, :, :], axis=2)
        i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
        polygon = np.concatenate([polygon[:i + 1], np.roll(ring, -j, axis=0), ring[j:j + 1], polygon[i:]])
    return polygon


def mask_polygon(mask: np.ndarray, tolerance: float = POLYGON_TOLERANCE, min_part: float = 0.02
                 ) -> np.ndarray | None:
    """The polygon (K x 2, x y in pixels, continuous coordinates: pixel i spans [i, i+1]) around a boolean
    mask, each ring simplified to `tolerance` percent of the longer side; a mask in several parts (each at
    least `min_part` of the mask's area; smaller specks are left out) becomes one polygon whose rings are
    joined by zero-width bridges. Holes are filled. None when the mask is empty."""
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    areas = [cv2.contourArea(c) + len(c) / 2 + 1 for c in contours]  # pixels inside, edge pixels included
    parts = sorted(((a, c) for a, c in zip(areas, contours) if a >= min_part * sum(areas)), key=lambda p: -p[0])
    epsilon = max(tolerance, 0.0) / 100.0 * max(mask.shape)
    rings = []
    for _, contour in parts:
        ring = _outward(contour[:, 0, :]).astype(np.float32)
        if epsilon > 0:
            ring = cv2.approxPolyDP(ring.reshape(-1, 1, 2), epsilon, True)[:, 0, :]
        if len(ring) >= 3:
            rings.append(ring)
    return _bridged(rings) if rings else None


def mask_at(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The boolean mask at (width, height): the original image's size where the model saw a resized copy."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), tuple(size), interpolation=cv2.INTER_NEAREST).astype(bool)
