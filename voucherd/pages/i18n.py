"""The words a holder reads (the voucher page, the default messages) in the campaign's language.

Catalogues are gettext ``.po`` files in ``voucherd/locales/<language>/LC_MESSAGES/voucherd.po``,
with ``voucherd/locales/voucherd.pot`` as their template; English is the source text itself.
They are read at run time with babel (already a dependency, for numbers and dates) and compiled
in memory once per process, rather than compiled to ``.mo`` files at build time: setuptools has
no step for that without another build plugin, an editable install or a plain checkout would run
without the ``.mo`` files, and a dozen short catalogues take milliseconds to read.

A campaign's locale (``de``, ``de-CH``, ``af_ZA``) picks the catalogue of its language; a
language without one reads English, and its page says ``lang="en"`` so a screen reader does
not read English words with another language's voice.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from io import BytesIO

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

DOMAIN = "voucherd"
SOURCE_LANGUAGE = "en"
# The seed platforms' markets: Yoyo (South Africa: English, Afrikaans), Voucherify and Vista
# (Europe), i-movo (UK).
LANGUAGES = ("en", "de", "fr", "es", "nl", "af")

Gettext = Callable[[str], str]


def _locale(locale: str | None) -> Locale | None:
    try:
        return Locale.parse((locale or SOURCE_LANGUAGE).replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def language_of(locale: str | None) -> str:
    """The language whose words a campaign in ``locale`` reads: one of LANGUAGES."""
    parsed = _locale(locale)
    if parsed is None or parsed.language not in LANGUAGES:
        return SOURCE_LANGUAGE
    return parsed.language


def html_lang(locale: str | None) -> str:
    """The BCP 47 tag for ``<html lang>``: the campaign's locale when its words are translated."""
    parsed = _locale(locale)
    if parsed is None or parsed.language not in LANGUAGES:
        return SOURCE_LANGUAGE
    return f"{parsed.language}-{parsed.territory}" if parsed.territory else parsed.language


@lru_cache(maxsize=len(LANGUAGES))
def _translations(language: str) -> NullTranslations:
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    source = files("voucherd").joinpath(f"locales/{language}/LC_MESSAGES/{DOMAIN}.po")
    with source.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out: they read as English
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def translator(locale: str | None) -> Gettext:
    """``gettext`` for a campaign's locale."""
    return _translations(language_of(locale)).gettext
