"""event.bind / unbind / get / events, firing into the queue and to online handlers,
onOfflineEvent throttling and finish_request (digest §6.2, §7.2, §7.3, §7.11)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.emulator.context import CallContext
from connector.emulator.events import Delivery
from connector.emulator.portal import Portal
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError

APP = "local.app1"


def app_ctx(
    connector: str = "OneC",
    *,
    client_id: str = APP,
    admin: bool = True,
    user_id: int = 1,
    webhook: bool = False,
    scopes: frozenset[str] = frozenset(),
) -> CallContext:
    return CallContext(
        client_id=client_id,
        user_id=user_id,
        is_admin=admin,
        auth_connector=connector,
        via_webhook=webhook,
        scopes=scopes,
    )


def call(
    portal: Portal, ctx: CallContext, method: str, params: dict[str, Any] | None = None
) -> MethodResult:
    entry = registry.lookup(method)
    assert entry is not None, method
    return entry[0](portal, ctx, dict(params or {}))


def rest_error(
    portal: Portal, ctx: CallContext, method: str, params: dict[str, Any] | None = None
) -> RestError:
    with pytest.raises(RestError) as info:
        call(portal, ctx, method, params)
    return info.value


@pytest.fixture
def portal() -> Portal:
    return Portal()


# ---- event.bind ---------------------------------------------------------------------


def test_bind_offline_and_online_and_get_shape(portal: Portal) -> None:
    """event.get reports offline bindings with their stored connector (A3) and online
    ones with handler and a string auth_type (§7.2)."""
    ctx = app_ctx()
    assert (
        call(
            portal, ctx, "event.bind", {"event": "ONCRMLEADUPDATE", "event_type": "offline"}
        ).result
        is True
    )
    call(
        portal,
        ctx,
        "event.bind",
        {"event": "ONCRMLEADUPDATE", "handler": "http://apphost.com/handler/"},
    )
    assert call(portal, ctx, "event.get").result == [
        {"event": "ONCRMLEADUPDATE", "connector_id": "OneC", "offline": 1},
        {
            "event": "ONCRMLEADUPDATE",
            "handler": "http://apphost.com/handler/",
            "auth_type": "0",
            "offline": 0,
        },
    ]


def test_event_names_and_parameter_names_are_case_insensitive(portal: Portal) -> None:
    """event=onCrmLeadUpdate is stored upper-cased; EVENT_TYPE may be any case."""
    call(portal, app_ctx(), "event.bind", {"EVENT": "onCrmLeadUpdate", "Event_Type": "OFFLINE"})
    assert [b.event for b in portal.events.bindings_of(APP)] == ["ONCRMLEADUPDATE"]


@pytest.mark.parametrize(
    ("params", "status", "code", "text"),
    [
        (
            {"event": "ONNOSUCHTHING", "event_type": "offline"},
            400,
            "ERROR_EVENT_NOT_FOUND",
            "Event not found",
        ),
        ({"event_type": "offline"}, 400, "ERROR_ARGUMENT", "Argument 'EVENT' is null or empty"),
        ({"event": "ONCRMLEADADD"}, 400, "ERROR_ARGUMENT", "Argument 'HANDLER' is null or empty"),
        (
            {"event": "ONCRMLEADADD", "event_type": "sometimes"},
            400,
            "ERROR_ARGUMENT",
            "Value must be one of {online|offline}",
        ),
        (
            {"event": "onOfflineEvent", "event_type": "offline"},
            400,
            "ERROR_ARGUMENT",
            "Offline event cannot be registered for this event.",
        ),
    ],
)
def test_bind_errors(
    portal: Portal, params: dict[str, Any], status: int, code: str, text: str
) -> None:
    """Unknown events, missing EVENT/HANDLER, bad event_type and offline onOfflineEvent
    are refused with the rest module's codes."""
    err = rest_error(portal, app_ctx(), "event.bind", params)
    assert (err.status, err.code, err.description) == (status, code, text)


def test_duplicate_bind_is_error_core(portal: Portal) -> None:
    """Binding the same thing twice → 400 ERROR_CORE "…Handler already binded" (§12)."""
    params = {"event": "ONCRMLEADADD", "event_type": "offline"}
    call(portal, app_ctx(), "event.bind", params)
    err = rest_error(portal, app_ctx(), "event.bind", params)
    assert (err.status, err.code) == (400, "ERROR_CORE")
    assert err.description.endswith("Handler already binded")
    call(portal, app_ctx("Other"), "event.bind", params)
    assert len(portal.events.bindings_of(APP)) == 2


