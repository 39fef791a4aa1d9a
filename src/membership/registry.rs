//! The registry: membership as replayed from the log, and the rules that decide whether an
//! entry may be logged at the current point.
//!
//! One implementation for everyone: the hub's store writer runs [`Registry::signing_keys`] and
//! [`Registry::apply`] on every entry in log order, and so does an auditor replaying an export.
//! Entry N is valid iff it is valid against the registry built from entries `0..N`.

use super::change::{Action, Admission, Change, Genesis, Revocation};
use super::{KeyId, KeyStatus, Member, MemberId, MemberKey, MemberStatus, Role};
use crate::lifecycle::{
    EntryState, HashKey, Judge, Lifecycle, Retracted, StatementStates, Tally, Target,
};
use crate::settings::{HubKeyPeriod, Section, Settings, SettingsChange};
use crate::statement::{
    Body, Header, Kind, ParsedEnvelope, Reader, Recipients, SignatureError, Statement, StatementId,
    Verified,
};
use ed25519_dalek::VerifyingKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use thiserror::Error;

/// The coalition's governance, founded by the genesis (quorum, settings and the hub key
/// changeable later).
#[derive(Clone, Debug, PartialEq)]
pub struct Coalition {
    /// The hub's name (checkpoint origin).
    pub hub_name: String,
    /// The hub's current checkpoint key (the genesis key until a settings change rotates
    /// it; every key and where it took over: `settings.hub_keys`).
    pub hub_key: VerifyingKey,
    /// The genesis statement id (what auditors pin).
    pub genesis_id: StatementId,
    /// Admin signatures a membership change needs.
    pub quorum: u32,
    /// The newest protocol version announced in the log (1 at the genesis).
    pub protocol_version: u32,
    /// The coalition settings in force.
    pub settings: Settings,
}

/// Where an entry sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Its sequence number (Merkle leaf index).
    pub seq: u64,
    /// When the hub accepted it.
    pub received_at_ms: i64,
}

/// Who made one signature of an envelope, index-aligned with the envelope's signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The member whose key it is; `None` for the hub's own key (genesis only).
    pub member: Option<MemberId>,
    /// The key that must verify the signature.
    pub key: VerifyingKey,
}

/// One membership change as it concerned a member.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Where it is in the log.
    pub position: Position,
    /// The statement that made it.
    pub statement_id: StatementId,
    /// The admins who signed it (issuer first).
    pub signed_by: Vec<MemberId>,
    /// What changed.
    pub change: String,
    /// Why.
    pub reason: String,
}

/// Why an entry may not be logged here.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum EntryError {
    /// Nothing but a genesis can start a log.
    #[error("this hub has no genesis yet: run `coalition init` to found it")]
    NoGenesis,
    /// A log has one genesis.
    #[error("this hub already has its genesis (statement {0}); a hub is founded only once")]
    SecondGenesis(StatementId),
    /// The issuer is not a registered member.
    #[error("issuer '{0}' is not a member of this coalition")]
    UnknownIssuer(MemberId),
    /// The issuer is suspended or removed.
    #[error("issuer '{id}' is {status}; it may not make statements")]
    IssuerNotActive {
        /// The issuer.
        id: MemberId,
        /// `suspended` or `removed`.
        status: &'static str,
    },
    /// The issuer lacks the role this kind of statement needs.
    #[error("member '{id}' lacks the '{role}' role needed to {action}")]
    NotEntitled {
        /// The issuer.
        id: MemberId,
        /// The role needed.
        role: &'static str,
        /// What it tried.
        action: &'static str,
    },
    /// A signature names a key nobody entitled holds.
    #[error("signatures[{index}]: key {key_id} is not an active key of {whose}")]
    UnknownKey {
        /// Position in the envelope.
        index: usize,
        /// The key named.
        key_id: KeyId,
        /// Whose key it had to be.
        whose: String,
    },
    /// A signature by a key that was revoked before this entry.
    #[error(
        "signatures[{index}]: key {key_id} of '{member}' was {status} at log entry {revoked_seq}; sign with an active key"
    )]
    RevokedKey {
        /// Position in the envelope.
        index: usize,
        /// The key.
        key_id: KeyId,
        /// Its owner.
        member: MemberId,
        /// `retired` or `compromised`.
        status: &'static str,
        /// The revocation's log position.
        revoked_seq: u64,
    },
    /// The statement's own key did not sign, or signed for someone else.
    #[error(
        "signatures: none by key {0}, the key_id the statement names, as a key of its issuer; sign the payload with it"
    )]
    MissingSignerKey(KeyId),
    /// A hub key rotation not signed by the new hub key.
    #[error(
        "signatures: a hub key rotation must also be signed by the new hub key it names ({0}), proving the hub holds it; sign with `coalition admin cosign --key NEW_HUB_KEY`"
    )]
    NewHubKeyMustSign(KeyId),
    /// A genesis not signed by the hub key it names.
    #[error(
        "signatures: the genesis must also be signed by the hub key it names ({0}); sign with the hub's signing key"
    )]
    HubMustSign(KeyId),
    /// Too few distinct admins signed a membership or settings change.
    #[error(
        "this {what} needs signatures of {needed} distinct admins, it has {got} ({signers}); collect more with `coalition admin cosign` and submit again"
    )]
    QuorumNotMet {
        /// `membership change` or `settings change`.
        what: &'static str,
        /// The quorum.
        needed: u32,
        /// Distinct admins that signed.
        got: usize,
        /// Their ids.
        signers: String,
    },
    /// A signature does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The change names a member or key that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change would create something that exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The change is not possible in the current state.
    #[error("{0}")]
    Precondition(String),
}

