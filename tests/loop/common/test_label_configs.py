"""Label config templates and parsing (pure)."""

from __future__ import annotations

import pytest

from loop.common.label_configs import (
    COCO_LABELS,
    LabelConfigError,
    rectangle_controls,
    rectangle_labels_config,
)


def test_coco_template_round_trips_through_the_parser():
    controls = rectangle_controls(rectangle_labels_config(COCO_LABELS))
    assert len(COCO_LABELS) == 80 and "traffic_light" in COCO_LABELS
    assert controls == [{"kind": "RectangleLabels", "name": "label", "to_name": "image", "image_value": "$image",
                         "labels": COCO_LABELS, "predicted_values": {}}]


def test_predicted_values_are_kept_raw():
    xml = rectangle_labels_config(["Airplane", "Car"], {"Car": "car,truck", "Airplane": "airplane"})
    (control,) = rectangle_controls(xml)
    assert control["predicted_values"] == {"Airplane": "airplane", "Car": "car,truck"}


@pytest.mark.parametrize("xml", ['<View><Text name="t" value="$text"/></View>',
                                 '<View><Image name="image" value="$image"/><Choices name="c" toName="image">'
                                 '<Choice value="a"/></Choices></View>',
                                 "<View><Image"])
def test_configs_without_boxes_get_an_error_that_says_what_is_needed(xml):
    with pytest.raises(LabelConfigError, match="RectangleLabels|not valid XML"):
        rectangle_controls(xml)
