"""Drawing the synthetic shapes: backgrounds, the four classes with pixel-exact boxes and COCO polygons, and the
cluttered variant's distractors. Pure image code (numpy and PIL); `loop.common.demo_data` writes datasets of
these images.

Boxes are read back from each shape's own rendered mask, so they are pixel-exact; each object's instance mask
is a COCO polygon of the shape as PIL drew it (see `_outline`), within a pixel of the rendered mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "star")


@dataclass(frozen=True)
class Shape:
    label: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), pixel-exact
    polygon: tuple[tuple[float, float], ...] = ()  # COCO pixel coordinates (a pixel's corners at integers)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    kind = rng.integers(4)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = (xx * math.cos(a) + yy * math.sin(a))
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
        img = c0 + t[..., None] * (c1 - c0)
    elif kind == 1:  # smooth colour blobs
        grid = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float64)
    elif kind == 2:  # stripes
        period = rng.uniform(8, 40)
        a = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = 0.5 + 0.5 * np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)
        img = c0 + t[..., None] * (c1 - c0) * 0.5
    else:  # coarse texture
        small = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST), dtype=np.float64)
        img = 0.5 * img + 0.5 * c0
    img = img + rng.normal(0, 5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(label: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if label == "square":
        pts = [(math.cos(rot + k * math.pi / 2 + math.pi / 4), math.sin(rot + k * math.pi / 2 + math.pi / 4))
               for k in range(4)]
    elif label == "triangle":
        pts = [(math.cos(rot + k * 2 * math.pi / 3), math.sin(rot + k * 2 * math.pi / 3)) for k in range(3)]
    elif label == "star":
        pts = [((1.0 if k % 2 == 0 else 0.45) * math.cos(rot + k * math.pi / 5),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(rot + k * math.pi / 5)) for k in range(10)]
    else:
        raise ValueError(label)
    return [(cx + r * x, cy + r * y) for x, y in pts]


def _outline(points: list[tuple[float, float]], edge: float = 0.4, corner: float = 0.6
             ) -> list[tuple[float, float]]:
    """The polygon PIL fills for these vertices, in COCO coordinates. PIL truncates each vertex to its pixel
    (whose centre is at +0.5 in COCO's pixel-corner coordinates) and fills the pixels its edges pass through
    too (a one-pixel line reaches 0.35 to 0.5 px past the edge, by its slope): so the edges move `edge` px
    outwards, a vertex at most `corner` px (sharp tips would overshoot). The shape's own vertices as they are
    miss that rim: IoU with the drawn mask down to 0.86 for small stars, against about 0.95 or better here."""
    pts = [(math.floor(x) + 0.5, math.floor(y) + 0.5) for x, y in points]
    n = len(pts)
    turn = 1.0 if sum(pts[i - 1][0] * pts[i][1] - pts[i][0] * pts[i - 1][1] for i in range(n)) > 0 else -1.0

    def normal(a, b):
        dx, dy = b[0] - a[0], b[1] - a[1]
        length = math.hypot(dx, dy)
        return dy / length * turn, -dx / length * turn

    out = []
    for i in range(n):
        n1, n2 = normal(pts[i - 1], pts[i]), normal(pts[i], pts[(i + 1) % n])
        bx, by = n1[0] + n2[0], n1[1] + n2[1]
        scale = edge / (bx * n1[0] + by * n1[1])  # the mitre: both edges `edge` px out
        dx, dy = bx * scale, by * scale
        reach = math.hypot(dx, dy)
        if reach > corner:
            dx, dy = dx * corner / reach, dy * corner / reach
        out.append((pts[i][0] + dx, pts[i][1] + dy))
    return out


def _circle_outline(cx: float, cy: float, r: float, points: int = 64) -> list[tuple[float, float]]:
    """The circle PIL's ellipse fills, in COCO coordinates: PIL truncates the box to whole pixels and fills
    its first and last pixel too."""
    x0, y0, x1, y1 = (math.floor(v) for v in (cx - r, cy - r, cx + r, cy + r))
    mx, my, rx, ry = (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2, (x1 - x0 + 1) / 2, (y1 - y0 + 1) / 2
    return [(mx + rx * math.cos(2 * math.pi * k / points), my + ry * math.sin(2 * math.pi * k / points))
            for k in range(points)]


def _overlaps(box, boxes, margin=4) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin
               for b in boxes)


def render_image(rng: np.random.Generator) -> tuple[Image.Image, list[Shape]]:
    """One image and its shapes (exact boxes, and polygons within a pixel of the drawn masks)."""
    w, h = int(rng.integers(224, 321)), int(rng.integers(192, 289))
    img = Image.fromarray(_background(rng, w, h))
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            label = CLASSES[int(rng.integers(len(CLASSES)))]
            r = float(rng.uniform(16, 44))
            cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
            mask = Image.new("L", (w, h), 0)
            draw = ImageDraw.Draw(mask)
            if label == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
                outline = _circle_outline(cx, cy, r)
            else:
                rot = float(rng.uniform(-0.35, 0.35)) if label == "square" else float(rng.uniform(0, 2 * math.pi))
                vertices = _polygon(label, cx, cy, r, rot)
                draw.polygon(vertices, fill=255)
                outline = _outline(vertices)
            box = mask.getbbox()
            if box is None or _overlaps(box, [s.bbox for s in shapes]):
                continue
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            img.paste(Image.new("RGB", (w, h), colour), (0, 0), mask)
            shapes.append(Shape(label, box, tuple((round(x, 2), round(y, 2)) for x, y in outline)))
            break
    return img, shapes


# The imbalanced variant: class probabilities (circle, square, triangle, star) and the unlabeled clutter.
IMBALANCED_P = (0.45, 0.30, 0.22, 0.03)
DISTRACTORS = ("ellipse", "cross", "line", "hollow")


def _ellipse(cx: float, cy: float, r: float, ratio: float, rot: float, points: int = 48
             ) -> list[tuple[float, float]]:
    """An ellipse of half-axes r and ratio x r, rotated (PIL's own ellipse is axis-aligned)."""
    c, s = math.cos(rot), math.sin(rot)
    pts = [(r * math.cos(2 * math.pi * k / points), ratio * r * math.sin(2 * math.pi * k / points))
           for k in range(points)]
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _cross(cx: float, cy: float, r: float, arm: float, rot: float) -> list[tuple[float, float]]:
    """A plus sign of half-length r and half-width arm, rotated."""
    pts = [(arm, r), (arm, arm), (r, arm), (r, -arm), (arm, -arm), (arm, -r),
           (-arm, -r), (-arm, -arm), (-r, -arm), (-r, arm), (-arm, arm), (-arm, r)]
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _draw_distractor(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float,
                     rng: np.random.Generator) -> None:
    rot = float(rng.uniform(0, 2 * math.pi))
    if kind == "ellipse":  # clearly flattened: not a circle
        draw.polygon(_ellipse(cx, cy, r, float(rng.uniform(0.3, 0.55)), rot), fill=255)
    elif kind == "cross":
        draw.polygon(_cross(cx, cy, r, r * float(rng.uniform(0.2, 0.35)), rot), fill=255)
    elif kind == "line":
        dx, dy = r * math.cos(rot), r * math.sin(rot)
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=int(rng.integers(3, 7)))
    else:  # a hollow outline of one of the labeled shapes: looks like a class, is not one
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        width = int(rng.integers(2, 4))
        if label == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=width)
        else:
            draw.polygon(_polygon(label, cx, cy, r, rot), outline=255, width=width)


