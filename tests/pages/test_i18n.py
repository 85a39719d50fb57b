"""The voucher page and the default messages speak the campaign's language (issue 15).

On SQLite and PostgreSQL through the app; the catalogues are checked against the source so a
changed English text cannot silently read English in every other language.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.languages import LABELS, LOCALE_OF
from tests.support.pages import ParsedPage
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database
from voucherd.delivery import messages
from voucherd.formatting import format_expiry
from voucherd.pages.i18n import LANGUAGES, html_lang, language_of
from voucherd.pages.schemas import code_groups
from voucherd.vouchers import service as vouchers
from voucherd.vouchers.models import Voucher

PACKAGE = Path(messages.__file__).parent.parent
LOCALES = PACKAGE / "locales"
DEFAULT_MESSAGES = (
    messages.DEFAULT_SMS,
    messages.DEFAULT_EMAIL_SUBJECT,
    messages.DEFAULT_EMAIL_TEXT,
    messages.DEFAULT_EMAIL_HTML,
)


def source_msgids() -> list[str]:
    found = [
        message
        for _, _, message, _, _ in extract_from_dir(
            str(PACKAGE / "pages"),
            method_map=[("**.py", "python"), ("templates/**.html", "jinja2")],
            keywords={"_": None},
        )
    ]
    return list(dict.fromkeys([*found, *DEFAULT_MESSAGES]))


def placeholders(text: str) -> set[str]:
    """The %(name)s and Jinja ``{{ ... }}`` / ``{% ... %}`` variables a text uses."""
    names = set(re.findall(r"%\((\w+)\)s", text))
    for block in re.findall(r"\{[{%](.*?)[%}]\}", text):
        names |= set(re.findall(r"\b(?:v\.)?[a-z_]+\b", block)) - {
            "if", "else", "endif", "for", "in", "endfor", "length", "v"
        }  # fmt: skip
    return names


class TestCatalogues:
    def test_the_template_lists_every_text_of_the_source(self) -> None:
        with (LOCALES / "voucherd.pot").open("rb") as pot:
            listed = {m.id for m in read_po(pot) if m.id}
        assert set(source_msgids()) == listed

    @pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
    def test_every_text_is_translated_with_the_same_placeholders(self, language: str) -> None:
        with (LOCALES / language / "LC_MESSAGES" / "voucherd.po").open("rb") as po:
            catalog = read_po(po)
        for msgid in source_msgids():
            message = catalog.get(msgid)
            assert message is not None, f"{language}: {msgid!r} missing"
            assert message.string, f"{language}: {msgid!r} untranslated"
            assert not message.fuzzy, f"{language}: {msgid!r} is fuzzy"
            assert isinstance(message.string, str)
            assert placeholders(message.string) == placeholders(msgid), (language, msgid)


class TestLanguageOfALocale:
    @pytest.mark.parametrize(
        ("locale", "language", "lang"),
        [
            ("de", "de", "de"),
            ("de-CH", "de", "de-CH"),
            ("af_ZA", "af", "af-ZA"),
            ("en-GB", "en", "en-GB"),
            ("pt-BR", "en", "en"),  # no catalogue: English words, and the page says so
            ("xx-nonsense", "en", "en"),
            (None, "en", "en"),
        ],
    )
    def test_a_locale_picks_a_catalogue(self, locale: str | None, language: str, lang: str) -> None:
        assert language_of(locale) == language
        assert html_lang(locale) == lang


class TestExpiry:
    def test_the_end_of_the_day_reads_as_a_date(self) -> None:
        end = datetime(2027, 6, 30, 22, 59, 59, tzinfo=UTC)
        assert format_expiry(end, "Europe/London", "en_GB") == "30 Jun 2027"
        assert format_expiry(end, "Europe/Berlin", "de") == "01.07.2027, 00:59"

    def test_another_time_reads_without_seconds(self) -> None:
        moment = datetime(2027, 6, 30, 15, 30, 12, tzinfo=UTC)
        assert format_expiry(moment, "Europe/London", "en_GB") == "30 Jun 2027, 16:30"
        assert format_expiry(None, "UTC") is None


class TestCodeGroups:
    @pytest.mark.parametrize(
        ("code", "groups"),
        [
            ("ABCDEFGHJKLMN", ["ABCD", "EFGH", "JKLMN"]),  # the default 13: 4-4-5
            ("ABCDEFGHJKLM", ["ABCD", "EFGH", "JKLM"]),
            ("ABCDEFGHJ", ["ABCD", "EFGHJ"]),
            ("ABCDEFGHJK", ["ABCD", "EFGH", "JK"]),
            ("SHORT1", ["SHORT1"]),
            ("CAMP-1234-XY", ["CAMP-1234-XY"]),  # its own separators stay as they are
        ],
    )
    def test_groups_for_reading_aloud(self, code: str, groups: list[str]) -> None:
        assert code_groups(code) == groups
        assert "".join(groups) == code


def _gift_card(db: Database, tenant: Tenant, locale: str) -> Any:
    campaign = make_campaign(
        db,
        tenant,
        type="GIFT",
        currency="EUR",
        default_value=5000,
        locale=locale,
        timezone="Europe/London",
        expiration_date="2027-06-30T22:59:59Z",
        help_text="0800 310 0000",
        store_finder_url="https://shops.example/find",
    )
    return issue(db, tenant, campaign, holder={"name": "Ada Lovelace"})


class TestPage:
    @pytest.mark.parametrize("language", LANGUAGES)
    def test_the_page_speaks_the_campaigns_language(
        self, api: TestClient, db: Database, tenant: Tenant, language: str
    ) -> None:
        record = _gift_card(db, tenant, LOCALE_OF[language])

        html = api.get(f"/v/{record.voucher.public_token}").text

        assert f'<html lang="{LOCALE_OF[language]}">' in html
        page = ParsedPage(html)
        shown = " ".join(
            page.text_of(part) for part in ("value", "validity", "holder", "help", "store-finder")
        )
        for label in LABELS[language]:
            assert label in f"{page.tags('h1')[0].content} {shown}", (language, label)
        if language != "en":
            for english in ("Balance", "Expires", "Voucher holder", ">Help<", "Find a store"):
                assert english not in html, (language, english)

    def test_a_language_without_a_catalogue_reads_english_and_says_so(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift_card(db, tenant, "pt-BR")
        html = api.get(f"/v/{record.voucher.public_token}").text
        assert '<html lang="en">' in html
        assert "Find a store" in html

    def test_the_code_reads_in_groups_and_the_symbols_keep_it_exact(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift_card(db, tenant, "en-GB")
        code = record.voucher.code
        html = api.get(f"/v/{record.voucher.public_token}").text
        assert f"<span>{code[:4]}</span><span>{code[4:8]}</span><span>{code[8:]}</span>" in html
        qr = api.get(f"/v/{record.voucher.public_token}/qr.svg")
        assert qr.status_code == 200
        assert len(code) == 13

    def test_a_cancelled_voucher_no_longer_shows_its_value_as_spendable(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift_card(db, tenant, "de-DE")
        active = ParsedPage(api.get(f"/v/{record.voucher.public_token}").text)
        assert active.by_id["value"].attrs["class"] == "figure"
        vouchers.cancel_voucher(db, tenant.caller, record.voucher.id, "lost")

        page = ParsedPage(api.get(f"/v/{record.voucher.public_token}").text)

        assert page.by_id["value"].attrs["class"] == "figure spent"
        assert page.text_of("banner").startswith("Dieser Gutschein wurde storniert")


class TestDefaultMessages:
    def _facts(self, db: Database, tenant: Tenant, locale: str) -> tuple[Voucher, Campaign]:
        record = _gift_card(db, tenant, locale)
        with db.unit_of_work() as session:
            voucher = session.get_one(Voucher, record.voucher.id)
            campaign = session.get_one(Campaign, voucher.campaign_id)
            session.expunge_all()
        return voucher, campaign

    @pytest.mark.parametrize(
        ("language", "words"),
        [
            ("en", "voucher worth €50.00"),
            ("de", "Gutschein {campaign} im Wert von 50,00\xa0€"),
            ("fr", "bon {campaign} d'une valeur de 50,00\xa0€"),
            ("es", "vale {campaign} por valor de 50,00\xa0€"),
            ("nl", "tegoedbon {campaign} ter waarde van €\xa050,00"),
            ("af", "koepon {campaign} ter waarde van €50,00"),
        ],
    )
    def test_the_default_sms_is_in_the_campaigns_language(
        self, db: Database, tenant: Tenant, language: str, words: str
    ) -> None:
        voucher, campaign = self._facts(db, tenant, LOCALE_OF[language])
        text = messages.holder_message(voucher, campaign, page_url="https://v.example/v/t")
        assert text is not None
        assert words.format(campaign=campaign.name) in text
        assert text.endswith("https://v.example/v/t")

    def test_the_default_email_is_in_the_campaigns_language(
        self, db: Database, tenant: Tenant
    ) -> None:
        voucher, campaign = self._facts(db, tenant, "fr-FR")
        values = messages.variables(
            voucher, campaign, customer_name="Ada", page_url="https://v.example/v/t"
        )
        mail = messages.compose("email", None, values, locale="fr-FR")
        assert mail.subject == f"Votre bon {campaign.name}"
        assert mail.text.startswith("Bonjour Ada,\n\nvoici votre bon")
        assert mail.html is not None
        assert '<html lang="fr">' in mail.html
        assert "Ouvrez votre bon" in mail.html
