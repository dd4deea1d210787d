"""Label Studio's brush RLE, encoded straight from a binary mask and decoded without a bit per string.

A BrushLabels region stores its mask as Label Studio's own run-length code over the RGBA bytes of the
image (every pixel four times: R, G, B, alpha). The SDK's encoder first repeats the mask four times and then
builds the bit string run by run; for the masks a segmentation model serves, that was most of the time
spent writing a brush region. The runs of the RGBA bytes are the mask's own runs, four times as long, so
this encoder finds them on the mask itself and writes the same bytes (tests compare it with the SDK's).

The code: a 32-bit count of values, 5 bits of word size - 1 (7: one byte per value), four 4-bit run-length
field sizes - 1 (3, 4, 8, 16 bits), then per run either a single value (`0`, size index `00`, `000`, the
byte) or a series (`1`, the size index of the smallest field that holds length - 1, length - 1, the byte);
runs longer than 2^16 are split. The bit string is padded with 1 to 8 zeros to whole bytes (8 when it
already ends on one, as Label Studio's encoder does). The SDK's decoder turns every bit into a string of
its own; `rle_to_values` reads the fields from one bit string, and fills each series with one slice.
"""

from __future__ import annotations

import numpy as np

CHANNELS = 4  # R, G, B, alpha
_HEADER = "{:032b}" + "{:05b}".format(8 - 1) + "".join("{:04b}".format(s - 1) for s in (3, 4, 8, 16))
_LONGEST = 2 ** 16


def _run_bits(length: int, value: int) -> str:
    """One run of `length` equal bytes as Label Studio's RLE bits."""
    byte = f"{value:08b}"
    if length == 1:
        return "000000" + byte
    if length <= 8:
        return f"100{length - 1:03b}" + byte
    if length <= 16:
        return f"101{length - 1:04b}" + byte
    if length <= 256:
        return f"110{length - 1:08b}" + byte
    parts = []
    while length > _LONGEST:
        parts.append(f"111{_LONGEST - 1:016b}" + byte)
        length -= _LONGEST
    parts.append(f"111{length - 1:016b}" + byte)
    return "".join(parts)


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A 2-D mask (nonzero: inside) as the `value.rle` of a BrushLabels region: every channel of a pixel
    inside is 255, outside 0."""
    flat = np.asarray(mask).astype(bool, copy=False).reshape(-1)
    if flat.size == 0:
        raise ValueError("an empty mask has no brush RLE: give an H x W mask with H, W > 0")
    ends = np.append(np.flatnonzero(flat[1:] != flat[:-1]), flat.size - 1)  # last index of each run
    lengths = np.diff(ends, prepend=-1) * CHANNELS
    values = np.where(flat[ends], 255, 0)
    bits = _HEADER.format(flat.size * CHANNELS) + "".join(
        _run_bits(n, v) for n, v in zip(lengths.tolist(), values.tolist()))
    bits += "0" * (8 - len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big"))


def rle_to_values(rle: list[int]) -> np.ndarray:
    """The values a brush RLE encodes (for a Label Studio brush: H x W x 4 RGBA bytes, flattened), whatever
    encoder wrote it (the editor writes single values as well as series). A truncated or inconsistent code
    raises ValueError."""
    data = bytes(rle)
    bits = format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")
    if len(bits) < 53:
        raise ValueError(f"a brush RLE of {len(data)} bytes is shorter than its 7-byte header")
    num, word = int(bits[:32], 2), int(bits[32:37], 2) + 1
    sizes = [int(bits[37 + 4 * k:41 + 4 * k], 2) + 1 for k in range(4)]
    out = np.zeros(num, dtype=np.uint8 if word <= 8 else np.uint32)
    pos, i = 53, 0
    try:
        while i < num:
            series, size = bits[pos] == "1", sizes[int(bits[pos + 1:pos + 3], 2)]
            j = i + 1 + int(bits[pos + 3:pos + 3 + size], 2)
            pos += 3 + size
            if j > num:
                raise ValueError(f"a run ends at value {j} of {num}")
            if series:
                out[i:j] = int(bits[pos:pos + word], 2)
                pos += word
            else:
                out[i:j] = [int(bits[p:p + word], 2) for p in range(pos, pos + word * (j - i), word)]
                pos += word * (j - i)
            i = j
    except (IndexError, ValueError) as exc:
        raise ValueError(f"a brush RLE that does not decode ({exc}): it was cut short or not written by Label "
                         "Studio") from None
    if pos > len(bits):
        raise ValueError("a brush RLE that does not decode: it was cut short")
    return out
