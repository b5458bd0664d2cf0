"""Unmodified third-party Bitrix24 clients against the emulator over real sockets.

* ``fast_bitrix24`` (aiohttp, webhook mode, JSON POSTs): ``get_all`` over 520 seeded
  companies (first page + parallel batches of ``start=`` pages), ``call`` with a list of
  updates (packed into batches), and ``call_batch`` with a ``$result`` reference.
* ``b24pysdk`` (requests, OAuth mode, HTTPS with the test CA given through
  ``REQUESTS_CA_BUNDLE``): a list page, a get, the ``start=-1`` fast list (chained
  ``$result`` batches), ``event.bind`` offline and ``event.offline.get``.

Results are compared with the emulator's own CRM store, record by record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from b24pysdk import BitrixApp, BitrixToken, Client
from fast_bitrix24 import Bitrix

from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread, make_tls_files

COMPANIES = 520


@pytest.fixture(scope="module")
def seeded() -> Emulator:
    """An emulator with 520 deterministic companies."""
    emulator = Emulator()
    emulator.seed_crm(companies=COMPANIES, seed=11)
    return emulator


def store_titles(emulator: Emulator) -> dict[str, str]:
    """ID → TITLE straight from the CRM store (what every client must see)."""
    crm = emulator.default_portal.crm
    return {str(i): crm.get("company", i)["TITLE"] for i in crm.ids("company")}


@pytest.fixture(scope="module")
def http_server(seeded: Emulator) -> Iterator[ServerThread]:
    with ServerThread(seeded) as srv:
        yield srv


@pytest.fixture(scope="module")
def https_server(
    seeded: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    tls = make_tls_files(Path(tmp_path_factory.mktemp("tls")))
    with ServerThread(seeded, tls=True, tls_files=tls) as srv:
        yield srv


@pytest.fixture
def fast(seeded: Emulator, http_server: ServerThread) -> Bitrix:
    hook = seeded.add_webhook(1)
    return Bitrix(f"{http_server.base_url}/rest/1/{hook.secret}/", verbose=False)


@pytest.fixture
def sdk(
    seeded: Emulator, https_server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> tuple[Client, dict[str, Any]]:
    assert https_server.tls_files is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https_server.tls_files.ca_pem))
    creds = seeded.install_app(scopes=("crm", "pull", "user"), base_url=https_server.base_url)
    app = BitrixApp(client_id=creds["client_id"], client_secret=creds["client_secret"])
    token = BitrixToken(
        domain=https_server.base_url.removeprefix("https://"),
        auth_token=creds["access_token"],
        refresh_token=creds["refresh_token"],
        bitrix_app=app,
    )
    return Client(token), creds


def test_fast_bitrix24_get_all_returns_every_company_exactly(
    seeded: Emulator, fast: Bitrix
) -> None:
    """get_all on crm.company.list gives all 520 companies, each once, with the
    store's titles; the library needed one list call plus batches."""
    since = seeded.log[-1].seq if seeded.log else 0
    rows = fast.get_all("crm.company.list", {"select": ["ID", "TITLE"]})
    assert len(rows) == COMPANIES
    assert {r["ID"]: r["TITLE"] for r in rows} == store_titles(seeded)
    methods = [e.method for e in seeded.requests(since=since)]
    assert methods[0] == "crm.company.list" and set(methods[1:]) == {"batch"}
    assert all(e.status == 200 for e in seeded.requests(since=since))


def test_fast_bitrix24_call_with_a_list_of_updates(seeded: Emulator, fast: Bitrix) -> None:
    """call('crm.company.update', [...60 items]) updates each record in the store."""
    ids = seeded.default_portal.crm.ids("company")[:60]
    answers = fast.call(
        "crm.company.update", [{"ID": i, "fields": {"COMMENTS": f"via fast {i}"}} for i in ids]
    )
    assert list(answers) == [True] * 60
    crm = seeded.default_portal.crm
    assert [crm.get("company", i)["COMMENTS"] for i in ids] == [f"via fast {i}" for i in ids]


def test_fast_bitrix24_call_batch_with_a_result_reference(seeded: Emulator, fast: Bitrix) -> None:
    """call_batch: a get, then a list filtered by $result[get][ID]."""
    answer = fast.call_batch(
        {
            "halt": 0,
            "cmd": {
                "one": "crm.company.get?ID=7",
                "same": "crm.company.list?filter[ID]=$result[one][ID]&select[]=ID&select[]=TITLE",
            },
        }
    )
    titles = store_titles(seeded)
    assert answer["one"]["TITLE"] == titles["7"]
    assert answer["same"] == [{"ID": "7", "TITLE": titles["7"]}]


def test_b24pysdk_list_and_get_over_https(
    seeded: Emulator, sdk: tuple[Client, dict[str, Any]]
) -> None:
    """A list page (50 rows, total) and a get, over TLS with the test CA."""
    client, _ = sdk
    page = client.crm.company.list(select=["ID", "TITLE"], order={"ID": "ASC"}).response
    titles = store_titles(seeded)
    first_ids = sorted(int(i) for i in titles)[:50]
    assert [(r["ID"], r["TITLE"]) for r in page.result] == [
        (str(i), titles[str(i)]) for i in first_ids
    ]
    assert (page.total, page.next) == (COMPANIES, 50)
    one = client.crm.company.get(bitrix_id=first_ids[3]).result
    assert one["TITLE"] == titles[str(first_ids[3])]


def test_b24pysdk_fast_list_reads_everything_in_id_order(
    seeded: Emulator, sdk: tuple[Client, dict[str, Any]]
) -> None:
    """as_list_fast (start=-1, >ID cursor chained through $result in batches) returns
    all companies in ascending ID order without a count."""
    client, _ = sdk
    since = seeded.log[-1].seq if seeded.log else 0
    rows = list(client.crm.company.list(select=["ID", "TITLE"]).as_list_fast().result)
    titles = store_titles(seeded)
    assert [r["ID"] for r in rows] == [str(i) for i in sorted(int(k) for k in titles)]
    assert {r["ID"]: r["TITLE"] for r in rows} == titles
    assert "batch" in [e.method for e in seeded.requests(since=since)]


def test_b24pysdk_offline_events_round_trip(
    seeded: Emulator, sdk: tuple[Client, dict[str, Any]]
) -> None:
    """event.bind (offline, with auth_connector) then a UI user's update, then
    event.offline.get with the same connector returns that record."""
    client, creds = sdk
    bound = client.event.bind(
        "ONCRMCOMPANYUPDATE", event_type="offline", auth_connector="erp"
    ).result
    assert bound is True
    target = seeded.default_portal.crm.ids("company")[-1]
    seeded.ui_update("company", target, {"COMMENTS": "changed in the UI"}, user_id=2)
    got = client.event.offline.get(auth_connector="erp").result
    assert got["process_id"] is None
    events = list(got["events"])
    assert [(e["EVENT_NAME"], e["EVENT_DATA"]["FIELDS"]["ID"]) for e in events] == [
        ("ONCRMCOMPANYUPDATE", target)
    ]
    assert client.event.offline.get(auth_connector="erp").result["events"] == []
    assert creds["client_id"] in {e.client_id for e in seeded.requests("event.offline.get")}
