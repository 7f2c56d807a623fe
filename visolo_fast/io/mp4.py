"""Two rewrites of the index (``moov`` box) of an mp4 that OpenCV's FFmpeg writer made.

:func:`set_frame_size` declares an odd frame size. OpenCV's FFmpeg writer drops the last
column and row of a frame of odd width or height (it rounds the size down to even for
FFmpeg's pixel-format conversion), although the MPEG-4 Part 2 (mp4v) codec itself has no
such limit: the video object layer (VOL) header gives the width and height in pixels, and a
decoder crops its 16 x 16 macroblocks to them. So an odd-sized video is written padded to
even, and :func:`set_frame_size` then writes the true size into the VOL header (in the
``esds`` box of the ``mp4v`` sample entry) and into the ``mp4v`` entry and ``tkhd`` box
that players read; the padding is decoded and cropped away. Every field rewritten keeps its
length, so no box moves.

:func:`set_frame_times` gives each frame its own duration (a variable frame rate), where
OpenCV writes one rate for all: it rewrites the time-to-sample table (``stts``) and the
durations of the movie, the track, its media and its edit list. The table grows, and with
it the boxes that hold it: the ``moov`` box is rewritten where it is, which must be the
end of the file (so that the media data, and the chunk offsets that point into it, stay
where they are).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence


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


def _chain(data: bytearray, start: int, end: int, path: tuple[bytes, ...]) -> list[tuple[int, int, int]]:
    """(box start, body start, end) of each box along ``path`` (types, outermost first), the
    first box of its type at each level."""
    pos = start
    for kind, body, stop in _boxes(data, start, end):
        if kind == path[0]:
            here = [(pos, body, stop)]
            return here if len(path) == 1 else here + _chain(data, body, stop, path[1:])
        pos = stop  # boxes follow one another: the next starts where this one ends
    raise Mp4Error(f"no {b'/'.join(path).decode()} box")


def _grow(data: bytearray, start: int, by: int) -> None:
    """Adds ``by`` bytes to the size of the box at ``start`` (its 32- or 64-bit size field)."""
    size = struct.unpack_from(">I", data, start)[0]
    if size == 1:
        struct.pack_into(">Q", data, start + 8, struct.unpack_from(">Q", data, start + 8)[0] + by)
    elif size != 0:  # 0: the box runs to the end of the file, whatever its size
        if size + by >= 1 << 32:
            raise Mp4Error(f"box {bytes(data[start + 4:start + 8])!r} would outgrow its 32-bit size")
        struct.pack_into(">I", data, start, size + by)


def _duration_field(data: bytearray, body: int, offset: tuple[int, int]) -> tuple[int, str]:
    """(position, struct format) of the duration of the full box whose body starts at
    ``body``, ``offset`` bytes into it for a version 0 or 1 box (32 or 64 bits)."""
    version = data[body]
    if version > 1:
        raise Mp4Error(f"box version {version}")
    return body + offset[version], ">I" if version == 0 else ">Q"


def _timescale(data: bytearray, body: int) -> tuple[int, tuple[int, str]]:
    """(timescale, duration field) of an mvhd or mdhd box whose body starts at ``body``."""
    field = _duration_field(data, body, (16, 24))
    scale = struct.unpack_from(">I", data, field[0] - 4)[0]  # just before the duration
    if not scale:
        raise Mp4Error("a timescale of 0")
    return scale, field


def _set_duration(data: bytearray, field: tuple[int, str], value: int) -> None:
    if field[1] == ">I" and value >= 1 << 32:
        raise Mp4Error(f"a duration of {value} does not fit the 32 bits of a version 0 box")
    struct.pack_into(field[1], data, field[0], value)


def set_frame_times(path: str, times: Sequence[float]) -> None:
    """Gives the frames of the video at ``path`` their own times, in place: frame i is shown
    from ``times[i]`` to ``times[i + 1]``, in seconds, the video starting at ``times[0]`` (one
    more time than frames: the last one is the end of the last frame).

    Each frame starts at ``round((times[i] - times[0]) * timescale)`` ticks of its track's
    timescale, counted from the start so that rounding does not add up (a frame shorter than
    a tick still lasts one: the next starts a tick after it); the durations of the movie,
    the track and its edit list are the media's, rounded up to their timescale (as FFmpeg
    rounds them).

    The file must hold one track, without composition offsets (no ``ctts``: frames shown in
    decoding order), an edit list of one segment from the media's start if it has one, and
    its ``moov`` box last, after the data its chunk offsets point to (raises
    :class:`Mp4Error` otherwise, the file unchanged). ``ValueError``: times that
    decrease.
    """
    if any(b < a for a, b in zip(times, times[1:])):  # NB: equal times (frames of one packet) get a tick each
        raise ValueError("set_frame_times: the times must not decrease")
    with open(path, "r+b") as f:
        offset, size = _top_level_moov(f)
        if offset + size != f.seek(0, 2):
            raise Mp4Error("the moov box is not the file's last box")
        f.seek(offset)
        data = bytearray(f.read(size))
        moov = _find(data, 0, len(data), (b"moov",))
        if sum(kind == b"trak" for kind, _, _ in _boxes(data, *moov)) != 1:
            raise Mp4Error("the movie does not hold one track")
        stbl = _find(data, *moov, (b"trak", b"mdia", b"minf", b"stbl"))
        kinds = {kind for kind, _, _ in _boxes(data, *stbl)}
        if b"ctts" in kinds:
            raise Mp4Error("the frames have composition offsets (ctts)")
        frames = struct.unpack_from(">I", data, _find(data, *stbl, (b"stsz",))[0] + 8)[0]
        if frames != len(times) - 1:
            raise Mp4Error(f"the video holds {frames} frames, given the times of {len(times) - 1}")
        # The moov box grows where it is: what the chunk offsets point to must come before it
        if not kinds & {b"stco", b"co64"}:
            raise Mp4Error("no chunk offset box (stco or co64)")
        for kind, code in ((b"stco", "I"), (b"co64", "Q")):
            if kind in kinds:
                body = _find(data, *stbl, (kind,))[0]
                count = struct.unpack_from(">I", data, body + 4)[0]
                chunks = struct.unpack_from(f">{count}{code}", data, body + 8)
                if chunks and max(chunks) >= offset:
                    raise Mp4Error("a chunk offset points past the start of the moov box")

        movie_scale, movie_field = _timescale(data, _find(data, *moov, (b"mvhd",))[0])
        media_scale, media_field = _timescale(data, _find(data, *moov, (b"trak", b"mdia", b"mdhd"))[0])
        starts: list[int] = []  # each frame's start, then the end, in ticks of the media's timescale
        for t in times:
            tick = round((t - times[0]) * media_scale)
            starts.append(max(tick, starts[-1] + 1) if starts else tick)
        media = starts[-1]
        movie = -(-media * movie_scale // media_scale)  # rounded up
        track_field = _duration_field(data, _find(data, *moov, (b"trak", b"tkhd"))[0], (20, 28))
        fields = [(movie_field, movie), (track_field, movie), (media_field, media)]
        try:
            elst = _find(data, *moov, (b"trak", b"edts", b"elst"))[0]
        except Mp4Error:
            elst = None  # no edit list: the media plays from its start
        if elst is not None:
            # entries of a segment duration and a (signed) media time, of 32 or 64 bits each, then a rate
            segment = _duration_field(data, elst, (8, 8))
            signed = segment[1].lower()
            media_time = struct.unpack_from(signed, data, segment[0] + struct.calcsize(signed))[0]
            if struct.unpack_from(">I", data, elst + 4)[0] != 1 or media_time != 0:
                raise Mp4Error("the edit list is not one segment from the media's start")
            fields.append((segment, movie))
        for field, value in fields:
            _set_duration(data, field, value)

        # The new time-to-sample table: (count, delta) runs of equal durations
        runs: list[list[int]] = []
        for a, b in zip(starts, starts[1:]):
            if runs and runs[-1][1] == b - a:
                runs[-1][0] += 1
            else:
                runs.append([1, b - a])
        if any(delta >= 1 << 32 for _, delta in runs):
            raise Mp4Error("a frame lasts more than 2^32 ticks")
        stts = struct.pack(f">I4sII{2 * len(runs)}I", 16 + 8 * len(runs), b"stts", 0, len(runs),
                           *(n for run in runs for n in run))
        chain = _chain(data, 0, len(data), (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"))
        start, _, end = chain[-1]
        data[start:end] = stts
        for box, _, _ in chain[:-1]:
            _grow(data, box, len(stts) - (end - start))
        f.seek(offset)
        f.write(data)
        f.truncate()  # a table of fewer runs than OpenCV's leaves a shorter moov
