"""Make the web map's label glyphs: SDF glyph PBFs (MapLibre ``glyphs``) from a TrueType font.

    python scripts/make_glyphs.py /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
        "DejaVu Sans" server/static/vendor/glyphs

writes ``<out>/<name>/0-255.pbf`` and ``256-511.pbf`` (Latin, Latin-1, Latin Extended-A/B).
CJK is not shipped: MapLibre draws it with the browser's fonts (``localIdeographFontFamily``).
The signed distance field follows TinySDF / fontnik: 24 px glyphs, 3 px buffer, radius 8,
cutoff 0.25 (so the glyph edge is at 192/255). Pillow renders, scipy measures distances.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import ImageFont
from scipy.ndimage import distance_transform_edt

SIZE, BUFFER, RADIUS, CUTOFF = 24, 3, 8.0, 0.25


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def _uint(num: int, v: int) -> bytes:
    return _field(num, 0) + _varint(v)


def _sint(num: int, v: int) -> bytes:
    return _field(num, 0) + _varint((v << 1) ^ (v >> 63))


def _bytes(num: int, data: bytes) -> bytes:
    return _field(num, 2) + _varint(len(data)) + data


def _sdf(alpha: np.ndarray) -> np.ndarray:
    """Signed distance field of an anti-aliased coverage image (0..1), as TinySDF encodes it."""
    a = np.pad(alpha, BUFFER)
    inside = a > 0.5
    outer = distance_transform_edt(~inside)  # distance of outside pixels to the glyph
    inner = distance_transform_edt(inside)  # distance of inside pixels to the background
    d = np.where(inside, -(inner - 0.5), outer - 0.5)
    edge = (a > 0) & (a < 1)
    d = np.where(edge, 0.5 - a, d)  # sub-pixel edge from the coverage
    return np.clip(np.round(255 * (1 - (d / RADIUS + CUTOFF))), 0, 255).astype(np.uint8)


def glyph(font: ImageFont.FreeTypeFont, cp: int, ascent: int) -> bytes | None:
    ch = chr(cp)
    if cp < 32 or 127 <= cp < 160:
        return None  # control characters
    if cp > 32 and font.getmask(ch).getbbox() is None and not ch.isspace():
        return None  # the font has no such glyph
    advance = round(font.getlength(ch))
    mask, (ox, oy) = font.getmask2(ch, mode="L")
    w, h = mask.size
    msg = _uint(1, cp)
    if w and h and mask.getbbox() is not None:
        alpha = np.asarray(mask, dtype=np.float64).reshape(h, w) / 255.0
        msg += _bytes(2, _sdf(alpha).tobytes())
    else:
        w = h = 0
    top = ascent - oy  # pixels from the baseline to the glyph's top
    msg += _uint(3, w) + _uint(4, h) + _sint(5, ox) + _sint(6, top - 26) + _uint(7, advance)
    return msg


def main(font_path: str, name: str, out: str) -> None:
    font = ImageFont.truetype(font_path, SIZE, layout_engine=ImageFont.Layout.BASIC)
    ascent, _ = font.getmetrics()
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    for lo in (0, 256):
        hi = lo + 255
        glyphs = [g for cp in range(lo, hi + 1) if (g := glyph(font, cp, ascent)) is not None]
        stack = _bytes(1, name.encode()) + _bytes(2, f"{lo}-{hi}".encode())
        stack += b"".join(_bytes(3, g) for g in glyphs)
        (folder / f"{lo}-{hi}.pbf").write_bytes(_bytes(1, stack))
        print(f"{folder / f'{lo}-{hi}.pbf'}: {len(glyphs)} glyphs")


if __name__ == "__main__":
    main(*sys.argv[1:4])