def test_event_outside_the_app_scopes_is_not_found(portal: Portal) -> None:
    """A CRM event for an app without the crm scope → ERROR_EVENT_NOT_FOUND."""
    ctx = app_ctx(scopes=frozenset({"user", "pull"}))
    err = rest_error(portal, ctx, "event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"})
    assert err.code == "ERROR_EVENT_NOT_FOUND"
    ok = app_ctx(scopes=frozenset({"crm"}))
    assert (
        call(portal, ok, "event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"}).result
        is True
    )


def test_webhooks_cannot_bind_or_list(portal: Portal) -> None:
    """event.* through a webhook → 403 WRONG_AUTH_TYPE (L2249)."""
    for method in ("event.bind", "event.unbind", "event.get", "events"):
        err = rest_error(
            portal,
            app_ctx(webhook=True),
            method,
            {"event": "ONCRMLEADADD", "event_type": "offline"},
        )
        assert (err.status, err.code) == (403, "WRONG_AUTH_TYPE")


def test_non_admin_rules(portal: Portal) -> None:
    """A non-admin binds only online handlers, as themselves, and sees only those."""
    user = app_ctx(admin=False, user_id=2)
    err = rest_error(portal, user, "event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"})
    assert (err.status, err.code) == (403, "ACCESS_DENIED")
    assert "Offline events binding requires administrator access rights" in err.description
    err = rest_error(
        portal,
        user,
        "event.bind",
        {"event": "ONCRMLEADADD", "handler": "https://h.test/", "auth_type": 1},
    )
    assert "AUTH_TYPE requires administrator" in err.description
    call(portal, user, "event.bind", {"event": "ONCRMLEADADD", "handler": "https://h.test/"})
    call(portal, app_ctx(), "event.bind", {"event": "ONCRMDEALADD", "event_type": "offline"})
    assert call(portal, user, "event.get").result == [
        {"event": "ONCRMLEADADD", "handler": "https://h.test/", "auth_type": "2", "offline": 0}
    ]
    assert len(call(portal, app_ctx(), "event.get").result) == 2
    err = rest_error(
        portal, user, "event.unbind", {"event": "ONCRMDEALADD", "event_type": "offline"}
    )
    assert "Offline events unbinding requires administrator" in err.description


def test_options_min_timeout_is_kept_and_unknown_options_dropped(portal: Portal) -> None:
    """options[minTimeout] is stored as an int for onOfflineEvent; others are ignored."""
    call(
        portal,
        app_ctx(),
        "event.bind",
        {
            "event": "onOfflineEvent",
            "handler": "https://h/",
            "options": {"minTimeout": "30", "junk": "1"},
        },
    )
    call(
        portal,
        app_ctx(),
        "event.bind",
        {"event": "ONCRMLEADADD", "handler": "https://h/", "options": {"minTimeout": "30"}},
    )
    options = [b.options for b in portal.events.bindings_of(APP)]
    assert options == [{"minTimeout": 30}, {}]


# ---- event.unbind -------------------------------------------------------------------


def test_unbind_offline_matches_the_requests_connector(portal: Portal) -> None:
    """Offline unbind removes app+event+request connector only, answering {count}."""
    call(portal, app_ctx("OneC"), "event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"})
    call(portal, app_ctx(""), "event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"})
    params = {"event": "ONCRMLEADADD", "event_type": "offline"}
    assert call(portal, app_ctx("Other"), "event.unbind", params).result == {"count": 0}
    assert call(portal, app_ctx("OneC"), "event.unbind", params).result == {"count": 1}
    assert [b.connector_id for b in portal.events.bindings_of(APP)] == [""]


def test_unbind_online_needs_the_handler(portal: Portal) -> None:
    """Online unbind needs HANDLER and removes that handler's bindings."""
    call(portal, app_ctx(), "event.bind", {"event": "ONCRMLEADADD", "handler": "https://a/"})
    call(portal, app_ctx(), "event.bind", {"event": "ONCRMLEADADD", "handler": "https://b/"})
    err = rest_error(portal, app_ctx(), "event.unbind", {"event": "ONCRMLEADADD"})
    assert err.description == "Argument 'HANDLER' is null or empty"
    result = call(
        portal, app_ctx(), "event.unbind", {"event": "onCrmLeadAdd", "handler": "https://a/"}
    )
    assert result.result == {"count": 1}
    assert [b.handler for b in portal.events.bindings_of(APP)] == ["https://b/"]


