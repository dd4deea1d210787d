"""Brush masks in and out of Label Studio's RLE, with the errors a person can act on."""

import numpy as np
import pytest

from loop.clients import labelstudio
from loop.common.errors import LoopError


def test_a_brush_mask_reads_back_and_a_broken_one_says_what_to_do():
    disc = np.hypot(*np.mgrid[-30:30, -40:40]) < 20
    rle = labelstudio.mask_to_brush(disc)
    assert np.array_equal(labelstudio.brush_to_mask(rle, 80, 60), disc)
    with pytest.raises(LoopError, match="not 40x60"):
        labelstudio.brush_to_mask(rle, 40, 60)
    with pytest.raises(LoopError, match="cut short.*draw it again"):
        labelstudio.brush_to_mask(rle[:-3], 80, 60)
