"""The frame size an MPEG-4 Part 2 (mp4v) ``.mp4`` declares, set in place.

OpenCV's FFmpeg writer drops the last column and row of a frame of odd width or height
(it rounds the size down to even for FFmpeg's pixel-format conversion), although the codec
itself has no such limit: the video object layer (VOL) header gives the width and height in
pixels, and a decoder crops its 16 x 16 macroblocks to them. So an odd-sized video is
written padded to even, and :func:`set_frame_size` then writes the true size into the VOL
header (in the ``esds`` box of the ``mp4v`` sample entry) and into the ``mp4v`` entry and
``tkhd`` box that players read; the padding is decoded and cropped away. Every field
rewritten keeps its length, so no box moves.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator


class Mp4Error(ValueError):
    """An mp4 whose layout is not the one this module rewrites."""


def _boxes(data: bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, end) of each box in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise Mp4Error(f"box {kind!r} at byte {pos} has a bad size {size}")
        yield kind, pos + header, pos + size
        pos += size


def _find(data: bytearray, start: int, end: int, path: tuple[bytes, ...]) -> tuple[int, int]:
    """(body start, end) of the first box at ``path`` (types, outermost first)."""
    for kind, body, stop in _boxes(data, start, end):
        if kind == path[0]:
            return (body, stop) if len(path) == 1 else _find(data, body, stop, path[1:])
    raise Mp4Error(f"no {b'/'.join(path).decode()} box")


class _Bits:
    """Big-endian bit reader over ``data``, from bit ``pos``."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            if self.pos >> 3 >= len(self.data):
                raise Mp4Error("the VOL header ends early")
            value = (value << 1) | (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
            self.pos += 1
        return value

    def marker(self) -> None:
        if self.read(1) != 1:
            raise Mp4Error(f"the VOL header lacks a marker bit at bit {self.pos - 1}")


def _vol_size_bit(vol: bytes) -> int:
    """The bit offset, in ``vol`` (a VOL header after its start code), of
    video_object_layer_width; its height follows after a marker bit (ISO/IEC 14496-2, 6.2.3)."""
    bits = _Bits(vol)
    bits.read(1 + 8)  # random_accessible_vol, video_object_type_indication
    verid = 1
    if bits.read(1):  # is_object_layer_identifier
        verid = bits.read(4)
        bits.read(3)
    if bits.read(4) == 0xF:  # aspect_ratio_info: extended PAR
        bits.read(16)
    if bits.read(1):  # vol_control_parameters
        bits.read(2 + 1)  # chroma_format, low_delay
        if bits.read(1):  # vbv_parameters: 15+1+15+1+15+1+3+11+1+15+1 bits
            bits.read(79)
    shape = bits.read(2)
    if shape == 3 and verid != 1:
        bits.read(4)
    if shape != 0:
        raise Mp4Error(f"the VOL's shape is {shape}, not rectangular")
    bits.marker()
    resolution = bits.read(16)  # vop_time_increment_resolution
    bits.marker()
    if bits.read(1):  # fixed_vop_rate
        bits.read(max(1, (resolution - 1).bit_length()))
    bits.marker()
    position = bits.pos
    bits.read(13)
    bits.marker()
    bits.read(13)
    bits.marker()
    return position


def _write_bits(data: bytearray, pos: int, n: int, value: int) -> None:
    for i in range(n):
        byte, shift = (pos + i) >> 3, 7 - ((pos + i) & 7)
        data[byte] = data[byte] & ~(1 << shift) | ((value >> (n - 1 - i)) & 1) << shift


def _descriptor(data: bytearray, pos: int) -> tuple[int, int, int]:
    """(tag, body start, end) of the MPEG-4 descriptor at ``pos`` (its size in 7-bit groups)."""
    tag, size, pos = data[pos], 0, pos + 1
    for _ in range(4):
        byte = data[pos]
        pos += 1
        size = size << 7 | byte & 0x7F
        if not byte & 0x80:
            break
    return tag, pos, pos + size


def _decoder_specific_info(data: bytearray, start: int, end: int) -> tuple[int, int]:
    """(start, end) of the DecoderSpecificInfo of an ``esds`` box body (after version/flags)."""
    tag, body, _ = _descriptor(data, start)
    if tag != 0x03:
        raise Mp4Error("esds holds no ES_Descriptor")
    flags = data[body + 2]
    pos = body + 3
    if flags & 0x80:  # streamDependenceFlag
        pos += 2
    if flags & 0x40:  # URL_Flag
        pos += 1 + data[pos]
    if flags & 0x20:  # OCRstreamFlag
        pos += 2
    tag, body, _ = _descriptor(data, pos)
    if tag != 0x04:
        raise Mp4Error("esds holds no DecoderConfigDescriptor")
    tag, body, stop = _descriptor(data, body + 13)
    if tag != 0x05 or stop > end:
        raise Mp4Error("esds holds no DecoderSpecificInfo")
    return body, stop


def _top_level_moov(f) -> tuple[int, int]:
    """(offset, size) of the file's moov box, found by its top-level box headers (the
    media data before it is not read)."""
    f.seek(0, 2)
    end = f.tell()
    pos = 0
    while pos + 8 <= end:
        f.seek(pos)
        size, kind = struct.unpack(">I4s", f.read(8))
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
        elif size == 0:
            size = end - pos
        if size < 8 or pos + size > end:
            raise Mp4Error(f"box {kind!r} at byte {pos} has a bad size {size}")
        if kind == b"moov":
            return pos, size
        pos += size
    raise Mp4Error("no moov box")


def set_frame_size(path: str, height: int, width: int) -> None:
    """Declares ``height`` x ``width`` as the frame size of the mp4v video at ``path`` (its
    first track), in place. The video must have been encoded at a size of as many 16 x 16
    macroblocks (such as height + 1 x width + 1 for an odd size)."""
    with open(path, "r+b") as f:
        offset, size = _top_level_moov(f)
        f.seek(offset)
        data = bytearray(f.read(size))
        moov = _find(data, 0, len(data), (b"moov",))
        tkhd = _find(data, *moov, (b"trak", b"tkhd"))
        stsd = _find(data, *moov, (b"trak", b"mdia", b"minf", b"stbl", b"stsd"))
        kind, entry, entry_end = next(_boxes(data, stsd[0] + 8, stsd[1]), (None, 0, 0))  # after version, flags, count
        if kind != b"mp4v":
            raise Mp4Error(f"the video's sample entry is {kind!r}, not mp4v")
        # VisualSampleEntry: 6 + 2 + 2 + 2 + 12 bytes, then width and height (16 bits each),
        # then 50 bytes to its child boxes
        esds = _find(data, entry + 78, entry_end, (b"esds",))
        info = _decoder_specific_info(data, esds[0] + 4, esds[1])
        vol = next((i for i in range(info[0], info[1] - 3)
                    if data[i:i + 3] == b"\x00\x00\x01" and 0x20 <= data[i + 3] <= 0x2F), None)
        if vol is None:
            raise Mp4Error("the decoder specific info holds no VOL header")
        bit = (vol + 4) * 8 + _vol_size_bit(bytes(data[vol + 4:info[1]]))
        _write_bits(data, bit, 13, width)
        _write_bits(data, bit + 14, 13, height)
        struct.pack_into(">HH", data, entry + 24, width, height)
        struct.pack_into(">II", data, tkhd[1] - 8, width << 16, height << 16)  # 16.16 fixed point, the box's last fields
        f.seek(offset)
        f.write(data)
