"""The mapping tables and the persisted types, without a hub: one case per line."""

import pickle

import pytest

from threatexchange.exchanges.fetch_state import AggregateSignalOpinionCategory, SignalOpinionCategory
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.sha256 import VideoSHA256Signal
from threatexchange.signal_type.url_md5 import UrlMD5Signal
from threatexchange.utils import dataclass_json

from coalition_hub_threatexchange import CoalitionHubCheckpoint, CoalitionHubEntry, CoalitionHubSignalExchangeAPI
from coalition_hub_threatexchange import mapping
from coalition_hub_threatexchange.config import CoalitionHubCollabConfig

INSTALLED = [PdqSignal, VideoMD5Signal, VideoSHA256Signal, UrlMD5Signal]


@pytest.mark.parametrize(
    "hub_type, signal_type",
    [
        ("pdq", PdqSignal),
        ("PDQ", PdqSignal),
        ("md5", VideoMD5Signal),
        ("sha256", VideoSHA256Signal),
        ("url-md5", UrlMD5Signal),
        ("HASH_TYPE_URL_MD5", UrlMD5Signal),
        ("sha1", None),  # no threatexchange type: skipped and counted
        ("photodna", None),  # only with a PhotoDNA extension installed
        ("vpdq", None),  # threatexchange's vPDQ needs the native `vpdq` package: not mapped
        ("HASH_TYPE_VPDQ", None),
        ("tlsh", None),
    ],
)
def test_signal_types(hub_type, signal_type):
    assert mapping.signal_type_for(hub_type, INSTALLED) is signal_type


class _NamedVpdq(VideoMD5Signal):
    """A stand-in for threatexchange.extensions.vpdq's VPDQSignal (which cannot be imported
    without the native `vpdq` package): a signal type named "vpdq"."""

    @classmethod
    def get_name(cls):
        return "vpdq"


def test_vpdq_is_skipped_even_with_a_vpdq_signal_type_installed():
    # The hub's vpdq value (binary frames, hex) is not threatexchange's vPDQ signal string
    # (JSON of "pdq,quality,seconds" frames): never handed to a type of that name.
    assert mapping.signal_type_for("vpdq", [*INSTALLED, _NamedVpdq]) is None
    assert "native `vpdq` package" in mapping.skip_reason("vpdq", [*INSTALLED, _NamedVpdq])
    assert mapping.hash_type_for(_NamedVpdq) is None  # nothing to report an opinion with


@pytest.mark.parametrize(
    "hub_type, reason",
    [
        ("sha1", "no SHA-1 signal type"),
        ("vpdq", "native `vpdq` package"),
        ("photodna", "'photodna' is not installed"),
        ("tlsh", "no threatexchange signal type is known"),
        ("pdq", None),
        ("url_md5", None),
    ],
)
def test_skip_reasons(hub_type, reason):
    got = mapping.skip_reason(hub_type, INSTALLED)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got, got


def test_skipped_types_are_never_mapped():
    assert not set(mapping.SKIPPED_HASH_TYPES) & set(mapping.SIGNAL_TYPE_BY_HASH_TYPE)


@pytest.mark.parametrize(
    "state, deleted",
    [
        ("active", False),
        ("disputed", False),
        ("ENTRY_STATE_DISPUTED", False),
        ("quarantined", True),
        ("retracted", True),
        ("compromised", True),
        ("expired", True),
        ("erased", True),
    ],
)
def test_deletions(state, deleted):
    assert mapping.is_deletion(state) is deleted


def test_every_hub_state_is_decided():
    assert set(mapping.ALL_STATES) >= mapping.KEPT_STATES
    assert [s for s in mapping.ALL_STATES if not mapping.is_deletion(s)] == ["disputed", "active"]


@pytest.mark.parametrize(
    "verdict, category",
    [
        ("confirmed", SignalOpinionCategory.POSITIVE_CLASS),
        ("false_positive", SignalOpinionCategory.NEGATIVE_CLASS),
        ("disputed", SignalOpinionCategory.INVESTIGATION_SEED),
    ],
)
def test_opinion_categories(verdict, category):
    assert mapping.CATEGORY_BY_VERDICT[verdict] == category
    assert mapping.VERDICT_BY_CATEGORY[category] == verdict


