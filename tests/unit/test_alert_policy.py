"""Alert policy (routing, grouping, repeat, inhibition), predictive rules, retry schedule and
channel payloads, without a database."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import pytest

from llmhub.alerts.channels import (
    Delivery,
    render_pagerduty,
    render_slack,
    render_teams,
    retry_after,
    scrub,
    sign,
)
from llmhub.alerts.model import Alertable, Link, from_payload
from llmhub.alerts.policy import MuteWindow, Route, RouteHistory, Silence, at_least, plan
from llmhub.alerts.sender import backoff_s
from llmhub.alerts.sources import burn_rate, materially_earlier

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def alert(key: str = "inc-1", **kw) -> Alertable:
    fields = dict(
        key=key,
        tenant_id="acme",
        source="incident",
        severity="error",
        status="firing",
        title="t",
        summary="s",
        occurred_at=NOW,
        application="app-chat",
    )
    fields.update(kw)
    return Alertable(**fields)


def route(route_id: int = 1, **kw) -> Route:
    return Route(
        route_id=route_id,
        tenant_id=kw.pop("tenant_id", "acme"),
        channel=kw.pop("channel", "slack"),
        **kw,
    )


@pytest.mark.parametrize(
    ("r", "a", "matches"),
    [
        (route(), alert(), True),
        (route(tenant_id="*"), alert(tenant_id="other"), True),
        (route(), alert(tenant_id="other"), False),
        (route(application="app-chat"), alert(), True),
        (route(application="app-search"), alert(), False),
        (route(severities=at_least("error")), alert(severity="warning"), False),
        (route(severities=at_least("error")), alert(severity="critical"), True),
        (route(is_enabled=False), alert(), False),
    ],
)
def test_route_matching(r: Route, a: Alertable, matches: bool) -> None:
    assert r.matches(a) is matches


def test_new_alerts_of_one_group_wait_together_and_pagerduty_is_per_alert() -> None:
    slack, pd = route(1, group_wait_s=30), route(2, channel="pagerduty", group_wait_s=30)
    notes, _ = plan([alert("a"), alert("b")], [slack, pd], [], [], {}, {}, NOW)
    by_route = {r: [n for n in notes if n.route.route_id == r] for r in (1, 2)}
    assert {n.group_key for n in by_route[1]} == {"1|tenant_id=acme,source=incident"}
    assert len({n.group_key for n in by_route[2]}) == 2
    assert {n.next_attempt_at for n in notes} == {NOW + timedelta(seconds=30)}
    # A trigger joining a group already waiting leaves with it, not 30 s after itself.
    joined, _ = plan(
        [alert("c")],
        [slack],
        [],
        [],
        {},
        {by_route[1][0].group_key: NOW},
        NOW + timedelta(seconds=20),
    )
    assert joined[0].next_attempt_at == NOW


def test_unchanged_alert_is_repeated_only_after_the_repeat_interval() -> None:
    r, a = route(repeat_interval_s=3600), alert()
    told = {(1, "inc-1"): RouteHistory("trigger", a.fingerprint, NOW, 1)}
    assert plan([a], [r], [], [], told, {}, NOW + timedelta(minutes=59))[0] == []
    [note], _ = plan([a], [r], [], [], told, {}, NOW + timedelta(minutes=61))
    assert note.event == "repeat"
    # A changed fingerprint is news at once, under a new key (the second trigger).
    [changed], _ = plan([alert(severity="critical")], [r], [], [], told, {}, NOW)
    assert changed.event == "trigger" and changed.notification_key.endswith("|1")


def test_resolve_goes_only_to_routes_that_heard_the_trigger_and_is_never_muted() -> None:
    resolved = alert(status="resolved", resolved_at=NOW)
    told = {(1, "inc-1"): RouteHistory("trigger", "x", NOW, 1)}
    silence = Silence(1, "acme", {}, NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    notes, _ = plan([resolved], [route(1), route(2)], [silence], [], told, {}, NOW)
    assert [(n.route.route_id, n.event) for n in notes] == [(1, "resolve")]


def test_silence_matchers_and_expiry() -> None:
    s = Silence(7, "acme", {"source": "incident", "key": "inc-*"}, NOW, NOW + timedelta(hours=1))
    assert s.silences(alert("inc-9"), NOW)
    assert not s.silences(alert("other"), NOW)
    assert not s.silences(alert("inc-9"), NOW + timedelta(hours=1))
    _, held = plan([alert()], [route()], [s], [], {}, {}, NOW)
    assert held[0].reason == "silence 7"


@pytest.mark.parametrize(
    ("clock", "weekday_ok", "muted"),
    [
        (time(23, 30), True, True),  # Sunday 23:30 inside Sunday's 22-07 window
        (time(6, 59), True, True),  # Monday 06:59 belongs to Sunday's window
        (time(7, 0), True, False),
        (time(21, 0), True, False),
    ],
)
def test_overnight_quiet_hours(clock: time, weekday_ok: bool, muted: bool) -> None:
    # The early-morning half of an overnight window belongs to the day the window started.
    window = MuteWindow(
        1, "acme", "quiet_hours", days_of_week=(7,), start_local=time(22), end_local=time(7)
    )
    sunday = date(2026, 11, 29)
    day = sunday if clock >= time(12) else sunday + timedelta(days=1)
    moment = datetime.combine(day, clock, UTC)
    assert window.mutes(alert(severity="warning"), moment) is muted
    assert not window.mutes(alert(severity="critical"), moment)


def test_quiet_hours_in_a_timezone() -> None:
    window = MuteWindow(
        1, "acme", "quiet_hours", start_local=time(0), end_local=time(6), timezone="Asia/Tokyo"
    )
    assert window.active(datetime(2026, 11, 29, 18, tzinfo=UTC))  # 03:00 in Tokyo
    assert not window.active(datetime(2026, 11, 29, 12, tzinfo=UTC))  # 21:00 in Tokyo


@pytest.mark.parametrize(
    ("announced", "projected", "material"),
    [
        (date(2026, 12, 25), date(2026, 12, 24), False),  # 1 day of a 20-day lead
        (date(2026, 12, 25), date(2026, 12, 20), True),  # 5 days = a quarter of the lead
        (date(2026, 12, 25), date(2026, 12, 28), False),  # later is never news
        (date(2026, 12, 9), date(2026, 12, 7), True),  # short lead: 2 days suffice
    ],
)
def test_breach_date_moves_materially_earlier(
    announced: date, projected: date, material: bool
) -> None:
    assert materially_earlier(announced, projected, today=date(2026, 12, 5)) is material


def test_burn_rate_is_a_multiple_of_the_even_pace() -> None:
    # $3000 a 30-day month is $100 a day: $100 in an hour is 24x the even pace.
    assert burn_rate(100.0, timedelta(hours=1), 3000.0, 30) == pytest.approx(24.0)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_s(n, 2.0, 60.0, rng) for n in range(1, 9)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(60.0, 2.0 * 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert len({round(backoff_s(3, 2.0, 60.0, random.Random(s)), 6) for s in range(5)}) > 1


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("Sun, 29 Nov 2026 12:00:10 GMT", now=NOW) == 10.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_payloads_of_each_channel() -> None:
    a = alert(links=(Link("Runbook", "https://runbooks/x"),))
    d = Delivery("slack", "trigger", ("k",), (a.to_payload(),), {})
    slack = render_slack(d)
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "context", "actions"]
    card = render_teams(d)["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert (
        card["content"]["type"] == "AdaptiveCard"
        and card["content"]["actions"][0]["url"] == "https://runbooks/x"
    )
    trigger = render_pagerduty(d, "rk")
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "llmhub:inc-1"
    resolve = render_pagerduty(
        Delivery("pagerduty", "resolve", ("k",), (a.to_payload(),), {}), "rk"
    )
    assert resolve == {"routing_key": "rk", "event_action": "resolve", "dedup_key": "llmhub:inc-1"}
    change = render_pagerduty(Delivery("pagerduty", "change", ("k",), (a.to_payload(),), {}), "rk")
    assert "event_action" not in change and change["payload"]["summary"] == "t"


def test_payload_round_trip_keeps_the_fingerprint() -> None:
    a = alert(change_basis="breach:2026-12-20", details={"x": 1})
    assert from_payload(a.to_payload()).fingerprint == a.fingerprint


def test_signature_and_scrub() -> None:
    assert sign("k", "1", b"{}") == sign("k", "1", b"{}") != sign("k", "2", b"{}")
    assert (
        scrub("POST https://hooks/secret failed", ["https://hooks/secret", None])
        == "POST *** failed"
    )


def test_an_alert_that_does_not_repeat_is_told_once() -> None:
    # Regression: predictive budget alerts were re-sent every repeat interval (found by
    # test_budget_breach_told_once_and_again_only_when_materially_earlier).
    a = alert(repeats=False)
    told = {(1, "inc-1"): RouteHistory("trigger", a.fingerprint, NOW, 1)}
    assert (
        plan([a], [route(repeat_interval_s=60)], [], [], told, {}, NOW + timedelta(days=1))[0] == []
    )


def test_deploys_are_pagerduty_change_events_sent_once() -> None:
    deploy = alert("deploy:acme:app-chat:e1", source="deploy", severity="info", repeats=False)
    slack, pd = route(1), route(2, channel="pagerduty")
    [note], _ = plan([deploy], [slack, pd], [], [], {}, {}, NOW)
    assert (note.route.route_id, note.event) == (2, "change")
    told = {(2, deploy.key): RouteHistory("change", deploy.fingerprint, NOW, 0)}
    assert plan([deploy], [slack, pd], [], [], told, {}, NOW + timedelta(days=1))[0] == []
