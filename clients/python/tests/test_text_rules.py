"""The text, indicator and quota field rules (PROTOCOL.md §2.1, §2.3, §2.5), against the real
hub: each body below is refused by this client's check (`check_body`, so a sync refuses it
too) AND by the hub's front door (INVALID_ARGUMENT naming the same field), so the two
implementations agree on it; the same kinds of text with newline and tab are accepted by both."""

from __future__ import annotations

from collections.abc import Callable
from unittest import mock

import pytest

from coalition_hub import statements
from coalition_hub.errors import HubCallError
from coalition_hub.model import Kind
from coalition_hub.pb import statement as spb
from coalition_hub.statements import FieldError, check_body, sign_statement
from conftest import client_of, key_of
from hubprocess import Hub

STATEMENT = bytes(range(32))


def signal(*indicators: spb.Indicator, title: str = "t", description: str = "") -> spb.StatementBody:
    return spb.StatementBody(
        risk_signal=spb.RiskSignal(
            category=1, severity=2, title=title, description=description, indicators=list(indicators), first_seen_ms=1, last_seen_ms=2
        )
    )


def ind(t: int, value: str, platform: str = "") -> spb.Indicator:
    return spb.Indicator(type=t, value=value, platform=platform)


def settings(reason: str = "r", quotas: spb.Quotas | None = None) -> spb.StatementBody:
    return spb.StatementBody(settings=spb.SettingsChange(reason=reason, quotas=quotas or spb.Quotas()))


def limits(member: str, with_limits: bool = True) -> spb.MemberQuota:
    return spb.MemberQuota(member_id=member, limits=spb.QuotaLimits(submissions_per_minute=1) if with_limits else None)


def hash_set(description: str) -> spb.StatementBody:
    return spb.StatementBody(hash_set=spb.HashSet(description=description, entries=[spb.HashEntry(type=1, value=bytes(16))]))


# (signer, body, the field the refusal names)
REFUSED: list[tuple[str, Callable[[], spb.StatementBody], str]] = [
    ("acme", lambda: hash_set("bell \x07"), "hash_set.description"),
    ("acme", lambda: signal(ind(1, "x"), title="a\x1bb"), "risk_signal.title"),
    ("acme", lambda: signal(ind(1, "x"), description="\x00"), "risk_signal.description"),
    ("acme", lambda: signal(ind(1, "grooming\x0b")), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(1, "k" * 201)), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(1, "x"), ind(2, "ftp://example.com/a")), "risk_signal.indicators[1].value"),
    ("acme", lambda: signal(ind(2, "https://")), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(2, "https://example.com/a b")), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(2, "https://example.com/\u2003")), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(3, "Example.com")), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(3, "localhost")), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(3, "-bad.example")), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(3, "a..example")), "risk_signal.indicators[0].value"),
    ("acme", lambda: signal(ind(4, "handle")), "risk_signal.indicators[0].platform"),
    ("acme", lambda: signal(ind(1, "word", platform="x")), "risk_signal.indicators[0].platform"),
    ("acme", lambda: signal(ind(0, "x")), "risk_signal.indicators[0]"),
    (
        "acme",
        lambda: signal(spb.Indicator(type=5, platform="x", hash=spb.HashEntry(type=1, value=bytes(16)))),
        "risk_signal.indicators[0].platform",
    ),
    (
        "acme",
        lambda: spb.StatementBody(retraction=spb.Retraction(statement_id=STATEMENT, reason="oops\x7f")),
        "retraction.reason",
    ),
    (
        "acme",
        lambda: spb.StatementBody(opinion=spb.Opinion(statement_id=STATEMENT, entry=0, verdict=1, note="\x1f")),
        "opinion.note",
    ),
    (
        "admin",
        lambda: spb.StatementBody(
            membership=spb.MembershipChange(reason="\x1b[31m", suspend=spb.MemberRef(member_id="globex"))
        ),
        "membership.reason",
    ),
    ("admin", lambda: settings(reason="\x08"), "settings.reason"),
    ("admin", lambda: settings(quotas=spb.Quotas(members=[limits("globex"), limits("acme")])), "settings.quotas.members[1].member_id"),
    ("admin", lambda: settings(quotas=spb.Quotas(members=[limits("acme"), limits("acme")])), "settings.quotas.members[1].member_id"),
    ("admin", lambda: settings(quotas=spb.Quotas(members=[limits("Not An Id")])), "settings.quotas.members[0].member_id"),
    ("admin", lambda: settings(quotas=spb.Quotas(members=[limits("acme", with_limits=False)])), "settings.quotas.members[0].limits"),
]


def unchecked(signer: str, hub: Hub, body: spb.StatementBody) -> spb.Envelope:
    """`body` signed by `signer` without this client's body check (what a careless or hostile
    signer could send)."""
    with mock.patch.object(statements, "check_body", lambda *_args, **_kw: ()):
        return sign_statement(signer, key_of(hub, signer), body)


@pytest.mark.parametrize("signer,make,field", REFUSED, ids=[f[2] + f"-{i}" for i, f in enumerate(REFUSED)])
def test_refused_here_and_by_the_hub(hub: Hub, signer: str, make: Callable[[], spb.StatementBody], field: str) -> None:
    body = make()
    envelope = unchecked(signer, hub, body)
    header = spb.Statement.FromString(envelope.payload)
    with pytest.raises(FieldError) as here:
        check_body(header, body)
    assert str(here.value).startswith(field), here.value
    with pytest.raises(FieldError):
        sign_statement(signer, key_of(hub, signer), body)  # the client never signs it
    with pytest.raises(HubCallError) as there:
        client_of(hub, signer).submit(envelope)
    assert there.value.code == "INVALID_ARGUMENT", there.value
    assert field.split("[")[0] in there.value.message, there.value.message


def test_newline_and_tab_are_text_and_accepted_by_both(hub: Hub) -> None:
    acme = client_of(hub, "acme")
    body = signal(
        ind(1, "line one\nline\ttwo"),
        ind(2, "HTTPS://Example.com/path?q=1"),
        ind(3, "sub-1.example.org"),
        ind(4, "someone", platform="chat\tapp"),
        title="multi\nline",
        description="tab\there",
    )
    envelope = sign_statement("acme", key_of(hub, "acme"), body)
    check_body(spb.Statement.FromString(envelope.payload), body)
    receipt = acme.submit(envelope)
    assert len(receipt.statement_id) == 64
    assert int(spb.Statement.FromString(envelope.payload).kind) == int(Kind.RISK_SIGNAL)
