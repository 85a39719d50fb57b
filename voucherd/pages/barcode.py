"""The voucher's code as a Code 128 barcode and a QR code, both SVG.

Both encode the code itself, not the page URL: a cashier scans the voucher at the till, and the
till looks the code up (a merchant's scanner does not open web pages). An issuer wanting a QR
that opens the page can build one from ``page_url``.

Code 128 is encoded by python-barcode (character sets, switching and check symbol), but drawn
here rather than by its SVGWriter: that writer sizes the image in millimetres with no viewBox
(so it clips instead of scaling to a phone's width), colours bars with ``style`` attributes (which
a strict Content-Security-Policy refuses on an inline SVG), draws one ``<rect>`` per bar and
starts with a DOCTYPE that is not allowed inside HTML. Drawing from the module pattern keeps the
quiet zones the symbology demands and lets the browser scale the whole symbol evenly.
"""

from __future__ import annotations

import io

import segno
from barcode.codex import Code128  # type: ignore[import-untyped]
from barcode.errors import BarcodeError  # type: ignore[import-untyped]

# ISO/IEC 15417 asks for at least ten modules of white either side of a Code 128 symbol.
QUIET_ZONE_MODULES = 10
# Tall enough for a hand scanner's line to cross it at a slant: about a third of a typical
# symbol's width, well above the 15 % minimum of the specification.
BAR_HEIGHT_MODULES = 60
# Drawn at a whole number of CSS pixels per module, so a phone's screen never rounds two bars
# of equal width to different widths; CSS may still scale it down for long codes.
PIXELS_PER_MODULE = 2
QR_PIXELS_PER_MODULE = 5
QR_QUIET_ZONE_MODULES = 4  # ISO/IEC 18004's quiet zone


def code128_modules(code: str) -> str:
    """The symbol as ``1`` (bar) and ``0`` (space) modules, without quiet zones.

    Raises ValueError for a code Code 128 cannot carry (beyond ASCII).
    """
    try:
        return str(Code128(code).build()[0])
    except (BarcodeError, KeyError, ValueError) as exc:
        raise ValueError("the code cannot be written as Code 128") from exc


def code128_svg(code: str) -> str:
    modules = code128_modules(code)
    width = len(modules) + 2 * QUIET_ZONE_MODULES
    height = BAR_HEIGHT_MODULES
    bars = []
    for start, length in _runs_of_bars(modules):
        x = start + QUIET_ZONE_MODULES
        bars.append(f"M{x} 0h{length}v{height}h-{length}z")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width * PIXELS_PER_MODULE}" height="{height * PIXELS_PER_MODULE}" '
        'shape-rendering="crispEdges" role="img" aria-label="Code 128 barcode">'
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(bars)}"/></svg>'
    )


def qr_svg(code: str) -> str:
    # Error correction M (15 %) survives a scratched screen protector; the symbol stays small.
    symbol = segno.make(code, error="m", micro=False)
    out = io.BytesIO()
    symbol.save(
        out,
        kind="svg",
        scale=QR_PIXELS_PER_MODULE,
        border=QR_QUIET_ZONE_MODULES,
        dark="#000",
        light="#fff",
        xmldecl=False,
        svgclass=None,
        lineclass=None,
        omitsize=True,  # a viewBox, so CSS can scale it; the pixel size is set below
    )
    width, height = symbol.symbol_size(scale=QR_PIXELS_PER_MODULE, border=QR_QUIET_ZONE_MODULES)
    svg = out.getvalue().decode("utf-8")
    size = f'width="{width}" height="{height}" shape-rendering="crispEdges"'
    return svg.replace("<svg ", f'<svg {size} role="img" aria-label="QR code" ', 1)


def _runs_of_bars(modules: str) -> list[tuple[int, int]]:
    """(first module, width) of each bar: one path segment per bar, not per module."""
    runs = []
    start = None
    for index, module in enumerate(modules + "0"):
        if module == "1" and start is None:
            start = index
        elif module == "0" and start is not None:
            runs.append((start, index - start))
            start = None
    return runs