def _place(rng: np.random.Generator, w: int, h: int, r_range: tuple[float, float], taken: list,
           draw_fn: Callable[[ImageDraw.ImageDraw, float, float, float], None]
           ) -> tuple[Image.Image, tuple[int, int], tuple[int, int, int, int], float, float, float] | None:
    """Draw one shape into its own small mask (only the pixels around it, for speed) at a random spot clear
    of `taken` boxes: (mask, its offset, the image box, cx, cy, r), or None after 20 tries."""
    for _attempt in range(20):
        r = float(rng.uniform(*r_range))
        cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
        ox, oy = max(int(math.floor(cx - r)) - 4, 0), max(int(math.floor(cy - r)) - 4, 0)
        size = (min(int(math.ceil(2 * r)) + 10, w - ox), min(int(math.ceil(2 * r)) + 10, h - oy))
        mask = Image.new("L", size, 0)
        # an integer offset moves every vertex by whole pixels: PIL fills exactly the pixels it would at full size
        draw_fn(ImageDraw.Draw(mask), cx - ox, cy - oy, r)
        local = mask.getbbox()
        if local is None:
            continue
        box = (local[0] + ox, local[1] + oy, local[2] + ox, local[3] + oy)
        if _overlaps(box, taken):
            continue
        return mask, (ox, oy), box, cx, cy, r
    return None


def render_cluttered(rng: np.random.Generator, clutter: list | None = None) -> tuple[Image.Image, list[Shape]]:
    """One image of the imbalanced variant: 2-7 labeled shapes drawn with IMBALANCED_P, then 2-6 unlabeled
    distractors in the free space (boxes of labeled shapes hold only their shape, so they stay exact).
    `clutter`, if given, gets (kind, box) of each distractor drawn."""
    w, h = int(rng.integers(256, 385)), int(rng.integers(224, 321))
    img = Image.fromarray(_background(rng, w, h))
    shapes: list[Shape] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(2, 8))):
        label = CLASSES[int(rng.choice(len(CLASSES), p=IMBALANCED_P))]
        rot = float(rng.uniform(-0.35, 0.35)) if label == "square" else float(rng.uniform(0, 2 * math.pi))

        def shape(draw, x, y, r, label=label, rot=rot):
            if label == "circle":
                draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
            else:
                draw.polygon(_polygon(label, x, y, r, rot), fill=255)

        placed = _place(rng, w, h, (12.0, 34.0), taken, shape)
        if placed is None:
            continue
        mask, offset, box, cx, cy, r = placed
        outline = _circle_outline(cx, cy, r) if label == "circle" else _outline(_polygon(label, cx, cy, r, rot))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        img.paste(Image.new("RGB", mask.size, colour), offset, mask)
        shapes.append(Shape(label, box, tuple((round(x, 2), round(y, 2)) for x, y in outline)))
        taken.append(box)
    for _ in range(int(rng.integers(2, 7))):
        kind = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
        placed = _place(rng, w, h, (10.0, 34.0), taken,
                        lambda draw, x, y, r, kind=kind: _draw_distractor(draw, kind, x, y, r, rng))
        if placed is None:
            continue
        mask, offset, box, *_ = placed
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        img.paste(Image.new("RGB", mask.size, colour), offset, mask)
        taken.append(box)
        if clutter is not None:
            clutter.append((kind, box))
    return img, shapes
