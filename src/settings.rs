//! Coalition settings: the admin-quorum statement that sets coalition-wide policy (per-member
//! quotas, the hub's checkpoint key, the lifecycle's quarantine threshold, the witness
//! policy, the trusted origins of federation), parsed from its wire form with every field checked, and the settings in force as
//! the log replays them.
//!
//! Pure, no I/O. Settings are grouped in sections; a [`SettingsChange`] replaces one section
//! whole. Whether a change may be logged where it is (quorum, the new hub key's signature, no
//! key reuse) is decided by `membership::Registry`, which holds the [`Settings`] it replays.

use crate::membership::{KeyId, MemberId, parse_public_key};
use crate::pb;
use crate::statement::{StatementError, StatementId, check_text};
use crate::witness::policy::WitnessPolicy;
use ed25519_dalek::VerifyingKey;
use std::collections::BTreeMap;

/// Most characters in a settings change's reason.
pub const MAX_REASON_CHARS: usize = 1000;
/// Most per-member quota overrides one quota policy may name.
pub const MAX_MEMBER_QUOTAS: usize = 1024;
/// Most trusted origins the federation section names, and most relays per origin.
pub const MAX_ORIGINS: usize = 64;

/// A settings change and why it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingsChange {
    /// Free text for the history.
    pub reason: String,
    /// The section it replaces.
    pub section: Section,
}

/// One section of the settings, as a change sets it.
#[derive(Clone, Debug, PartialEq)]
pub enum Section {
    /// The whole quota policy.
    Quotas(Quotas),
    /// A new hub checkpoint key (the envelope must also be signed by it).
    HubKey(VerifyingKey),
    /// The lifecycle policy.
    Lifecycle(LifecycleSettings),
    /// The witness policy (`None`: removed).
    Witnesses(Option<WitnessPolicy>),
    /// The trusted origins (docs/PROTOCOL.md §3.10).
    Federation(Federation),
}

/// The federation section: the other hubs whose statements this log may relay, by genesis
/// statement id (docs/PROTOCOL.md §3.10).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Federation {
    /// The trusted origins.
    pub origins: BTreeMap<StatementId, TrustedOrigin>,
}

/// One trusted origin hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedOrigin {
    /// Its hub name, as its genesis names it.
    pub hub_name: String,
    /// The other trusted hubs that may relay its statements here (it always may itself).
    pub relayed_by: std::collections::BTreeSet<StatementId>,
    /// The member of this coalition through which that hub pulls this hub's log: its pulls
    /// get the bodies of restricted statements naming that hub's members.
    pub peer: Option<crate::membership::MemberId>,
}

