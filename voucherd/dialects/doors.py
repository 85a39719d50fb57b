"""Which face a path belongs to, for the refusals made before any route is chosen.

A body over the size limit or a NUL in the URL is refused at the front door (api/front.py) before
routing; the path's prefix still says which platform the client speaks, so each face answers
in its own error shape. app.py hands this table to the front door.
"""

from __future__ import annotations

from voucherd.api.limits import Doors
from voucherd.dialects import imovo, yoyo
from voucherd.dialects import vista as vista_face
from voucherd.dialects.vista import errors as vista
from voucherd.dialects.voucherify import errors as voucherify

DOORS: Doors = (
    ("/v1/", voucherify.door),
    ("/cvs-issuer/rest/", yoyo.door),
    ("/VoucherRequest/", imovo.door),
    ("/Voucher/", imovo.door),
    (f"{vista_face.PREFIX}/", vista.door),
    (vista_face.RESOLVE_PATH, vista.door),
)