def test_unbind_only_touches_the_callers_app(portal: Portal) -> None:
    """Another app's identical binding survives an unbind."""
    params = {"event": "ONCRMLEADADD", "event_type": "offline"}
    call(portal, app_ctx(), "event.bind", params)
    call(portal, app_ctx(client_id="local.app2"), "event.bind", params)
    call(portal, app_ctx(), "event.unbind", params)
    assert [b.app_id for b in portal.events.bindings.values()] == ["local.app2"]


def test_remove_app_drops_every_binding(portal: Portal) -> None:
    """Deleting/updating an app removes its handlers (rebind in every installer)."""
    call(portal, app_ctx(), "event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"})
    call(portal, app_ctx(), "event.bind", {"event": "ONCRMLEADADD", "handler": "https://a/"})
    assert portal.events.remove_app(APP) == 2
    assert call(portal, app_ctx(), "event.get").result == []


def test_events_lists_bindable_names(portal: Portal) -> None:
    """`events` lists the CRM events for a crm-scoped app and the app events."""
    names = call(portal, app_ctx(scopes=frozenset({"crm"})), "events").result
    assert "ONCRMDEALUPDATE" in names and "ONOFFLINEEVENT" in names
    no_crm = call(portal, app_ctx(scopes=frozenset({"user"})), "events").result
    assert "ONCRMDEALUPDATE" not in no_crm and "ONAPPINSTALL" in no_crm
    assert (
        "ONCRMDEALUPDATE"
        in call(portal, app_ctx(scopes=frozenset({"user"})), "events", {"FULL": 1}).result
    )


# ---- firing ---------------------------------------------------------------------------


def test_crm_writes_fire_into_offline_bindings(portal: Portal) -> None:
    """Add/update/delete queue ONCRM<ENTITY><ACTION> with {"FIELDS": {"ID": int}}."""
    for action in ("ADD", "UPDATE", "DELETE"):
        portal.events.bind(APP, f"ONCRMCONTACT{action}", connector_id="OneC")
    cid = portal.crm.add(None, "contact", {"NAME": "Ann"})
    portal.crm.update(None, "contact", cid, {"NAME": "Anna"}, user_id=2)
    portal.crm.delete(None, "contact", cid)
    rows = [(r.event_name, r.event_data, r.event_additional) for r in portal.queue.records()]
    assert rows == [
        ("ONCRMCONTACTADD", {"FIELDS": {"ID": cid}}, {"user_id": "1"}),
        ("ONCRMCONTACTUPDATE", {"FIELDS": {"ID": cid}}, {"user_id": "2"}),
        ("ONCRMCONTACTDELETE", {"FIELDS": {"ID": cid}}, {"user_id": "1"}),
    ]


def test_firing_records_the_caller(portal: Portal) -> None:
    """ctx.firings logs every firing with its user, whether or not anything is bound."""
    ctx = app_ctx(user_id=1)
    call(portal, ctx, "crm.deal.add", {"fields": {"TITLE": "d"}})
    assert [(f.event_name, f.user_id) for f in ctx.firings] == [("ONCRMDEALADD", 1)]


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        (app_ctx("OneC"), []),
        (app_ctx(""), ["OneC"]),
        (app_ctx("Other"), ["OneC"]),
        (app_ctx("OneC", client_id="local.app2"), ["OneC"]),
        (CallContext(client_id=None, user_id=1, is_admin=True), ["OneC"]),
        (CallContext(client_id=None, user_id=1, is_admin=True, via_webhook=True), ["OneC"]),
    ],
)
def test_echo_suppression_needs_same_app_and_same_connector(
    portal: Portal, caller: CallContext, expected: list[str]
) -> None:
    """A firing is skipped only for the binding's own app with the binding's connector
    (A4); UI users, webhooks, other apps and other connectors are queued."""
    portal.events.bind(APP, "ONCRMCOMPANYADD", connector_id="OneC")
    portal.crm.add(caller, "company", {"TITLE": "Acme"})
    assert [r.connector_id for r in portal.queue.records()] == expected


def test_connectorless_own_writes_skip_connectorless_bindings(portal: Portal) -> None:
    """An app's writes without a connector never reach its connector-less queue (A4)."""
    portal.events.bind(APP, "ONCRMCOMPANYADD", connector_id="")
    portal.crm.add(app_ctx(""), "company", {"TITLE": "Acme"})
    assert portal.queue.records() == []
    portal.crm.add(app_ctx("OneC"), "company", {"TITLE": "Acme"})
    assert len(portal.queue.records()) == 1


