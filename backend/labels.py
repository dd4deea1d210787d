"""Which Label Studio label a model class becomes (pure).

Rules, per region control (RectangleLabels for boxes; PolygonLabels and BrushLabels for instance masks): a
`<Label predicted_values="car,truck">` takes the model classes it lists (several classes squash into one
label); otherwise a label takes the model class with the same name ignoring case and spaces vs underscores vs
hyphens (the Label Studio tutorial's COCO list writes `traffic_light`, MMDetection writes `traffic light`).
Model classes no label takes are dropped; labels that no model class feeds are reported once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from loop.common.label_configs import region_controls


def normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


@dataclass(frozen=True)
class Target:
    from_name: str
    to_name: str
    label: str
    kind: str = "RectangleLabels"  # the control's tag: what the region is drawn as


@dataclass
class LabelMap:
    """model class index -> where its boxes go (one class may feed several controls)."""

    targets: dict[int, list[Target]] = field(default_factory=dict)
    image_field: str = "image"
    unmatched_labels: list[str] = field(default_factory=list)
    dropped_classes: list[str] = field(default_factory=list)

    @property
    def wants_masks(self) -> bool:
        """Does any control draw instance masks (polygons or brush)?"""
        return any(t.kind != "RectangleLabels" for ts in self.targets.values() for t in ts)

    @property
    def classes(self) -> list[int]:
        """The model classes some label takes: the only ones worth detecting."""
        return sorted(self.targets)

    def for_class(self, index: int) -> list[Target]:
        return self.targets.get(index, [])


def build_label_map(label_config: str, model_classes: list[str]) -> LabelMap:
    """Raises loop.common.label_configs.LabelConfigError when the config has no region control on an Image."""
    controls = region_controls(label_config)
    by_norm: dict[str, list[int]] = {}
    for i, name in enumerate(model_classes):
        by_norm.setdefault(normalise(name), []).append(i)
    result = LabelMap(image_field=controls[0]["image_value"].lstrip("$"))
    for control in controls:
        for label in control["labels"]:
            spec = control["predicted_values"].get(label)
            names = [n for n in (spec.split(",") if spec else [label]) if n.strip()]
            indices = [i for n in names for i in by_norm.get(normalise(n), [])]
            if not indices:
                result.unmatched_labels.append(f"{control['name']}:{label}")
            for i in indices:
                result.targets.setdefault(i, []).append(Target(control["name"], control["to_name"], label,
                                                               control["kind"]))
    result.dropped_classes = [n for i, n in enumerate(model_classes) if i not in result.targets]
    return result