impl Federation {
    /// Trusting each of `origins` (genesis id, hub name), each relayed by itself only.
    pub fn trusting<'a>(origins: impl IntoIterator<Item = (StatementId, &'a str)>) -> Self {
        Federation {
            origins: origins
                .into_iter()
                .map(|(genesis, name)| {
                    let origin = TrustedOrigin {
                        hub_name: name.to_owned(),
                        relayed_by: Default::default(),
                        peer: None,
                    };
                    (genesis, origin)
                })
                .collect(),
        }
    }

    /// Parses and checks the wire form.
    pub fn from_wire(wire: &pb::FederationSettings) -> Result<Self, StatementError> {
        let at = "settings.federation.origins";
        if wire.origins.len() > MAX_ORIGINS {
            return Err(StatementError::invalid(
                at,
                format!("at most {MAX_ORIGINS} origins, got {}", wire.origins.len()),
            ));
        }
        let mut origins = BTreeMap::new();
        for (i, o) in wire.origins.iter().enumerate() {
            let genesis = genesis_id(&o.genesis_id, &format!("{at}[{i}].genesis_id"))?;
            if origins
                .keys()
                .next_back()
                .is_some_and(|last| last >= &genesis)
            {
                return Err(StatementError::invalid(
                    format!("{at}[{i}].genesis_id"),
                    "origins must be ascending by genesis id, each once",
                ));
            }
            crate::membership::check_hub_name(&o.hub_name)
                .map_err(|e| StatementError::invalid(format!("{at}[{i}].hub_name"), e))?;
            if o.relayed_by.len() > MAX_ORIGINS {
                return Err(StatementError::invalid(
                    format!("{at}[{i}].relayed_by"),
                    format!("at most {MAX_ORIGINS} relays, got {}", o.relayed_by.len()),
                ));
            }
            let mut relayed_by = std::collections::BTreeSet::new();
            for (j, r) in o.relayed_by.iter().enumerate() {
                let field = format!("{at}[{i}].relayed_by[{j}]");
                let relay = genesis_id(r, &field)?;
                if relay == genesis
                    || relayed_by
                        .iter()
                        .next_back()
                        .is_some_and(|last| last >= &relay)
                {
                    return Err(StatementError::invalid(
                        field,
                        "relays must be ascending, each once, and not the origin itself",
                    ));
                }
                relayed_by.insert(relay);
            }
            let peer = match o.peer.as_str() {
                "" => None,
                id => {
                    let field = format!("{at}[{i}].peer");
                    let peer = crate::membership::MemberId::parse(id)
                        .map_err(|e| StatementError::invalid(field.clone(), e.to_string()))?;
                    let taken: &BTreeMap<StatementId, TrustedOrigin> = &origins;
                    if taken.values().any(|t| t.peer.as_ref() == Some(&peer)) {
                        return Err(StatementError::invalid(
                            field,
                            format!(
                                "'{peer}' is the peer of another origin: one hub per peer member"
                            ),
                        ));
                    }
                    Some(peer)
                }
            };
            origins.insert(
                genesis,
                TrustedOrigin {
                    hub_name: o.hub_name.clone(),
                    relayed_by,
                    peer,
                },
            );
        }
        Ok(Federation { origins })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::FederationSettings {
        pb::FederationSettings {
            origins: self
                .origins
                .iter()
                .map(|(genesis, o)| pb::TrustedOrigin {
                    genesis_id: genesis.0.to_vec(),
                    hub_name: o.hub_name.clone(),
                    relayed_by: o.relayed_by.iter().map(|r| r.0.to_vec()).collect(),
                    peer: o.peer.as_ref().map(ToString::to_string).unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// The hub that `member` pulls this log for (the origin naming it as its `peer`): its
    /// name, to which restricted statements naming its members are readable.
    pub fn hub_of_peer(&self, member: &crate::membership::MemberId) -> Option<&str> {
        self.origins
            .values()
            .find(|o| o.peer.as_ref() == Some(member))
            .map(|o| o.hub_name.as_str())
    }

    /// Whether `hub_name` names a trusted origin (a hub whose members recipients may name).
    pub fn trusts_hub(&self, hub_name: &str) -> bool {
        self.origins.values().any(|o| o.hub_name == hub_name)
    }

    /// Whether `peer` may relay statements of `origin` here: both trusted, and the peer is
    /// the origin or one of its relays.
    pub fn may_relay(&self, peer: &StatementId, origin: &StatementId) -> bool {
        self.origins.contains_key(peer)
            && self
                .origins
                .get(origin)
                .is_some_and(|o| peer == origin || o.relayed_by.contains(peer))
    }

    fn describe(&self) -> String {
        if self.origins.is_empty() {
            return "trust no origin (federation off)".to_owned();
        }
        let names: Vec<String> = self
            .origins
            .iter()
            .map(|(g, o)| format!("'{}' (genesis {})", o.hub_name, &g.to_string()[..16]))
            .collect();
        format!("trust the origins {}", names.join(", "))
    }
}

fn genesis_id(bytes: &[u8], field: &str) -> Result<StatementId, StatementError> {
    StatementId::from_slice(bytes).ok_or_else(|| {
        StatementError::invalid(
            field,
            format!("a genesis id is 32 bytes, got {}", bytes.len()),
        )
    })
}

/// The lifecycle policy (docs/PROTOCOL.md §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// Distinct members whose `false_positive` opinions quarantine an entry.
    pub quarantine_threshold: u32,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            quarantine_threshold: crate::lifecycle::DEFAULT_QUARANTINE_THRESHOLD,
        }
    }
}

impl LifecycleSettings {
    /// Parses and checks the wire form (0: the default).
    pub fn from_wire(wire: &pb::LifecycleSettings) -> Result<Self, StatementError> {
        let max = crate::lifecycle::MAX_QUARANTINE_THRESHOLD;
        match wire.quarantine_threshold {
            0 => Ok(LifecycleSettings::default()),
            n if n <= max => Ok(LifecycleSettings {
                quarantine_threshold: n,
            }),
            n => Err(StatementError::invalid(
                "settings.lifecycle.quarantine_threshold",
                format!("must be 1..={max} (0: the default, 3), got {n}"),
            )),
        }
    }

    /// The wire form.
    pub fn to_wire(self) -> pb::LifecycleSettings {
        pb::LifecycleSettings {
            quarantine_threshold: self.quarantine_threshold,
        }
    }
}

/// Rate limits of one member; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Non-governance statements submitted per minute.
    pub submissions_per_minute: Option<u64>,
    /// Non-governance statements submitted per day.
    pub submissions_per_day: Option<u64>,
    /// Bytes of non-governance entries sent by Sync per minute.
    pub sync_bytes_per_minute: Option<u64>,
    /// Bytes of non-governance entries sent by Sync per day.
    pub sync_bytes_per_day: Option<u64>,
    /// Match calls per minute.
    pub match_queries_per_minute: Option<u64>,
    /// Match calls per day.
    pub match_queries_per_day: Option<u64>,
}

