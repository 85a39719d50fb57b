"""Reading the voucher page back: its HTML, a Code 128 symbol, a PNG screenshot.

Written from the specifications rather than with the libraries the page is drawn with, so a test
that decodes what the page drew checks python-barcode and our drawing, not itself:
the Code 128 widths are ISO/IEC 15417's table, the PNG reader follows the PNG specification.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

# ISO/IEC 15417 Code 128: bar/space widths of symbol values 0..105 (103-105 are the starts).
_WIDTHS = re.findall(
    r"\d{6}",
    "212222 222122 222221 121223 121322 131222 122213 122312 132212 221213 221312 231212 "
    "112232 122132 122231 113222 123122 123221 223211 221132 221231 213212 223112 312131 "
    "311222 321122 321221 312212 322112 322211 212123 212321 232121 111323 131123 131321 "
    "112313 132113 132311 211313 231113 231311 112133 112331 132131 113123 113321 133121 "
    "313121 211331 231131 213113 213311 213131 311123 311321 331121 312113 312311 332111 "
    "314111 221411 431111 111224 111422 121124 121421 141122 141221 112214 112412 122114 "
    "122411 142112 142211 241211 221114 413111 241112 134111 111242 121142 121241 114212 "
    "124112 124211 411212 421112 421211 212141 214121 412121 111143 111341 131141 114113 "
    "114311 411113 411311 113141 114131 311141 411131 211412 211214 211232",
)
_VALUE_OF = {w: v for v, w in enumerate(_WIDTHS)}
_STOP = (2, 3, 3, 1, 1, 1, 2)
_START = {103: "A", 104: "B", 105: "C"}
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")


class NotCode128(ValueError):
    pass


def runs_of(dark: list[bool]) -> list[int]:
    """Lengths of alternating bar/space runs from the first bar to the last."""
    if True not in dark:
        return []
    first = dark.index(True)
    last = len(dark) - 1 - dark[::-1].index(True)
    runs: list[int] = []
    previous = None
    for pixel in dark[first : last + 1]:
        if pixel == previous:
            runs[-1] += 1
        else:
            runs.append(1)
            previous = pixel
    return runs


def decode_code128(runs: Sequence[float]) -> str:
    """The text of a Code 128 symbol given its bar/space run widths in any unit.

    Each symbol is 11 modules wide, so its six runs are scaled by their own sum, as a scanner
    does: uneven scaling across the symbol does not matter.
    """
    if len(runs) < 6 * 3 + 7 or (len(runs) - 7) % 6:
        raise NotCode128(f"{len(runs)} runs is no Code 128 symbol")
    values = []
    for i in range(0, len(runs) - 7, 6):
        group = runs[i : i + 6]
        total = sum(group)
        widths = "".join(str(max(1, min(4, round(w * 11 / total)))) for w in group)
        if widths not in _VALUE_OF:
            raise NotCode128(f"no symbol has widths {widths}")
        values.append(_VALUE_OF[widths])
    stop = runs[-7:]
    scaled = tuple(round(w * 13 / sum(stop)) for w in stop)
    if scaled != _STOP:
        raise NotCode128(f"no stop pattern at the end ({scaled})")
    start, *data, check = values
    if start not in _START:
        raise NotCode128("no start symbol")
    if (start + sum(i * v for i, v in enumerate(data, 1))) % 103 != check:
        raise NotCode128("check symbol does not match")
    return _text(_START[start], data)


def _text(charset: str, data: list[int]) -> str:
    out = []
    shift = False
    for value in data:
        current = ("B" if charset == "A" else "A") if shift else charset
        shift = False
        if current == "C" and value < 100:
            out.append(f"{value:02d}")
        elif value < 96 and current in "AB":
            if current == "B" or value < 64:
                out.append(chr(value + 32))
            else:
                out.append(chr(value - 64))
        elif value == 98 and charset in "AB":
            shift = True
        elif value == 99:
            charset = "C"
        elif value == 100:
            charset = "B"
        elif value == 101:
            charset = "A"
        elif value in (96, 97, 102):
            continue  # FNC3, FNC2, FNC1 carry no text
        else:
            raise NotCode128(f"value {value} makes no sense in code set {current}")
    return "".join(out)


def modules_of_svg_path(d: str) -> list[int]:
    """Bar/space runs of the barcode SVG's path ("M<x> 0h<w>v<h>h-<w>z" per bar)."""
    bars = []
    for segment in d.split("z"):
        if not segment:
            continue
        start, _, rest = segment[1:].partition(" ")
        bars.append((int(start), int(rest.split("h")[1].split("v")[0])))
    runs = []
    for index, (x, width) in enumerate(bars):
        if index:
            previous_end = bars[index - 1][0] + bars[index - 1][1]
            runs.append(x - previous_end)
        runs.append(width)
    return runs


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)  # tags of every descendant

    @property
    def content(self) -> str:
        # HTML's whitespace only: a no-break space in "50,00\xa0€" is part of the text.
        return _HTML_SPACE.sub(" ", " ".join(self.text)).strip(" ")


class ParsedPage(HTMLParser):
    """Every element of the page in order, and the text and descendants of each one with an id."""

    _VOID = frozenset(
        ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param")
        + ("source", "track", "wbr")
    )

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.by_id: dict[str, Element] = {}
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        for parent in self._open:
            parent.children.append(tag)
        self.elements.append(element)
        if "id" in element.attrs:
            self.by_id[element.attrs["id"]] = element
        if tag not in self._VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self._VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text.append(data)

    def tags(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]

    def text_of(self, element_id: str) -> str:
        return self.by_id[element_id].content


@dataclass
class Image:
    width: int
    height: int
    rows: list[list[tuple[int, int, int]]]  # RGB, alpha dropped (screenshots are opaque)


def read_png(data: bytes) -> Image:
    """An 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes), per the PNG spec."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    offset = 8
    idat = bytearray()
    header = b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour})")
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append([(line[x], line[x + 1], line[x + 2]) for x in range(0, stride, channels)])
        previous = line
    return Image(width, height, rows)


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:
        for i in range(len(line)):
            line[i] = (line[i] + previous[i]) & 0xFF
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            upper_left = previous[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + _paeth(left, up, upper_left)) & 0xFF
        else:
            raise ValueError(f"unknown PNG filter {kind}")


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c
