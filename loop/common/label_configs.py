"""Label Studio labeling configs for object detection and instance segmentation (pure: strings in, XML out)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

# The COCO label list of the Label Studio tutorial (its MMDetection backend guide): MMDetection's 80 classes,
# written with underscores where MMDetection writes spaces (`traffic_light` vs `traffic light`).
COCO_LABELS = (
    "airplane apple backpack banana baseball_bat baseball_glove bear bed bench bicycle bird boat book bottle "
    "bowl broccoli bus cake car carrot cat cell_phone chair clock couch cow cup dining_table dog donut elephant "
    "fire_hydrant fork frisbee giraffe hair_drier handbag horse hot_dog keyboard kite knife laptop microwave "
    "motorcycle mouse orange oven parking_meter person pizza potted_plant refrigerator remote sandwich scissors "
    "sheep sink skateboard skis snowboard spoon sports_ball stop_sign suitcase surfboard teddy_bear "
    "tennis_racket tie toaster toilet toothbrush traffic_light train truck tv umbrella vase wine_glass zebra"
).split()


def rectangle_labels_config(labels, predicted_values: dict[str, str] | None = None, *, image_field: str = "image",
                            control: str = "label", zoom: bool = True) -> str:
    """The "Object Detection with Bounding Boxes" template for the given labels.

    `predicted_values` maps a label to a comma-separated list of model classes squashed into it
    (e.g. {"Car": "car,truck"}), the attribute the MMDetection / Label Studio tutorials describe.
    """
    predicted_values = predicted_values or {}
    rows = []
    for label in labels:
        extra = f" predicted_values={quoteattr(predicted_values[label])}" if label in predicted_values else ""
        rows.append(f"    <Label value={quoteattr(label)}{extra}/>")
    return (f'<View>\n  <Image name="image" value="${image_field}" zoom="{str(zoom).lower()}"/>\n'
            f'  <RectangleLabels name="{control}" toName="image">\n' + "\n".join(rows) +
            "\n  </RectangleLabels>\n</View>\n")


class LabelConfigError(ValueError):
    """The labeling config cannot be used for detection; the message says what it needs."""


# The region controls the loop fills and reads: boxes, and instance masks as polygons or brush strokes.
REGION_KINDS = ("RectangleLabels", "PolygonLabels", "BrushLabels")


def region_controls(xml: str, kinds: tuple[str, ...] = REGION_KINDS) -> list[dict]:
    """Every region control of these kinds with the <Image> it points at, its labels in config order and the
    raw `predicted_values` of each label: [{"kind", "name", "to_name", "image_value", "labels",
    "predicted_values"}], `kind` the tag (RectangleLabels, PolygonLabels, BrushLabels)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"the label config is not valid XML ({exc})") from None
    images = {el.get("name"): el.get("value", "") for el in root.iter("Image")}
    controls = []
    for el in root.iter():
        if el.tag not in kinds:
            continue
        to_name = el.get("toName", "")
        labels = [lab.get("value") for lab in el.iter("Label") if lab.get("value")]
        controls.append({"kind": el.tag, "name": el.get("name"), "to_name": to_name,
                         "image_value": images.get(to_name, ""), "labels": labels,
                         "predicted_values": {lab.get("value"): lab.get("predicted_values")
                                              for lab in el.iter("Label") if lab.get("predicted_values")}})
    if not controls or not any(c["image_value"] for c in controls):
        wanted = " or ".join(f"<{k}>" for k in kinds)
        raise LabelConfigError(
            f"the label config needs an <Image name=\"image\" value=\"$image\"/> and a {wanted} control "
            "with toName=\"image\" and <Label value=\"...\"/> children (the \"Object Detection with Bounding "
            "Boxes\" template for RectangleLabels, \"Semantic Segmentation with Polygons\" or \"with Masks\" for "
            "PolygonLabels or BrushLabels)")
    return [c for c in controls if c["image_value"]]


def rectangle_controls(xml: str) -> list[dict]:
    """The <RectangleLabels> controls (see region_controls)."""
    return region_controls(xml, ("RectangleLabels",))


def segmentation_labels_config(labels, kind: str = "PolygonLabels", *, boxes: bool = False,
                               image_field: str = "image") -> str:
    """A labeling config for instance masks: one `kind` control (PolygonLabels or BrushLabels) named after
    it ("polygon" or "brush"), and with `boxes` a RectangleLabels control "label" beside it."""
    rows = "\n".join(f"    <Label value={quoteattr(label)}/>" for label in labels)
    name = {"PolygonLabels": "polygon", "BrushLabels": "brush"}[kind]
    box = f'  <RectangleLabels name="label" toName="image">\n{rows}\n  </RectangleLabels>\n' if boxes else ""
    return (f'<View>\n  <Image name="image" value="${image_field}" zoom="true"/>\n{box}'
            f'  <{kind} name="{name}" toName="image">\n{rows}\n  </{kind}>\n</View>\n')
