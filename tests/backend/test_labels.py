"""Label mapping from the project's label config to model classes (pure)."""

import pytest

from backend.labels import build_label_map
from loop.common.label_configs import (
    COCO_LABELS,
    LabelConfigError,
    rectangle_labels_config,
)

MMDET_COCO = [n.replace("_", " ") for n in COCO_LABELS]  # MMDetection writes spaces


def test_seed_coco_labels_match_mmdet_names_ignoring_underscores_and_case():
    m = build_label_map(rectangle_labels_config([lab.upper() if lab == "car" else lab for lab in COCO_LABELS]),
                        MMDET_COCO)
    assert not m.unmatched_labels and not m.dropped_classes
    assert m.for_class(MMDET_COCO.index("traffic light"))[0].label == "traffic_light"
    assert m.for_class(MMDET_COCO.index("car"))[0].label == "CAR"
    assert m.image_field == "image"


def test_predicted_values_squash_classes_and_unknowns_are_reported():
    cfg = rectangle_labels_config(["Airplane", "Car", "Unicorn"], {"Car": "car,truck", "Airplane": "airplane"})
    m = build_label_map(cfg, MMDET_COCO)
    assert m.for_class(MMDET_COCO.index("truck"))[0].label == "Car"
    assert m.for_class(MMDET_COCO.index("car"))[0].label == "Car"
    assert m.for_class(MMDET_COCO.index("airplane"))[0].label == "Airplane"
    assert m.for_class(MMDET_COCO.index("person")) == []
    assert m.unmatched_labels == ["label:Unicorn"]
    assert "person" in m.dropped_classes and "truck" not in m.dropped_classes


def test_every_rectangle_control_is_served():
    cfg = ('<View><Image name="img" value="$photo"/>'
           '<RectangleLabels name="a" toName="img"><Label value="circle"/></RectangleLabels>'
           '<RectangleLabels name="b" toName="img"><Label value="Round" predicted_values="circle"/>'
           '<Label value="star"/></RectangleLabels></View>')
    m = build_label_map(cfg, ["circle", "square", "triangle", "star"])
    assert [(t.from_name, t.label) for t in m.for_class(0)] == [("a", "circle"), ("b", "Round")]
    assert m.image_field == "photo" and m.dropped_classes == ["square", "triangle"]


def test_config_without_boxes_is_refused():
    with pytest.raises(LabelConfigError, match="RectangleLabels"):
        build_label_map('<View><Text name="t" value="$t"/></View>', ["a"])
