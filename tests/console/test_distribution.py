"""Manual distribution from an uploaded CSV file: the same pool claim, channel Dashboard."""

from __future__ import annotations

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.console import browser, make_operator, sign_in
from voucherd.customers import service as customers
from voucherd.customers.schemas import CustomerFilters
from voucherd.db.engine import Database
from voucherd.publications import service as publications
from voucherd.publications.schemas import PublicationFilters

CSV = '\ufeffemail,phone,name\r\nann@x.example,,"Smith, Ann"\r\n,+447911123456,Cy\r\n'


class TestDistributeFromCsv:
    def test_an_uploaded_file_publishes_one_code_each_once(self, db: Database) -> None:
        tenant = Tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=1000)
        for _ in range(3):
            issue(db, tenant, campaign)
        manager = make_operator(db, tenant, "manager")
        url = f"/console/campaigns/{campaign.id}/distribute"
        with browser(db) as client:
            csrf = sign_in(client, manager.email)
            upload = {"recipients_file": ("people.csv", CSV.encode("utf-8"), "text/csv")}
            form = {"csrf": csrf, "batch": "f1", "recipients": ""}
            done = client.post(url, data=form, files=upload)
            again = client.post(url, data=form, files=upload)
        assert "Published 2 codes" in done.text
        assert again.status_code == 200
        history = publications.list_publications(
            db, tenant.caller, PublicationFilters(campaign=campaign.id), limit=10, cursor=None
        ).items
        assert len(history) == 2  # the second upload of the same form claimed nothing more
        assert {p.publication.channel for p in history} == {"Dashboard"}
        assert {p.publication.actor for p in history} == {manager.id}
        assert len({code for p in history for _, code in p.codes}) == 2
        (ann,) = customers.list_customers(
            db, tenant.caller, CustomerFilters(q="ann@x.example"), limit=5, cursor=None
        ).items
        assert ann.name == "Smith, Ann"  # a quoted cell keeps its comma

    def test_a_bad_file_is_named_and_shown_back(self, db: Database) -> None:
        tenant = Tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=1000)
        issue(db, tenant, campaign)
        admin = make_operator(db, tenant)
        url = f"/console/campaigns/{campaign.id}/distribute"
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            no_contact = client.post(
                url,
                data={"csrf": csrf, "batch": "f2"},
                files={"recipients_file": ("p.csv", b"ann@x.example\n,,Nobody\n", "text/csv")},
            )
            not_text = client.post(
                url,
                data={"csrf": csrf, "batch": "f3"},
                files={"recipients_file": ("p.csv", b"\xff\xfe\x00a", "text/csv")},
            )
            no_csrf = client.post(
                url, files={"recipients_file": ("p.csv", CSV.encode("utf-8"), "text/csv")}
            )
        assert no_contact.status_code == 422
        assert 'id="e-recipients"' in no_contact.text
        assert "line 2" in no_contact.text
        assert "ann@x.example" in no_contact.text  # the file's text is back in the box
        assert not_text.status_code == 422
        assert "not UTF-8" in not_text.text
        assert no_csrf.status_code == 403
        assert (
            publications.list_publications(
                db, tenant.caller, PublicationFilters(campaign=campaign.id), limit=10, cursor=None
            ).items
            == []
        )