/// A retraction or an opinion as an origin's membership replayed it, for
/// [`Registry::record_relayed`].
#[derive(Clone, Copy, Debug)]
pub enum RelayedLifecycle<'a> {
    /// A retraction.
    Retraction(&'a crate::lifecycle::Record),
    /// An opinion.
    Opinion(&'a crate::lifecycle::OpinionRecord),
}

/// Membership as of some point of the log.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    coalition: Option<Coalition>,
    members: BTreeMap<MemberId, Member>,
    /// Every key ever registered, to its owner: key ids are unique across the coalition.
    key_owner: HashMap<KeyId, MemberId>,
    /// Compromised keys and from when they are distrusted.
    compromised: HashMap<KeyId, i64>,
    history: HashMap<MemberId, Vec<Event>>,
    /// Retractions and opinions replayed, by target: this hub's, and those relayed from
    /// other hubs (their issuers qualified, `admin@x.example`; [`Registry::record_relayed`]).
    lifecycle: Lifecycle,
    /// The membership of each hub relayed from, by the name its members are qualified with
    /// (docs/PROTOCOL.md §3.10): it judges what concerns that hub's members (whose opinions
    /// count, which of their keys are compromised) and never grants anything here.
    origins: BTreeMap<String, Arc<Registry>>,
    /// The relayed erasures: their position here, to their position at their origin (what a
    /// relayed entry's `relay.erased_by` names, docs/PROTOCOL.md §3.10).
    relayed_erasures: BTreeMap<u64, u64>,
}

fn status_name(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::Active => "active",
        MemberStatus::Suspended => "suspended",
        MemberStatus::Removed => "removed",
    }
}

impl Registry {
    /// An empty registry: the state before the genesis.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The coalition's governance, once founded.
    pub fn coalition(&self) -> Option<&Coalition> {
        self.coalition.as_ref()
    }

    /// A member by id (any status).
    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Every member ever admitted, ordered by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The membership changes that concerned a member, oldest first.
    pub fn history(&self, id: &MemberId) -> &[Event] {
        self.history.get(id).map_or(&[], Vec::as_slice)
    }

    /// Active admins holding at least one active key: those who can sign changes.
    pub fn signing_admins(&self) -> Vec<&MemberId> {
        self.members
            .values()
            .filter(|m| can_sign_changes(m))
            .map(|m| &m.id)
            .collect()
    }

    /// The retractions replayed (see [`crate::lifecycle`]).
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Whether `key_id` was declared compromised from a time at or before `at_ms`.
    pub fn is_compromised(&self, key_id: &KeyId, at_ms: i64) -> bool {
        self.compromised
            .get(key_id)
            .is_some_and(|since| *since <= at_ms)
    }

    /// Whether a member's opinions count in tallies: active, with the `member` role (a member
    /// of another hub: there, as its origin's membership says).
    pub fn counts_opinions(&self, id: &MemberId) -> bool {
        if let Some((id, hub)) = id.foreign() {
            return self
                .origins
                .get(hub)
                .is_some_and(|origin| origin.counts_opinions(&id));
        }
        self.members
            .get(id)
            .is_some_and(|m| m.status == MemberStatus::Active && m.has_role(Role::Member))
    }

    /// Whether `key_id`, a key of `member`, was declared compromised from a time at or before
    /// `at_ms`: by this hub's membership, or, for a member of another hub, by its origin's
    /// (never by any other hub's, which may register any public key it likes).
    pub fn is_compromised_for(&self, member: &MemberId, key_id: &KeyId, at_ms: i64) -> bool {
        match member.hub() {
            None => self.is_compromised(key_id, at_ms),
            Some(hub) => self
                .origins
                .get(hub)
                .is_some_and(|origin| origin.is_compromised(key_id, at_ms)),
        }
    }

    /// The origin position of the relayed erasure logged here at `seq`.
    pub fn origin_position(&self, seq: u64) -> Option<u64> {
        self.relayed_erasures.get(&seq).copied()
    }

    /// The hubs relayed from: the name their members are qualified with, their membership.
    pub fn origins(&self) -> impl Iterator<Item = (&str, &Arc<Registry>)> {
        self.origins.iter().map(|(hub, r)| (hub.as_str(), r))
    }