@pytest.mark.parametrize(
    "raw, name",
    [("OPINION_VERDICT_FALSE_POSITIVE", "false_positive"), ("false-positive", "false_positive"), ("seen", "seen")],
)
def test_verdict_names(raw, name):
    assert mapping.normalize_verdict(raw) == name


def test_photodna_values_round_trip():
    value = bytes(range(144)).hex()
    signal = mapping.signal_value("photodna", value)
    assert signal.startswith("0,1,2,") and signal.count(",") == 143
    assert mapping.hub_value("photodna", signal) == value


def record(**kw):
    base = dict(statement_id="ab" * 32, entry=0, issuer="acme", hash_type="pdq", signal="f" * 64, labels=["A1"], reader="globex")
    base.update(kw)
    return CoalitionHubEntry(**base)


@pytest.mark.parametrize(
    "verdicts, aggregate",
    [
        ({}, AggregateSignalOpinionCategory.POSITIVE_CLASS),
        ({"globex": "confirmed"}, AggregateSignalOpinionCategory.POSITIVE_CLASS),
        ({"initech": "false_positive"}, AggregateSignalOpinionCategory.DISPUTED),
        ({"initech": "disputed"}, AggregateSignalOpinionCategory.POSITIVE_CLASS),
    ],
)
def test_record_opinions(verdicts, aggregate):
    r = record(verdicts=verdicts)
    assert r.get_as_aggregate_opinion().category == aggregate
    assert [o.is_mine for o in r.get_as_opinions()] == [False] + [m == "globex" for m in sorted(verdicts)]


def test_two_entries_with_one_signal_become_one_record_with_both_opinions():
    a = record()
    b = record(statement_id="cd" * 32, issuer="initech", labels=["B2"])
    out = CoalitionHubSignalExchangeAPI.naive_convert_to_signal_type(
        INSTALLED, None, {"a:0": a, "b:0": b, "c:0": record(signal="0" * 64, state="retracted")}
    )
    assert list(out) == [PdqSignal] and list(out[PdqSignal]) == ["f" * 64]
    merged = out[PdqSignal]["f" * 64]
    assert merged.get_as_aggregate_opinion().tags == {"A1", "B2"}
    assert "by acme,initech" in str(merged)
    # threatexchange's CLI pickles what it indexes.
    assert pickle.loads(pickle.dumps(merged)).get_as_aggregate_opinion().tags == {"A1", "B2"}


def test_checkpoint_survives_threatexchange_json_and_pickle():
    cp = CoalitionHubCheckpoint(
        sync_state='{"format":1}',
        log_size=7,
        progress_ts=1_700_000_000,
        skipped={"sha1": 2},
        entry_counts={"ab" * 32: 3},
        signed_by={"ab" * 32: "00" * 8},
        verdicts={"ab" * 32 + ":1": {"globex": "confirmed"}},
        expiring={"ab" * 32: 1_800_000_000_000},
    )
    # HMA and the CLI's DBMStore store checkpoints with threatexchange's dataclass_json.
    assert dataclass_json.dataclass_loads(dataclass_json.dataclass_dumps(cp), CoalitionHubCheckpoint) == cp
    assert pickle.loads(pickle.dumps(cp)) == cp
    assert not cp.is_stale() and cp.get_progress_timestamp() == 1_700_000_000


def test_collab_config_paths():
    c = CoalitionHubCollabConfig(hub="h:1", member="globex", name="x", certs="/c")
    assert str(c.path("ca_pem")) == "/c/ca.pem"
    assert str(c.path("cert_pem")) == "/c/members/globex.pem"
    assert str(c.path("signing_key")) == "/c/members/globex.sign.key"
    c.key_pem = "/elsewhere/k.pem"
    assert str(c.path("key_pem")) == "/elsewhere/k.pem"
    with pytest.raises(ValueError, match="--ca-pem or --certs"):
        CoalitionHubCollabConfig(hub="h:1", member="m", name="y").path("ca_pem")
    assert dataclass_json.dataclass_loads(dataclass_json.dataclass_dumps(c), CoalitionHubCollabConfig) == c
