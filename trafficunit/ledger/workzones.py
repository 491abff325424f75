"""Road-works registry helpers: one QR code per site, linking to the site's page.

Sites are stored by :meth:`trafficunit.ledger.Ledger.register_workzone` (one code per
permitted site, docs/domain.md); inspectors scan the QR code on the site's board to open its page.

>>> png = qr_png("https://example.org/workzones/KT-2018-0001/page")
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io

from .errors import ValidationError

__all__ = ["qr_png"]


def qr_png(url: str, *, box_size: int = 8, border: int = 4) -> bytes:
    """A PNG image of a QR code encoding ``url`` (error correction level M).

    Parameters
    ----------
    url
        What the code encodes (the site's page).
    box_size
        Pixels per module.
    border
        Quiet zone, modules (the QR specification asks for at least 4).
    """
    from .._optional import require

    qrcode = require("qrcode", "drawing a QR code")
    ERROR_CORRECT_M = require("qrcode.constants", "drawing a QR code").ERROR_CORRECT_M

    if not url or len(url) > 2000:
        raise ValidationError("a QR code needs a URL of 1 to 2000 characters")
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=border)
    qr.add_data(url)
    qr.make(fit=True)
    img = qr.make_image(fill_color="black", back_color="white")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