    /// The membership of the hub relayed from under `hub_name`, as relayed so far.
    pub fn origin(&self, hub_name: &str) -> Option<&Arc<Registry>> {
        self.origins.get(hub_name)
    }

    /// Sets the membership of the hub relayed from under `hub_name` (the relaying replica
    /// keeps it current: [`crate::replica::Replica`]).
    pub fn set_origin(&mut self, hub_name: &str, registry: Arc<Registry>) {
        self.origins.insert(hub_name.to_owned(), registry);
    }

    /// Records a retraction or an opinion another hub logged and this log relays
    /// (docs/PROTOCOL.md §3.10): `record`, as the origin's membership replayed it, with its
    /// issuer qualified by `hub_name` and logged here at `seq`. Its receipt time stays the
    /// origin's, the time the origin's key compromises are judged against. An erasure erases
    /// here too (its origin position is kept: [`Registry::origin_position`]).
    pub fn record_relayed(&mut self, hub_name: &str, seq: u64, record: RelayedLifecycle<'_>) {
        match record {
            RelayedLifecycle::Retraction(r) => {
                if r.retraction.erase {
                    self.relayed_erasures.insert(seq, r.position.seq);
                }
                self.lifecycle.record(
                    r.id,
                    Position {
                        seq,
                        received_at_ms: r.position.received_at_ms,
                    },
                    r.issuer.qualified(hub_name),
                    r.key_ids.clone(),
                    r.retraction.clone(),
                );
            }
            RelayedLifecycle::Opinion(o) => self.lifecycle.record_opinion(
                o.id,
                Position {
                    seq,
                    received_at_ms: o.position.received_at_ms,
                },
                o.issuer.qualified(hub_name),
                o.key_ids.clone(),
                o.opinion.clone(),
                o.recipients.clone(),
            ),
        }
    }

    /// The quarantine threshold in force (the default before any lifecycle setting).
    pub fn quarantine_threshold(&self) -> u32 {
        self.coalition
            .as_ref()
            .map_or(crate::lifecycle::DEFAULT_QUARANTINE_THRESHOLD, |c| {
                c.settings.lifecycle.quarantine_threshold
            })
    }

    /// Runs `f` with the read-time rules of the membership and settings replayed so far.
    pub fn with_judge<T>(&self, f: impl FnOnce(&Judge<'_>) -> T) -> T {
        let compromised = |m: &MemberId, k: &KeyId, at: i64| self.is_compromised_for(m, k, at);
        let counts = |m: &MemberId| self.counts_opinions(m);
        f(&Judge {
            compromised: &compromised,
            counts: &counts,
            quarantine_threshold: self.quarantine_threshold(),
        })
    }

    /// The state of entry `index` of `target`, as the lifecycle statements replayed and the
    /// membership replayed so far decide it.
    pub fn entry_state(&self, target: &Target<'_>, index: u32) -> EntryState {
        self.states(target).state(index)
    }

    /// The state of every entry of `target` (retractions and opinions that apply).
    pub fn states(&self, target: &Target<'_>) -> StatementStates {
        if !self.lifecycle.names(&target.id) {
            return StatementStates::default();
        }
        self.with_judge(|judge| self.lifecycle.states(target, judge))
    }

    /// The tally of `hash` across every statement that shares it, for an entry of `issuer`.
    pub fn hash_tally(&self, hash: &HashKey, issuer: &MemberId) -> Tally {
        if self.lifecycle.opinions_on_hash(hash).is_empty() {
            return Tally::default();
        }
        self.with_judge(|judge| self.lifecycle.hash_tally(hash, issuer, judge))
    }

    /// The `seen` count of entry `index` of `target` that `reader` may read
    /// ([`Lifecycle::seen`]).
    pub fn seen(&self, target: &Target<'_>, index: u32, reader: &Reader) -> u32 {
        if !self.lifecycle.names(&target.id) {
            return 0;
        }
        self.with_judge(|judge| self.lifecycle.seen(target, index, judge, reader))
    }

    /// The `seen` count of `hash` across every statement sharing it, for an entry of
    /// `issuer`, that `reader` may read ([`Lifecycle::hash_seen`]).
    pub fn hash_seen(&self, hash: &HashKey, issuer: &MemberId, reader: &Reader) -> u32 {
        if self.lifecycle.opinions_on_hash(hash).is_empty() {
            return 0;
        }
        self.with_judge(|judge| self.lifecycle.hash_seen(hash, issuer, judge, reader))
    }

    /// Which entries of `target` are retracted.
    pub fn retracted(&self, target: &Target<'_>) -> Retracted {
        if !self.lifecycle.names(&target.id) {
            return Retracted::default();
        }
        self.lifecycle
            .retracted(target, &|m, k, at| self.is_compromised_for(m, k, at))
    }

    /// The log position of the erasure that erased `target`, if one applies
    /// (docs/PROTOCOL.md §2.8): its body is then gone and never served.
    pub fn erased_by(&self, target: &Target<'_>) -> Option<u64> {
        if !self.lifecycle.erases(&target.id) {
            return None;
        }
        self.retracted(target).erased_by
    }

    /// The earliest time from which one of `member`'s keys is declared compromised (`None`:
    /// none is). A statement of theirs received before it cannot be compromised; one received
    /// at or after it is if its signing key is that one ([`Registry::is_compromised`]).
    pub fn compromised_since(&self, member: &MemberId) -> Option<i64> {
        if let Some((id, hub)) = member.foreign() {
            return self.origins.get(hub)?.compromised_since(&id);
        }
        self.compromised
            .iter()
            .filter(|(key, _)| self.key_owner.get(*key) == Some(member))
            .map(|(_, since)| *since)
            .min()
    }

    /// The member a key was registered to (key ids are unique across the coalition).
    pub fn key_owner(&self, key_id: &KeyId) -> Option<&MemberId> {
        self.key_owner.get(key_id)
    }

    /// The member a key was registered to, here or (qualified, `acme@x.example`) at a hub
    /// relayed from; this hub's own members first.
    pub fn key_owner_here(&self, key_id: &KeyId) -> Option<MemberId> {
        self.key_owner.get(key_id).cloned().or_else(|| {
            self.origins
                .iter()
                .find_map(|(hub, origin)| origin.key_owner.get(key_id).map(|m| m.qualified(hub)))
        })
    }

    /// Of `key_ids`, those declared compromised from a time at or before `at_ms`.
    pub fn compromised<'a>(
        &self,
        key_ids: impl IntoIterator<Item = &'a str>,
        at_ms: i64,
    ) -> Vec<String> {
        if self.compromised.is_empty() {
            return Vec::new();
        }
        key_ids
            .into_iter()
            .filter(|k| {
                KeyId::parse(k)
                    .ok()
                    .and_then(|k| self.compromised.get(&k))
                    .is_some_and(|since| *since <= at_ms)
            })
            .map(str::to_owned)
            .collect()
    }

