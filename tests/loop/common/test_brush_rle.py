"""Our brush RLE codec against Label Studio's SDK: the same bytes written, the same values read."""

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle

from loop.common.brush_rle import mask_to_rle, rle_to_values


def _masks():
    rng = np.random.default_rng(0)
    yield "random pixels", rng.random((37, 53)) > 0.5
    yield "all outside", np.zeros((480, 640), bool)
    yield "all inside", np.ones((300, 300), bool)
    yield "one pixel", np.pad(np.ones((1, 1), bool), ((5, 7), (3, 2)))
    yield "one row", np.ones((1, 9), bool)
    disc = np.hypot(*np.mgrid[-120:120, -160:160]) < 70
    yield "a disc", disc
    for n in (2 ** 14 - 1, 2 ** 14, 2 ** 14 + 1, 2 ** 15 + 3):  # runs of 4n bytes around the 2^16 split
        m = np.zeros(n + 10, bool)
        m[:5] = m[-5:] = True
        yield f"a run of {n} pixels", m.reshape(1, -1)
    for bits in range(1, 17):  # every padding length: the bit count ends on each position of a byte
        yield f"{bits} alternating pixels", (np.arange(bits) % 2 == 0).reshape(1, -1)


@pytest.mark.parametrize("name, mask", list(_masks()), ids=lambda x: x if isinstance(x, str) else "")
def test_writes_the_sdk_encoders_bytes_and_decodes_back(name, mask):
    ours = mask_to_rle(mask)
    assert ours == [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]
    rgba = decode_rle(ours).reshape(*mask.shape, 4)
    assert (rgba == (mask * 255)[..., None].astype(np.uint8)).all()
    assert np.array_equal(rle_to_values(ours), decode_rle(ours))


def test_reads_single_values_and_every_series_length_as_the_sdk_does():
    rng = np.random.default_rng(1)  # what the editor writes: any byte, runs of 1 (single values) to 70,000
    values = np.concatenate([np.full(n, v) for n, v in zip([1, 1, 2, 8, 9, 16, 17, 256, 257, 65536, 70000, 1, 3],
                                                             rng.integers(0, 256, 13))])
    rle = encode_rle(values)
    assert np.array_equal(rle_to_values(rle), decode_rle(rle)) and np.array_equal(rle_to_values(rle), values)


def test_a_code_cut_short_is_refused_with_the_reason():
    rle = mask_to_rle(np.hypot(*np.mgrid[-20:20, -20:20]) < 9)
    for cut in (rle[:5], rle[:len(rle) // 2], rle[:-2]):
        with pytest.raises(ValueError, match="cut short|header"):
            rle_to_values(cut)


def test_any_nonzero_value_is_inside_and_an_empty_mask_is_refused():
    assert mask_to_rle(np.array([[0, 3, 255]])) == mask_to_rle(np.array([[False, True, True]]))
    with pytest.raises(ValueError, match="H x W"):
        mask_to_rle(np.zeros((0, 4), bool))
