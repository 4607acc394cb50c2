//! Request and connection limits (nginx's `limit_req` and `limit_conn`): the zones, which
//! outlive snapshots, and each location's limits over them.
//!
//! A [`ZoneRegistry`] keeps every zone a running tether has, by name; a snapshot build takes a
//! zone from it when its declaration (name, key, size, and rate for `limit_req_zone`) is
//! unchanged — so a reload keeps every key's bucket and count, as it keeps peers — or makes a
//! new one. [`Zones`] is one snapshot's view: the zones with their keys compiled against its
//! variables; [`Zones::limits`] compiles a location's [`Limits`], which the proxy runs in
//! nginx's preaccess phase. The registry also carries `sticky learn`'s session zones
//! (`sessions`), so that everything kept across reloads by zone name is in one place.
//!
//! Pure: std, `config`, `vars` and `sessions`. No tokio (the proxy waits out a delay), no hyper.

mod connections;
mod requests;
mod rules;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::config::{ConfigError, ConnectionZoneSpec, Http, LimitRules, RequestZoneSpec};
use crate::sessions::SessionRegistry;
use crate::vars::Vars;
pub use connections::{ConnectionHold, ConnectionZone};
pub use requests::RequestZone;
pub use rules::{ConnectionHolds, ConnectionVerdict, Key, Limits, RequestVerdict};
use rules::{ConnectionLimiter, RequestLimiter};

/// The zones of a running tether, by name, held weakly: a zone lives as long as a snapshot
/// (or a request's hold) uses it.
#[derive(Debug, Default)]
pub struct ZoneRegistry {
    requests: Mutex<HashMap<String, Weak<RequestZone>>>,
    connections: Mutex<HashMap<String, Weak<ConnectionZone>>>,
    /// `sticky learn` zones: kept across reloads by the same rule, and where the runtime finds
    /// the zones a sync worker serves.
    pub learned: SessionRegistry,
}

impl ZoneRegistry {
    /// The zone `spec` declares: the live one if its declaration is unchanged, else a new one.
    pub fn request_zone(&self, spec: &RequestZoneSpec) -> Arc<RequestZone> {
        let mut zones = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        zones.retain(|_, zone| zone.strong_count() > 0);
        if let Some(zone) = zones.get(&spec.name).and_then(Weak::upgrade)
            && zone.is(spec)
        {
            return zone;
        }
        let zone = Arc::new(RequestZone::new(spec));
        zones.insert(spec.name.clone(), Arc::downgrade(&zone));
        zone
    }

    /// As [`ZoneRegistry::request_zone`], for `limit_conn_zone`.
    pub fn connection_zone(&self, spec: &ConnectionZoneSpec) -> Arc<ConnectionZone> {
        let mut zones = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        zones.retain(|_, zone| zone.strong_count() > 0);
        if let Some(zone) = zones.get(&spec.name).and_then(Weak::upgrade)
            && zone.is(spec)
        {
            return zone;
        }
        let zone = Arc::new(ConnectionZone::new(spec));
        zones.insert(spec.name.clone(), Arc::downgrade(&zone));
        zone
    }
}

/// One snapshot's zones, each with its key compiled against the snapshot's variables.
#[derive(Debug, Default)]
pub struct Zones {
    requests: HashMap<String, (Arc<RequestZone>, Arc<Key>)>,
    connections: HashMap<String, (Arc<ConnectionZone>, Arc<Key>)>,
}

impl Zones {
    /// The http block's zones, taken from `registry`; a key that does not compile is an error.
    pub fn build(
        http: &Http,
        registry: &ZoneRegistry,
        vars: &Vars,
        errors: &mut Vec<ConfigError>,
    ) -> Zones {
        let mut zones = Zones::default();
        for spec in &http.request_zones {
            match Key::compile(&spec.key, vars, &spec.span) {
                Ok(key) => {
                    let zone = registry.request_zone(spec);
                    zones
                        .requests
                        .insert(spec.name.clone(), (zone, Arc::new(key)));
                }
                Err(error) => errors.push(error),
            }
        }
        for spec in &http.connection_zones {
            match Key::compile(&spec.key, vars, &spec.span) {
                Ok(key) => {
                    let zone = registry.connection_zone(spec);
                    zones
                        .connections
                        .insert(spec.name.clone(), (zone, Arc::new(key)));
                }
                Err(error) => errors.push(error),
            }
        }
        zones
    }

    /// The `limit_req_zone` called `name`.
    pub fn request_zone(&self, name: &str) -> Option<&Arc<RequestZone>> {
        self.requests.get(name).map(|(zone, _)| zone)
    }

    /// The `limit_conn_zone` called `name`.
    pub fn connection_zone(&self, name: &str) -> Option<&Arc<ConnectionZone>> {
        self.connections.get(name).map(|(zone, _)| zone)
    }

    /// A location's limits over these zones; None when it has none (most locations), so an
    /// unlimited request pays one branch. Limits on a zone that is not here (an error the
    /// lowering reported) are left out.
    pub fn limits(&self, rules: &LimitRules) -> Option<Box<Limits>> {
        if rules.is_empty() {
            return None;
        }
        let requests = rules.requests.iter().filter_map(|limit| {
            let (zone, key) = self.requests.get(&limit.zone)?;
            Some(RequestLimiter {
                zone: zone.clone(),
                key: key.clone(),
                burst: limit.burst.saturating_mul(1000),
                delay: limit.delay.saturating_mul(1000),
            })
        });
        let connections = rules.connections.iter().filter_map(|limit| {
            let (zone, key) = self.connections.get(&limit.zone)?;
            Some(ConnectionLimiter {
                zone: zone.clone(),
                key: key.clone(),
                max: limit.max,
            })
        });
        Some(Box::new(Limits {
            requests: requests.collect(),
            request_response: rules.request_response,
            connections: connections.collect(),
            connection_response: rules.connection_response,
        }))
    }
}
