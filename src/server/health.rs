//! Honest health: what the hub's background parts report (the store's writer thread, the
//! matching indexer, the checkpoint publisher, and any further component that registers a
//! reason, such as an outdated CRL), turned into the per-service gRPC health statuses and the
//! operations listener's `/healthz`. Health and reflection answer active members only (the
//! request gate, `limits.rs`, authorizes them like every other call).
//!
//! A service is NOT_SERVING while a component it depends on is down; the overall status
//! (service name `""`) is NOT_SERVING while any component is down. Every change is logged
//! once, with its reason.

use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic_health::ServingStatus;

/// A part of the hub whose failure makes (some of) its services unable to do their work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// The store's writer thread: every Submit (statements, membership changes) goes through it.
    Writer,
    /// The matching indexer: Match answers from the corpus it keeps in step with the log.
    Indexer,
    /// The checkpoint publisher: the Audit service's checkpoints and proofs.
    Checkpointer,
    /// Relaying from peer hubs (docs/PROTOCOL.md §3.10): down while a peer's log was refused;
    /// the hub serves its own members meanwhile (no service depends on it).
    Federation,
    /// Any other reason the whole hub should not be used (e.g. `"crl"` for a CRL past its
    /// `nextUpdate`): every service is NOT_SERVING while it is down.
    Other(&'static str),
}

impl Component {
    /// The name used in logs, `/healthz` and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Component::Writer => "writer",
            Component::Indexer => "indexer",
            Component::Checkpointer => "checkpointer",
            Component::Federation => "federation",
            Component::Other(name) => name,
        }
    }

    /// Whether the gRPC service `service` (its full name) cannot work while this is down.
    fn affects(self, service: &str) -> bool {
        use crate::pb::{audit_server::AuditServer, hub_server::HubServer};
        type Hub = HubServer<super::HubService>;
        type Audit = AuditServer<super::AuditService>;
        match self {
            Component::Writer | Component::Indexer => service == Hub::NAME,
            Component::Checkpointer => service == Audit::NAME,
            Component::Federation => false,
            Component::Other(_) => true,
        }
    }
}

/// The hub's health: the components that are down and why. Cheap to clone; every clone
/// shares one state. Components report with [`HealthState::set_down`] and
/// [`HealthState::set_up`]; readers take [`HealthState::faults`] or
/// [`HealthState::subscribe`].
#[derive(Clone)]
pub struct HealthState {
    faults: Arc<watch::Sender<Faults>>,
    /// Every component that ever reported (for the `coalition_component_up` gauges).
    known: Arc<Mutex<BTreeSet<Component>>>,
}

/// The components down now, each with its reason.
pub type Faults = BTreeMap<Component, String>;

impl Default for HealthState {
    fn default() -> Self {
        let known = [
            Component::Writer,
            Component::Indexer,
            Component::Checkpointer,
        ];
        HealthState {
            faults: Arc::new(watch::Sender::new(Faults::new())),
            known: Arc::new(Mutex::new(known.into_iter().collect())),
        }
    }
}

impl HealthState {
    /// Everything up.
    pub fn new() -> Self {
        Self::default()
    }

    /// `component` is down because of `reason` (logged as an error when it changes).
    pub fn set_down(&self, component: Component, reason: impl Into<String>) {
        let reason = reason.into();
        self.know(component);
        self.faults.send_if_modified(|faults| {
            if faults.get(&component) == Some(&reason) {
                return false;
            }
            tracing::error!(
                component = component.name(),
                %reason,
                "health: {} is down; the services that need it report NOT_SERVING",
                component.name()
            );
            faults.insert(component, reason);
            true
        });
    }

    /// `component` works (again); logged when it recovers.
    pub fn set_up(&self, component: Component) {
        self.know(component);
        self.faults.send_if_modified(|faults| {
            let was_down = faults.remove(&component).is_some();
            if was_down {
                tracing::info!(
                    component = component.name(),
                    "health: {} recovered",
                    component.name()
                );
            }
            was_down
        });
    }

    fn know(&self, component: Component) {
        if let Ok(mut known) = self.known.lock() {
            known.insert(component);
        }
    }

    /// Every component that ever reported, and whether it is up now.
    pub fn components(&self) -> Vec<(Component, bool)> {
        let faults = self.faults.borrow();
        let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        known
            .into_iter()
            .map(|c| (c, !faults.contains_key(&c)))
            .collect()
    }