    /// Who must have made each signature (`key_ids`, in envelope order) for `statement` to be
    /// logged now, or why it may not be. Checks entitlement only (roles, status, key status,
    /// quorum); the caller verifies the signatures with the returned keys.
    ///
    /// A genesis and a settings change may name signers of their own (the hub key), so they
    /// need their `body`; everything else is decided from the header.
    pub fn signing_keys(
        &self,
        statement: &Header,
        body: Option<&Body>,
        key_ids: &[KeyId],
    ) -> Result<Vec<Signer>, EntryError> {
        // Every signature by a key of the issuer itself, a member entitled to `what`.
        let own_signers = |what: &'static str| -> Result<Vec<Signer>, EntryError> {
            let issuer = self.issuer(statement, Role::Member, what)?;
            key_ids
                .iter()
                .enumerate()
                .map(|(index, key_id)| {
                    key_of(issuer, index, key_id).map(|key| Signer {
                        member: Some(issuer.id.clone()),
                        key,
                    })
                })
                .collect()
        };
        let signers = match (statement.kind, &self.coalition) {
            (Kind::Genesis, None) => {
                let Some(Body::Genesis(genesis)) = body else {
                    return Err(EntryError::Signature(SignatureError::NoBody));
                };
                genesis_signers(statement, genesis, key_ids)?
            }
            (Kind::Genesis, Some(c)) => return Err(EntryError::SecondGenesis(c.genesis_id)),
            (_, None) => return Err(EntryError::NoGenesis),
            (Kind::Retraction, Some(_)) if !admin_quorum_lifecycle(body)? => {
                own_signers("retract statements")?
            }
            // A restricted opinion is a member's `seen` (or its withdrawal), never an admin
            // quorum's (`Header::check_body`): a reader the body is withheld from decides from
            // the header alone.
            (Kind::Opinion, Some(_))
                if statement.is_restricted() || !admin_quorum_lifecycle(body)? =>
            {
                own_signers("give opinions")?
            }
            (Kind::Membership | Kind::Settings | Kind::Retraction | Kind::Opinion, Some(c)) => {
                let new_hub_key = match (statement.kind, body) {
                    (Kind::Membership | Kind::Retraction | Kind::Opinion, _) => None,
                    (_, Some(Body::Settings(change))) => change.new_hub_key().copied(),
                    _ => return Err(EntryError::Signature(SignatureError::NoBody)),
                };
                let action = match statement.kind {
                    Kind::Membership => "sign membership changes",
                    Kind::Retraction => "sign admin-quorum retractions",
                    Kind::Opinion => "sign admin-quorum quarantines and releases",
                    _ => "sign settings changes",
                };
                self.issuer(statement, Role::Admin, action)?;
                let signers = self.admin_signers(key_ids, new_hub_key.as_ref())?;
                if let Some(key) = &new_hub_key
                    && !signers.iter().any(|s| s.member.is_none())
                {
                    return Err(EntryError::NewHubKeyMustSign(KeyId::of(key)));
                }
                let mut distinct: Vec<&MemberId> =
                    signers.iter().filter_map(|s| s.member.as_ref()).collect();
                distinct.sort();
                distinct.dedup();
                if distinct.len() < c.quorum as usize {
                    return Err(EntryError::QuorumNotMet {
                        what: match statement.kind {
                            Kind::Membership => "membership change",
                            Kind::Retraction => "admin-quorum retraction",
                            Kind::Opinion => "admin-quorum quarantine or release",
                            _ => "settings change",
                        },
                        needed: c.quorum,
                        got: distinct.len(),
                        signers: distinct
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                signers
            }
            (Kind::HashSet | Kind::RiskSignal, Some(_)) => own_signers("submit statements")?,
        };
        let own = key_ids
            .iter()
            .zip(&signers)
            .any(|(k, s)| k == &statement.key_id && s.member.as_ref() == Some(&statement.issuer));
        if !own {
            return Err(EntryError::MissingSignerKey(statement.key_id.clone()));
        }
        Ok(signers)
    }

    /// [`Registry::signing_keys`] then the signatures themselves: whether `parsed` may be
    /// logged now, and who signed it.
    pub fn verify(&self, parsed: ParsedEnvelope) -> Result<(Verified, Vec<Signer>), EntryError> {
        let body = parsed.statement.as_ref().map(|s| &s.body);
        let signers = self.signing_keys(&parsed.header, body, &parsed.key_ids)?;
        let keys: Vec<VerifyingKey> = signers.iter().map(|s| s.key).collect();
        Ok((parsed.verify_with(&keys)?, signers))
    }

    fn issuer(
        &self,
        statement: &Header,
        role: Role,
        action: &'static str,
    ) -> Result<&Member, EntryError> {
        let member = self
            .members
            .get(&statement.issuer)
            .ok_or_else(|| EntryError::UnknownIssuer(statement.issuer.clone()))?;
        if member.status != MemberStatus::Active {
            return Err(EntryError::IssuerNotActive {
                id: member.id.clone(),
                status: status_name(member.status),
            });
        }
        if !member.has_role(role) {
            return Err(EntryError::NotEntitled {
                id: member.id.clone(),
                role: role.name(),
                action,
            });
        }
        Ok(member)
    }

    /// For a statement whose content this code cannot read (a newer protocol version): each
    /// signature must be by an active key of an active member.
    pub fn active_signers(&self, key_ids: &[KeyId]) -> Result<Vec<Signer>, EntryError> {
        self.signers_among(key_ids, None, "any active member", |m| {
            m.status == MemberStatus::Active
        })
    }

    /// Each signature's key: an active key of an active admin, or `new_hub_key` (a hub key
    /// rotation's proof of possession, made by no member).
    fn admin_signers(
        &self,
        key_ids: &[KeyId],
        new_hub_key: Option<&VerifyingKey>,
    ) -> Result<Vec<Signer>, EntryError> {
        self.signers_among(key_ids, new_hub_key, "any active admin", |m| {
            m.status == MemberStatus::Active && m.has_role(Role::Admin)
        })
    }

    /// Each signature's key, held by whichever member `eligible` accepts (key ids are unique
    /// across the coalition) and still active, or the `hub` key (no member's); `whose` names
    /// the eligible in errors.
    fn signers_among(
        &self,
        key_ids: &[KeyId],
        hub: Option<&VerifyingKey>,
        whose: &str,
        eligible: impl Fn(&Member) -> bool,
    ) -> Result<Vec<Signer>, EntryError> {
        let hub = hub.map(|k| (KeyId::of(k), *k));
        key_ids
            .iter()
            .enumerate()
            .map(|(index, key_id)| {
                if let Some((hub_id, key)) = &hub
                    && hub_id == key_id
                {
                    return Ok(Signer {
                        member: None,
                        key: *key,
                    });
                }
                let owner = self
                    .key_owner
                    .get(key_id)
                    .and_then(|id| self.members.get(id))
                    .filter(|m| eligible(m))
                    .ok_or_else(|| EntryError::UnknownKey {
                        index,
                        key_id: key_id.clone(),
                        whose: whose.into(),
                    })?;
                key_of(owner, index, key_id).map(|key| Signer {
                    member: Some(owner.id.clone()),
                    key,
                })
            })
            .collect()
    }

    /// Applies an entry whose signatures verified with the keys [`Registry::signing_keys`]
    /// returned. Membership statements change the registry; a change that is not possible now
    /// is refused and leaves the registry as it was. Other statements change nothing.
    /// `recipients` are those its header names (a restricted `seen` opinion's).
    pub fn apply(
        &mut self,
        statement: &Statement,
        recipients: &Recipients,
        id: StatementId,
        position: Position,
        signers: &[Signer],
    ) -> Result<(), EntryError> {
        let signed_by = || {
            let mut ids: Vec<MemberId> = vec![statement.issuer.clone()];
            for s in signers {
                if let Some(m) = &s.member
                    && !ids.contains(m)
                {
                    ids.push(m.clone());
                }
            }
            ids
        };
        match &statement.body {
            Body::Genesis(genesis) => {
                self.found(genesis, id, position, signed_by());
                Ok(())
            }
            Body::Membership(change) => self.change(change, id, position, signed_by()),
            Body::Settings(change) => self.set(change, position),
            Body::Retraction(retraction) => {
                self.lifecycle.record(
                    id,
                    position,
                    statement.issuer.clone(),
                    signers.iter().map(|s| KeyId::of(&s.key)).collect(),
                    retraction.clone(),
                );
                Ok(())
            }
            Body::Opinion(opinion) => {
                self.lifecycle.record_opinion(
                    id,
                    position,
                    statement.issuer.clone(),
                    signers.iter().map(|s| KeyId::of(&s.key)).collect(),
                    opinion.clone(),
                    recipients.clone(),
                );
                Ok(())
            }
            Body::HashSet(_) | Body::RiskSignal(_) => Ok(()),
        }
    }

    fn found(
        &mut self,
        genesis: &Genesis,
        id: StatementId,
        position: Position,
        signed_by: Vec<MemberId>,
    ) {
        self.coalition = Some(Coalition {
            hub_name: genesis.hub_name.clone(),
            hub_key: genesis.hub_key,
            genesis_id: id,
            quorum: genesis.quorum,
            protocol_version: 1,
            settings: Settings::founded(genesis.hub_key),
        });
        for admission in &genesis.admins {
            self.admit(admission, position);
            self.record(
                &admission.id,
                Event {
                    position,
                    statement_id: id,
                    signed_by: signed_by.clone(),
                    change: format!(
                        "founding admin of '{}' (quorum {}); {}",
                        genesis.hub_name,
                        genesis.quorum,
                        admitted(admission)
                    ),
                    reason: "genesis".into(),
                },
            );
        }
    }

    fn admit(&mut self, a: &Admission, position: Position) {
        let keys = a
            .keys
            .iter()
            .map(|k| MemberKey {
                key_id: KeyId::of(k),
                public_key: *k,
                status: KeyStatus::Active,
                added_seq: position.seq,
                revoked_seq: None,
                compromised_at_ms: None,
            })
            .collect::<Vec<_>>();
        for k in &keys {
            self.key_owner.insert(k.key_id.clone(), a.id.clone());
        }
        self.members.insert(
            a.id.clone(),
            Member {
                id: a.id.clone(),
                display_name: a.display_name.clone(),
                roles: a.roles.clone(),
                status: MemberStatus::Active,
                keys,
                added_at_ms: position.received_at_ms,
                added_seq: position.seq,
                cert_pins: a.cert_pins.clone(),
            },
        );
    }

    fn record(&mut self, member: &MemberId, event: Event) {
        self.history.entry(member.clone()).or_default().push(event);
    }

    fn existing(&self, id: &MemberId) -> Result<&Member, EntryError> {
        self.members.get(id).ok_or_else(|| {
            EntryError::NotFound(format!("member '{id}' is not registered with this hub"))
        })
    }

    /// `id` as it would be after `edit`, refused if that leaves too few admins able to sign.
    fn edited(
        &self,
        id: &MemberId,
        verb: &str,
        edit: impl FnOnce(&mut Member),
    ) -> Result<Member, EntryError> {
        let before = self.existing(id)?;
        if before.status == MemberStatus::Removed {
            return Err(EntryError::Precondition(format!(
                "member '{id}' was removed for good; it cannot be changed (admit a new id instead)"
            )));
        }
        let mut after = before.clone();
        edit(&mut after);
        let quorum = self.coalition.as_ref().map_or(1, |c| c.quorum);
        let remaining = self.signing_admins().len() - usize::from(can_sign_changes(before))
            + usize::from(can_sign_changes(&after));
        if remaining < quorum.max(1) as usize {
            return Err(EntryError::Precondition(format!(
                "{verb} would leave {remaining} admin(s) able to sign membership changes, fewer than the quorum of {quorum}; admit or promote another admin (or lower the quorum) first"
            )));
        }
        Ok(after)
    }

    fn change(
        &mut self,
        change: &Change,
        id: StatementId,
        position: Position,
        signed_by: Vec<MemberId>,
    ) -> Result<(), EntryError> {
        let updated = match &change.action {
            Action::Admit(a) => {
                if self.members.contains_key(&a.id) {
                    return Err(EntryError::AlreadyExists(format!(
                        "member '{}' already exists (member ids are never reused)",
                        a.id
                    )));
                }
                self.check_new_keys(&a.keys)?;
                self.admit(a, position);
                None
            }
            Action::Suspend(m) => {
                if self.existing(m)?.status == MemberStatus::Suspended {
                    return Err(EntryError::Precondition(format!(
                        "member '{m}' is already suspended"
                    )));
                }
                Some(self.edited(m, &format!("suspending '{m}'"), |x| {
                    x.status = MemberStatus::Suspended;
                })?)
            }
            Action::Reinstate(m) => {
                let member = self.existing(m)?;
                if member.status != MemberStatus::Suspended {
                    return Err(EntryError::Precondition(format!(
                        "member '{m}' is {}, not suspended; only a suspended member can be reinstated",
                        status_name(member.status)
                    )));
                }
                Some(self.edited(m, "reinstating", |x| x.status = MemberStatus::Active)?)
            }
            Action::Remove(m) => Some(self.edited(m, &format!("removing '{m}'"), |x| {
                x.status = MemberStatus::Removed;
            })?),
            Action::AddKey { member, key } => {
                self.check_new_keys(std::slice::from_ref(key))?;
                if self.existing(member)?.keys.len() >= super::MAX_KEYS {
                    return Err(EntryError::Precondition(format!(
                        "member '{member}' already holds {} keys, the most allowed",
                        super::MAX_KEYS
                    )));
                }
                let key_id = KeyId::of(key);
                let added = self.edited(member, "adding a key", |x| {
                    x.keys.push(MemberKey {
                        key_id: key_id.clone(),
                        public_key: *key,
                        status: KeyStatus::Active,
                        added_seq: position.seq,
                        revoked_seq: None,
                        compromised_at_ms: None,
                    });
                })?;
                self.key_owner.insert(key_id, member.clone());
                Some(added)
            }
            Action::RevokeKey {
                member,
                key_id,
                revocation,
            } => {
                let current = self.existing(member)?;
                let key = current
                    .keys
                    .iter()
                    .find(|k| &k.key_id == key_id)
                    .ok_or_else(|| {
                        EntryError::NotFound(format!("member '{member}' has no key {key_id}"))
                    })?;
                match (key.status, revocation) {
                    (KeyStatus::Compromised, _) | (KeyStatus::Retired, Revocation::Retired) => {
                        return Err(EntryError::Precondition(format!(
                            "key {key_id} of '{member}' is already {}",
                            if key.status == KeyStatus::Retired {
                                "retired"
                            } else {
                                "revoked as compromised"
                            }
                        )));
                    }
                    _ => {}
                }
                let revoked = self.edited(member, &format!("revoking key {key_id}"), |x| {
                    if let Some(k) = x.keys.iter_mut().find(|k| &k.key_id == key_id) {
                        k.revoked_seq = k.revoked_seq.or(Some(position.seq));
                        match revocation {
                            Revocation::Retired => k.status = KeyStatus::Retired,
                            Revocation::Compromised { compromised_at_ms } => {
                                k.status = KeyStatus::Compromised;
                                k.compromised_at_ms = Some(*compromised_at_ms);
                            }
                        }
                    }
                })?;
                if let Revocation::Compromised { compromised_at_ms } = revocation {
                    self.compromised.insert(key_id.clone(), *compromised_at_ms);
                }
                Some(revoked)
            }
            Action::SetRoles { member, roles } => Some(self.edited(
                member,
                &format!("changing the roles of '{member}'"),
                |x| x.roles = roles.clone(),
            )?),
            Action::SetQuorum(q) => {
                let admins = self.signing_admins().len();
                if *q as usize > admins {
                    return Err(EntryError::Precondition(format!(
                        "a quorum of {q} is more than the {admins} admin(s) able to sign; admit more admins first"
                    )));
                }
                if let Some(c) = &mut self.coalition {
                    c.quorum = *q;
                }
                None
            }
            Action::SetProtocolVersion(v) => {
                let current = self.coalition.as_ref().map_or(1, |c| c.protocol_version);
                if *v <= current {
                    return Err(EntryError::Precondition(format!(
                        "the log is at protocol version {current} already; versions only go up"
                    )));
                }
                if let Some(c) = &mut self.coalition {
                    c.protocol_version = *v;
                }
                None
            }
        };
        if let Some(member) = updated {
            self.members.insert(member.id.clone(), member);
        }
        if let Some(subject) = change.subject() {
            let description = match &change.action {
                Action::Admit(a) => admitted(a),
                _ => change.describe(),
            };
            self.record(
                &subject.clone(),
                Event {
                    position,
                    statement_id: id,
                    signed_by,
                    change: description,
                    reason: change.reason.clone(),
                },
            );
        }
        Ok(())
    }

    /// Applies a settings change: the section it names replaced whole. A hub key must be new
    /// to the coalition (never a member's key nor an earlier hub key).
    fn set(&mut self, change: &SettingsChange, position: Position) -> Result<(), EntryError> {
        if let Section::HubKey(key) = &change.section {
            let key_id = KeyId::of(key);
            let reused = self.coalition.as_ref().is_some_and(|c| {
                c.settings
                    .hub_keys
                    .iter()
                    .any(|p| KeyId::of(&p.key) == key_id)
            });
            if reused {
                return Err(EntryError::AlreadyExists(format!(
                    "key {key_id} was a hub key already; a rotation names a key never used before"
                )));
            }
            if let Some(owner) = self.key_owner.get(&key_id) {
                return Err(EntryError::AlreadyExists(format!(
                    "key {key_id} is registered to member '{owner}'; the hub signs with a key of its own"
                )));
            }
        }
        let Some(c) = &mut self.coalition else {
            return Err(EntryError::NoGenesis);
        };
        match &change.section {
            Section::Quotas(q) => c.settings.quotas = q.clone(),
            Section::Lifecycle(l) => c.settings.lifecycle = *l,
            Section::Witnesses(w) => c.settings.witnesses = w.clone(),
            Section::Federation(f) => {
                if f.origins.contains_key(&c.genesis_id)
                    || f.origins
                        .values()
                        .any(|o| o.relayed_by.contains(&c.genesis_id))
                {
                    return Err(EntryError::Precondition(
                        "the federation names this hub's own genesis: a hub does not relay its own statements".into(),
                    ));
                }
                c.settings.federation = f.clone();
            }
            Section::HubKey(key) => {
                c.settings.hub_keys.push(HubKeyPeriod {
                    key: *key,
                    from_seq: position.seq,
                });
                c.hub_key = *key;
            }
        }
        c.settings.revision += 1;
        Ok(())
    }

    fn check_new_keys(&self, keys: &[VerifyingKey]) -> Result<(), EntryError> {
        for k in keys {
            let key_id = KeyId::of(k);
            if self.coalition.as_ref().is_some_and(|c| {
                c.settings
                    .hub_keys
                    .iter()
                    .any(|p| KeyId::of(&p.key) == key_id)
            }) {
                return Err(EntryError::AlreadyExists(format!(
                    "key {key_id} is a hub checkpoint key; every member signs with its own keys"
                )));
            }
            if let Some(owner) = self.key_owner.get(&key_id) {
                return Err(EntryError::AlreadyExists(format!(
                    "key {key_id} is already registered to member '{owner}'; every member signs with its own keys"
                )));
            }
        }
        Ok(())
    }
}

fn admitted(a: &Admission) -> String {
    format!(
        "admitted with roles {} and keys {}",
        a.roles
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(","),
        a.keys
            .iter()
            .map(|k| KeyId::of(k).to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Whether a lifecycle statement's body asks for the admin quorum; its body is needed
/// (lifecycle statements are always received whole).
fn admin_quorum_lifecycle(body: Option<&Body>) -> Result<bool, EntryError> {
    match body {
        Some(Body::Retraction(r)) => Ok(r.admin_quorum),
        Some(Body::Opinion(o)) => Ok(o.admin_quorum),
        _ => Err(EntryError::Signature(SignatureError::NoBody)),
    }
}

fn can_sign_changes(m: &Member) -> bool {
    m.status == MemberStatus::Active
        && m.has_role(Role::Admin)
        && m.keys.iter().any(|k| k.status == KeyStatus::Active)
}

/// The key `key_id` of `member` if it may sign now.
fn key_of(member: &Member, index: usize, key_id: &KeyId) -> Result<VerifyingKey, EntryError> {
    let key = member
        .keys
        .iter()
        .find(|k| &k.key_id == key_id)
        .ok_or_else(|| EntryError::UnknownKey {
            index,
            key_id: key_id.clone(),
            whose: format!("member '{}'", member.id),
        })?;
    match key.status {
        KeyStatus::Active => Ok(key.public_key),
        status => Err(EntryError::RevokedKey {
            index,
            key_id: key_id.clone(),
            member: member.id.clone(),
            status: if status == KeyStatus::Retired {
                "retired"
            } else {
                "revoked as compromised"
            },
            revoked_seq: key.revoked_seq.unwrap_or_default(),
        }),
    }
}

fn genesis_signers(
    statement: &Header,
    genesis: &Genesis,
    key_ids: &[KeyId],
) -> Result<Vec<Signer>, EntryError> {
    if !genesis.admins.iter().any(|a| a.id == statement.issuer) {
        return Err(EntryError::NotEntitled {
            id: statement.issuer.clone(),
            role: "admin",
            action: "issue the genesis (its issuer must be one of the admins it names)",
        });
    }
    let hub_key_id = KeyId::of(&genesis.hub_key);
    let signers = key_ids
        .iter()
        .enumerate()
        .map(|(index, key_id)| {
            if key_id == &hub_key_id {
                return Ok(Signer {
                    member: None,
                    key: genesis.hub_key,
                });
            }
            genesis
                .admins
                .iter()
                .find_map(|a| {
                    a.keys
                        .iter()
                        .find(|k| &KeyId::of(k) == key_id)
                        .map(|k| Signer {
                            member: Some(a.id.clone()),
                            key: *k,
                        })
                })
                .ok_or_else(|| EntryError::UnknownKey {
                    index,
                    key_id: key_id.clone(),
                    whose: "the hub or an admin the genesis names".into(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !signers.iter().any(|s| s.member.is_none()) {
        return Err(EntryError::HubMustSign(hub_key_id));
    }
    Ok(signers)
}