/// The quota policy: defaults for everyone and per-member overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Limits of every member not named in `members`.
    pub default_limits: QuotaLimits,
    /// Overrides by member.
    pub members: BTreeMap<MemberId, QuotaLimits>,
}

/// A hub checkpoint key and where it took over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubKeyPeriod {
    /// The key.
    pub key: VerifyingKey,
    /// The log position of the statement that named it (0: the genesis). It signs every
    /// checkpoint of a tree size above this, up to the next rotation.
    pub from_seq: u64,
}

/// The settings in force at some point of the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// Settings changes applied so far.
    pub revision: u64,
    /// The quota policy (default: unlimited).
    pub quotas: Quotas,
    /// Every hub checkpoint key, oldest first (the genesis key first).
    pub hub_keys: Vec<HubKeyPeriod>,
    /// The lifecycle policy (default: quarantine threshold 3).
    pub lifecycle: LifecycleSettings,
    /// The witness policy (default: none).
    pub witnesses: Option<WitnessPolicy>,
    /// The trusted origins (default: none).
    pub federation: Federation,
}

impl QuotaLimits {
    fn from_wire(w: &pb::QuotaLimits) -> Self {
        let limit = |v: u64| (v > 0).then_some(v);
        QuotaLimits {
            submissions_per_minute: limit(w.submissions_per_minute),
            submissions_per_day: limit(w.submissions_per_day),
            sync_bytes_per_minute: limit(w.sync_bytes_per_minute),
            sync_bytes_per_day: limit(w.sync_bytes_per_day),
            match_queries_per_minute: limit(w.match_queries_per_minute),
            match_queries_per_day: limit(w.match_queries_per_day),
        }
    }