def test_online_bindings_get_one_delivery_per_firing(portal: Portal) -> None:
    """Online handlers get every firing (no coalescing), through the sender hook too."""
    seen: list[Delivery] = []
    portal.events.sender = seen.append
    portal.events.bind(APP, "ONCRMLEADUPDATE", handler="https://h.test/", user_id=0)
    lead = portal.crm.add(None, "lead", {"TITLE": "x"})
    for _ in range(3):
        portal.crm.update(None, "lead", lead, {"TITLE": "y"}, user_id=2)
    assert len(portal.events.deliveries) == 3 and seen == portal.events.deliveries
    first = portal.events.deliveries[0]
    assert (first.event, first.handler, first.data, first.user_id) == (
        "ONCRMLEADUPDATE",
        "https://h.test/",
        {"FIELDS": {"ID": lead}},
        2,
    )


def test_finish_request_counts_firings_including_merges(portal: Portal) -> None:
    """finish_request → {app: {connector: firings}} (merges count) and resets (§12)."""
    portal.events.bind(APP, "ONCRMLEADUPDATE", connector_id="OneC")
    portal.events.bind(APP, "ONCRMLEADUPDATE", connector_id="")
    portal.events.bind("local.app2", "ONCRMLEADUPDATE", connector_id="X")
    lead = portal.crm.add(None, "lead", {"TITLE": "x"})
    ctx = app_ctx("OneC")
    for _ in range(3):
        portal.crm.update(ctx, "lead", lead, {"TITLE": "y"})
    assert len(portal.queue.records()) == 2
    assert portal.events.finish_request(ctx) == {APP: {"": 3}, "local.app2": {"X": 3}}
    assert portal.events.finish_request(ctx) == {}


def test_ui_writes_publish_the_event_offline_push(portal: Portal) -> None:
    """A UI write without ctx finishes its own request: one push per app/connector."""
    portal.events.bind(APP, "ONCRMLEADADD", connector_id="OneC")
    portal.crm.add(None, "lead", {"TITLE": "x"})
    pushed = [m for m in portal.pull.published(APP) if m.command == "event_offline"]
    assert [m.params for m in pushed] == [[{"connector_id": "OneC", "count": 1}]]


# ---- onOfflineEvent -------------------------------------------------------------------


def _bind_notifier(portal: Portal, min_timeout: int | None) -> None:
    params: dict[str, Any] = {"event": "onOfflineEvent", "handler": "https://app.test/wake"}
    if min_timeout is not None:
        params["options"] = {"minTimeout": min_timeout}
    call(portal, app_ctx(), "event.bind", params)
    portal.events.bind(APP, "ONCRMLEADADD", connector_id="OneC")


def _request(portal: Portal, leads: int) -> None:
    ctx = CallContext(client_id=None, user_id=1, is_admin=True)
    for n in range(leads):
        portal.crm.add(ctx, "lead", {"TITLE": f"L{n}"})
    portal.events.finish_request(ctx)


def test_on_offline_event_min_timeout_zero_is_one_per_request(portal: Portal) -> None:
    """minTimeout=0: one notification per request, however many records it queued."""
    _bind_notifier(portal, 0)
    _request(portal, 5)
    _request(portal, 1)
    notes = portal.events.notifications(APP)
    assert len(notes) == 2
    assert (notes[0].event, notes[0].data, notes[0].handler) == (
        "ONOFFLINEEVENT",
        [],
        "https://app.test/wake",
    )


def test_on_offline_event_throttles_by_min_timeout(portal: Portal) -> None:
    """minTimeout=10: the first request notifies, later ones wait for the window; a
    pending notification goes out once the window passes (test clock)."""
    _bind_notifier(portal, 10)
    _request(portal, 1)
    portal.clock.advance(3)
    _request(portal, 1)
    _request(portal, 1)
    assert len(portal.events.notifications()) == 1
    assert portal.events.flush_notifications() == 0
    portal.clock.advance(8)
    assert portal.events.flush_notifications() == 1
    assert len(portal.events.notifications()) == 2
    assert portal.events.flush_notifications() == 0


def test_on_offline_event_default_timeout_is_one_second(portal: Portal) -> None:
    """Without options the window is 1 s."""
    _bind_notifier(portal, None)
    _request(portal, 1)
    _request(portal, 1)
    portal.clock.advance(1.5)
    _request(portal, 1)
    assert len(portal.events.notifications()) == 2


def test_no_notification_without_queued_records(portal: Portal) -> None:
    """A request that queued nothing (echo-suppressed) does not wake the app."""
    _bind_notifier(portal, 0)
    ctx = app_ctx("OneC")
    portal.crm.add(ctx, "lead", {"TITLE": "mine"})
    assert portal.events.finish_request(ctx) == {}
    assert portal.events.notifications() == []