    /// The components down now.
    pub fn faults(&self) -> Faults {
        self.faults.borrow().clone()
    }

    /// One line for people: `serving`, or the components down and why.
    pub fn summary(&self) -> String {
        summary(&self.faults.borrow())
    }

    /// A receiver that changes whenever a component goes down or recovers.
    pub fn subscribe(&self) -> watch::Receiver<Faults> {
        self.faults.subscribe()
    }
}

fn summary(faults: &Faults) -> String {
    if faults.is_empty() {
        return "serving".into();
    }
    let parts: Vec<String> = faults
        .iter()
        .map(|(c, reason)| format!("{} down: {reason}", c.name()))
        .collect();
    format!("not serving: {}", parts.join("; "))
}

/// The gRPC status of `service` (a full service name, or `""` for the whole hub) given `faults`.
pub fn status_of(service: &str, faults: &Faults) -> ServingStatus {
    let down = faults
        .keys()
        .any(|c| service.is_empty() || c.affects(service));
    if down {
        ServingStatus::NotServing
    } else {
        ServingStatus::Serving
    }
}

/// Keeps the gRPC health reporter in step with `health` for `services` (and `""`) until
/// `until` completes; then leaves the reporter to the shutdown.
pub async fn report(
    health: HealthState,
    reporter: tonic_health::server::HealthReporter,
    services: &'static [&'static str],
    until: impl std::future::Future<Output = ()>,
) {
    let mut changes = health.subscribe();
    tokio::pin!(until);
    loop {
        let faults = changes.borrow_and_update().clone();
        apply(&reporter, &faults, services).await;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = &mut until => return,
        }
    }
}

/// Sets the status of `services` (and `""`) from `faults`.
pub async fn apply(
    reporter: &tonic_health::server::HealthReporter,
    faults: &Faults,
    services: &[&str],
) {
    for service in std::iter::once(&"").chain(services) {
        reporter
            .set_service_status(*service, status_of(service, faults))
            .await;
    }
}

/// Follows the store's writer thread: down from the moment it stops accepting writes (a
/// failed write; the hub must restart to recover, see the store's durability notes).
pub async fn follow_writer(store: &Store, health: HealthState) {
    let mut fault = store.writer_fault();
    loop {
        match fault.borrow_and_update().clone() {
            Some(reason) => health.set_down(Component::Writer, reason),
            None => health.set_up(Component::Writer),
        }
        if fault.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "coalition.v1.Hub";
    const AUDIT: &str = "coalition.v1.Audit";
    const ADMIN: &str = "coalition.v1.Admin";

    fn check(down: &[Component], service: &str, expected: ServingStatus) {
        let faults: Faults = down.iter().map(|c| (*c, "why".to_owned())).collect();
        assert_eq!(
            status_of(service, &faults),
            expected,
            "{service} with {down:?} down"
        );
    }

    #[test]
    fn services_follow_the_components_they_need() {
        use Component::*;
        use ServingStatus::{NotServing, Serving};
        check(&[], "", Serving);
        check(&[], HUB, Serving);
        check(&[Writer], HUB, NotServing);
        check(&[Writer], AUDIT, Serving);
        check(&[Writer], ADMIN, Serving);
        check(&[Writer], "", NotServing);
        check(&[Indexer], HUB, NotServing);
        check(&[Indexer], AUDIT, Serving);
        check(&[Checkpointer], AUDIT, NotServing);
        check(&[Checkpointer], HUB, Serving);
        check(&[Other("crl")], ADMIN, NotServing);
        check(&[Other("crl")], HUB, NotServing);
    }

    #[test]
    fn a_component_goes_down_and_recovers() {
        let health = HealthState::new();
        assert_eq!(health.summary(), "serving");
        health.set_down(Component::Checkpointer, "disk full");
        health.set_down(Component::Indexer, "entry 3 does not decode");
        assert_eq!(
            health.summary(),
            "not serving: indexer down: entry 3 does not decode; checkpointer down: disk full"
        );
        health.set_up(Component::Indexer);
        health.set_up(Component::Checkpointer);
        assert_eq!(health.summary(), "serving");
        assert!(health.faults().is_empty());
    }
}