    /// The wire form (unlimited is 0).
    pub fn to_wire(&self) -> pb::QuotaLimits {
        let v = |l: Option<u64>| l.unwrap_or(0);
        pb::QuotaLimits {
            submissions_per_minute: v(self.submissions_per_minute),
            submissions_per_day: v(self.submissions_per_day),
            sync_bytes_per_minute: v(self.sync_bytes_per_minute),
            sync_bytes_per_day: v(self.sync_bytes_per_day),
            match_queries_per_minute: v(self.match_queries_per_minute),
            match_queries_per_day: v(self.match_queries_per_day),
        }
    }

    /// Whether every limit is unlimited.
    pub fn is_unlimited(&self) -> bool {
        *self == QuotaLimits::default()
    }

    fn describe(&self) -> String {
        if self.is_unlimited() {
            return "unlimited".into();
        }
        let parts = [
            ("submissions/min", self.submissions_per_minute),
            ("submissions/day", self.submissions_per_day),
            ("sync bytes/min", self.sync_bytes_per_minute),
            ("sync bytes/day", self.sync_bytes_per_day),
            ("matches/min", self.match_queries_per_minute),
            ("matches/day", self.match_queries_per_day),
        ];
        parts
            .iter()
            .filter_map(|(name, l)| l.map(|v| format!("{v} {name}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Quotas {
    /// Parses and checks a quota policy; `at` is the field path.
    pub fn from_wire(wire: pb::Quotas, at: &str) -> Result<Self, StatementError> {
        if wire.members.len() > MAX_MEMBER_QUOTAS {
            return Err(StatementError::invalid(
                format!("{at}.members"),
                format!(
                    "at most {MAX_MEMBER_QUOTAS} member overrides, got {}",
                    wire.members.len()
                ),
            ));
        }
        let mut members = BTreeMap::new();
        let mut last: Option<MemberId> = None;
        for (i, m) in wire.members.iter().enumerate() {
            let field = format!("{at}.members[{i}].member_id");
            let id = MemberId::parse(&m.member_id)
                .map_err(|e| StatementError::invalid(&field, e.to_string()))?;
            if last.as_ref().is_some_and(|l| l >= &id) {
                return Err(StatementError::invalid(
                    field,
                    "member ids must be ascending, each once",
                ));
            }
            let limits = m.limits.as_ref().ok_or_else(|| {
                StatementError::invalid(
                    format!("{at}.members[{i}].limits"),
                    "missing: set the member's limits (0 is unlimited)",
                )
            })?;
            members.insert(id.clone(), QuotaLimits::from_wire(limits));
            last = Some(id);
        }
        Ok(Quotas {
            default_limits: wire
                .default_limits
                .as_ref()
                .map(QuotaLimits::from_wire)
                .unwrap_or_default(),
            members,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Quotas {
        pb::Quotas {
            default_limits: (!self.default_limits.is_unlimited())
                .then(|| self.default_limits.to_wire()),
            members: self
                .members
                .iter()
                .map(|(id, l)| pb::MemberQuota {
                    member_id: id.to_string(),
                    limits: Some(l.to_wire()),
                })
                .collect(),
        }
    }

    /// The limits of one member.
    pub fn limits(&self, member: &MemberId) -> QuotaLimits {
        self.members
            .get(member)
            .copied()
            .unwrap_or(self.default_limits)
    }

    fn describe(&self) -> String {
        let mut text = format!("quotas: default {}", self.default_limits.describe());
        for (id, l) in &self.members {
            text.push_str(&format!("; '{id}' {}", l.describe()));
        }
        text
    }
}

impl SettingsChange {
    /// Parses and checks a settings change.
    pub fn from_wire(wire: pb::SettingsChange) -> Result<Self, StatementError> {
        use pb::settings_change::Section as W;
        let reason = check_text("settings.reason", wire.reason, 0, MAX_REASON_CHARS)?;
        let section = match wire.section {
            Some(W::Quotas(q)) => Section::Quotas(Quotas::from_wire(q, "settings.quotas")?),
            Some(W::HubKey(k)) => {
                Section::HubKey(parse_public_key(&k.hub_public_key).map_err(|reason| {
                    StatementError::invalid("settings.hub_key.hub_public_key", reason)
                })?)
            }
            Some(W::Lifecycle(l)) => Section::Lifecycle(LifecycleSettings::from_wire(&l)?),
            Some(W::Witnesses(w)) => Section::Witnesses(witness_policy_from_wire(&w)?),
            Some(W::Federation(f)) => Section::Federation(Federation::from_wire(&f)?),
            None => {
                return Err(StatementError::invalid(
                    "settings.section",
                    "missing: set quotas, hub_key, lifecycle, witnesses or federation",
                ));
            }
        };
        Ok(SettingsChange { reason, section })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::SettingsChange {
        use pb::settings_change::Section as W;
        pb::SettingsChange {
            reason: self.reason.clone(),
            section: Some(match &self.section {
                Section::Quotas(q) => W::Quotas(q.to_wire()),
                Section::HubKey(k) => W::HubKey(pb::HubKeyRotation {
                    hub_public_key: k.to_bytes().to_vec(),
                }),
                Section::Lifecycle(l) => W::Lifecycle(l.to_wire()),
                Section::Witnesses(w) => W::Witnesses(witness_policy_to_wire(w.as_ref())),
                Section::Federation(f) => W::Federation(f.to_wire()),
            }),
        }
    }

    /// The new hub key, for a rotation.
    pub fn new_hub_key(&self) -> Option<&VerifyingKey> {
        match &self.section {
            Section::HubKey(k) => Some(k),
            Section::Quotas(_)
            | Section::Lifecycle(_)
            | Section::Witnesses(_)
            | Section::Federation(_) => None,
        }
    }

    /// One line saying what the change does.
    pub fn describe(&self) -> String {
        match &self.section {
            Section::Quotas(q) => format!("set {}", q.describe()),
            Section::HubKey(k) => format!(
                "rotate the hub checkpoint key to {} (its public key {})",
                KeyId::of(k),
                hex::encode(k.as_bytes())
            ),
            Section::Lifecycle(l) => format!(
                "set the quarantine threshold to {} distinct false-positive opinions",
                l.quarantine_threshold
            ),
            Section::Witnesses(Some(w)) => format!("set the witness policy: {}", w.describe()),
            Section::Witnesses(None) => "remove the witness policy".to_owned(),
            Section::Federation(f) => f.describe(),
        }
    }
}

impl Settings {
    /// The settings at the genesis: defaults, and the genesis hub key.
    pub fn founded(hub_key: VerifyingKey) -> Self {
        Settings {
            revision: 0,
            quotas: Quotas::default(),
            hub_keys: vec![HubKeyPeriod {
                key: hub_key,
                from_seq: 0,
            }],
            lifecycle: LifecycleSettings::default(),
            witnesses: None,
            federation: Federation::default(),
        }
    }

    /// The hub key that signs checkpoints of `size` entries: the one named last by a
    /// statement at a position below `size` (the genesis key for sizes up to the first
    /// rotation's position).
    pub fn hub_key_for(&self, size: u64) -> Option<&HubKeyPeriod> {
        self.hub_keys
            .iter()
            .rev()
            .find(|p| p.from_seq < size)
            .or(self.hub_keys.first())
    }

    /// The wire form, for `GetCoalition`.
    pub fn to_wire(&self) -> pb::CoalitionSettings {
        pb::CoalitionSettings {
            revision: self.revision,
            quotas: Some(self.quotas.to_wire()),
            hub_keys: self
                .hub_keys
                .iter()
                .map(|p| pb::HubKeyPeriod {
                    hub_public_key: p.key.to_bytes().to_vec(),
                    from_seq: p.from_seq,
                })
                .collect(),
            lifecycle: Some(self.lifecycle.to_wire()),
            witnesses: self
                .witnesses
                .as_ref()
                .map(|w| witness_policy_to_wire(Some(w))),
            federation: (!self.federation.origins.is_empty()).then(|| self.federation.to_wire()),
        }
    }
}

/// Parses the witness policy section (an empty text removes the policy).
fn witness_policy_from_wire(
    wire: &pb::WitnessPolicy,
) -> Result<Option<WitnessPolicy>, StatementError> {
    if wire.policy.trim().is_empty() {
        return Ok(None);
    }
    WitnessPolicy::parse(&wire.policy)
        .map(Some)
        .map_err(|e| StatementError::invalid("settings.witnesses.policy", e.to_string()))
}

fn witness_policy_to_wire(policy: Option<&WitnessPolicy>) -> pb::WitnessPolicy {
    pb::WitnessPolicy {
        policy: policy.map(|p| p.text().to_owned()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn limits(per_minute: u64) -> pb::QuotaLimits {
        pb::QuotaLimits {
            submissions_per_minute: per_minute,
            ..Default::default()
        }
    }

    fn quotas(members: &[&str]) -> pb::SettingsChange {
        pb::SettingsChange {
            reason: "r".into(),
            section: Some(pb::settings_change::Section::Quotas(pb::Quotas {
                default_limits: Some(limits(5)),
                members: members
                    .iter()
                    .map(|m| pb::MemberQuota {
                        member_id: (*m).into(),
                        limits: Some(limits(0)),
                    })
                    .collect(),
            })),
        }
    }

    #[test]
    fn changes_parse_and_round_trip() {
        let ok = SettingsChange::from_wire(quotas(&["acme", "beta"])).expect("valid");
        assert_eq!(SettingsChange::from_wire(ok.to_wire()).expect("again"), ok);
        let Section::Quotas(q) = &ok.section else {
            panic!("quotas")
        };
        let acme = MemberId::parse("acme").expect("id");
        let other = MemberId::parse("zeta").expect("id");
        assert!(q.limits(&acme).is_unlimited());
        assert_eq!(q.limits(&other).submissions_per_minute, Some(5));
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let rotation = SettingsChange {
            reason: String::new(),
            section: Section::HubKey(key),
        };
        assert_eq!(
            SettingsChange::from_wire(rotation.to_wire()).expect("rotation"),
            rotation
        );
    }

    #[test]
    fn bad_changes_name_the_field() {
        let cases: Vec<(pb::SettingsChange, &str)> = vec![
            (
                quotas(&["beta", "acme"]),
                "settings.quotas.members[1].member_id",
            ),
            (
                quotas(&["acme", "acme"]),
                "settings.quotas.members[1].member_id",
            ),
            (
                quotas(&["Not An Id"]),
                "settings.quotas.members[0].member_id",
            ),
            (
                pb::SettingsChange {
                    reason: String::new(),
                    section: None,
                },
                "settings.section",
            ),
            (
                pb::SettingsChange {
                    reason: String::new(),
                    section: Some(pb::settings_change::Section::HubKey(pb::HubKeyRotation {
                        hub_public_key: vec![1; 31],
                    })),
                },
                "settings.hub_key.hub_public_key",
            ),
            (
                pb::SettingsChange {
                    reason: String::new(),
                    section: Some(pb::settings_change::Section::Witnesses(pb::WitnessPolicy {
                        policy: "quorum nobody".into(),
                    })),
                },
                "settings.witnesses.policy",
            ),
        ];
        for (wire, field) in cases {
            match SettingsChange::from_wire(wire) {
                Err(StatementError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_empty_witness_policy_removes_it_and_a_set_one_round_trips() {
        let key = crate::log::cosignature::Cosigner::new(
            "witness.example/w1",
            SigningKey::from_bytes(&[3; 32]),
        )
        .expect("cosigner")
        .public()
        .to_string();
        let text = format!("witness {key} http://127.0.0.1:9\nquorum witness.example/w1\n");
        let wire = |policy: &str| pb::SettingsChange {
            reason: "r".into(),
            section: Some(pb::settings_change::Section::Witnesses(pb::WitnessPolicy {
                policy: policy.into(),
            })),
        };
        let set = SettingsChange::from_wire(wire(&text)).expect("a policy");
        assert!(matches!(&set.section, Section::Witnesses(Some(p)) if p.text() == text));
        assert_eq!(set.to_wire(), wire(&text), "the text is carried verbatim");
        let removed = SettingsChange::from_wire(wire(" \n")).expect("removal");
        assert_eq!(removed.section, Section::Witnesses(None));
    }

    #[test]
    fn hub_key_for_switches_after_the_rotation_position() {
        let k0 = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let k1 = SigningKey::from_bytes(&[2; 32]).verifying_key();
        let mut s = Settings::founded(k0);
        s.hub_keys.push(HubKeyPeriod {
            key: k1,
            from_seq: 5,
        });
        for (size, key) in [(0, k0), (1, k0), (5, k0), (6, k1), (100, k1)] {
            assert_eq!(s.hub_key_for(size).map(|p| p.key), Some(key), "size {size}");
        }
    }

    #[test]
    fn federation_section_is_checked() {
        let origin = |g: u8, name: &str, relays: &[u8]| pb::TrustedOrigin {
            genesis_id: vec![g; 32],
            hub_name: name.into(),
            relayed_by: relays.iter().map(|r| vec![*r; 32]).collect(),
            peer: String::new(),
        };
        let parse = |origins| Federation::from_wire(&pb::FederationSettings { origins });
        let ok = parse(vec![
            origin(1, "x.example", &[2]),
            origin(2, "y.example", &[]),
        ])
        .expect("valid");
        let x = StatementId([1; 32]);
        let y = StatementId([2; 32]);
        assert!(ok.may_relay(&x, &x));
        assert!(ok.may_relay(&y, &x), "y relays x");
        assert!(!ok.may_relay(&x, &y), "x does not relay y");
        assert!(!ok.may_relay(&StatementId([3; 32]), &x), "an unknown peer");
        assert_eq!(Federation::from_wire(&ok.to_wire()).expect("again"), ok);
        let refused = |origins, field: &str| {
            let e = parse(origins).expect_err("refused").to_string();
            assert!(e.contains(field), "{e}");
        };
        refused(
            vec![origin(2, "y.example", &[]), origin(1, "x.example", &[])],
            "origins[1].genesis_id",
        );
        refused(vec![origin(1, "x example", &[])], "origins[0].hub_name");
        refused(vec![origin(1, "x.example", &[1])], "relayed_by[0]");
        refused(vec![origin(1, "x.example", &[3, 2])], "relayed_by[1]");
        let mut short = origin(1, "x.example", &[]);
        short.genesis_id.pop();
        refused(vec![short], "genesis_id");
        // Each origin's peer member: a member id, one hub per member.
        let with_peer = |g: u8, name: &str, peer: &str| pb::TrustedOrigin {
            peer: peer.into(),
            ..origin(g, name, &[])
        };
        let peered = parse(vec![
            with_peer(1, "x.example", "hub-x"),
            origin(2, "y.example", &[]),
        ])
        .expect("valid");
        let hub_x = crate::membership::MemberId::parse("hub-x").expect("id");
        assert_eq!(peered.hub_of_peer(&hub_x), Some("x.example"));
        assert!(peered.trusts_hub("y.example") && !peered.trusts_hub("z.example"));
        assert_eq!(
            Federation::from_wire(&peered.to_wire()).expect("again"),
            peered
        );
        refused(
            vec![
                with_peer(1, "x.example", "hub-x"),
                with_peer(2, "y.example", "hub-x"),
            ],
            "origins[1].peer",
        );
        refused(vec![with_peer(1, "x.example", "Hub X")], "origins[0].peer");
        refused(
            vec![with_peer(1, "x.example", "hub@y.example")],
            "origins[0].peer",
        );
    }
}
