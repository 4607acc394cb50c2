//! The addresses each `server NAME resolve` name has right now: written by the follower in
//! `resolve`, read when a snapshot is built (each address becomes a server of its own). Plain
//! data behind a lock that only snapshot building and the follower take, never a request.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// A followed name: its host as written and the port of its `server` line.
pub type NameKey = (String, u16);

/// The current answer for each followed name.
#[derive(Debug, Default)]
pub struct Answers {
    by_name: RwLock<HashMap<NameKey, Arc<[SocketAddr]>>>,
}

impl Answers {
    /// The addresses `host` resolved to, with `port`, sorted; empty when it has none or was
    /// never looked up.
    pub fn get(&self, host: &str, port: u16) -> Arc<[SocketAddr]> {
        let by_name = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        by_name
            .get(&(host.to_string(), port))
            .cloned()
            .unwrap_or_else(|| Arc::from([]))
    }

    /// Whether `host` was looked up yet (an empty answer counts).
    pub fn knows(&self, host: &str, port: u16) -> bool {
        let by_name = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        by_name.contains_key(&(host.to_string(), port))
    }

    /// Records the answer for `host`; true when it differs from the one before. Order does not
    /// count: DNS servers rotate their answers, which changes no server.
    pub fn set(&self, host: &str, port: u16, mut addrs: Vec<SocketAddr>) -> bool {
        addrs.sort_unstable();
        addrs.dedup();
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let key = (host.to_string(), port);
        if by_name.get(&key).is_some_and(|known| **known == *addrs) {
            return false;
        }
        by_name.insert(key, addrs.into());
        true
    }

    /// Forgets the names a config no longer follows.
    pub fn retain(&self, followed: &HashSet<NameKey>) {
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        by_name.retain(|key, _| followed.contains(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| a.parse().expect("test address"))
            .collect()
    }

    #[test]
    fn an_answer_changes_only_when_its_set_of_addresses_does() {
        let answers = Answers::default();
        assert!(!answers.knows("app", 80));
        assert!(answers.get("app", 80).is_empty());
        assert!(answers.set("app", 80, addrs(&["10.0.0.2:80", "10.0.0.1:80"])));
        assert!(answers.knows("app", 80));
        assert!(
            !answers.set(
                "app",
                80,
                addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"])
            ),
            "rotated and repeated: the same servers"
        );
        assert_eq!(
            *answers.get("app", 80),
            addrs(&["10.0.0.1:80", "10.0.0.2:80"])
        );
        assert!(answers.set("app", 80, addrs(&["10.0.0.1:80"])));
        assert!(
            answers.get("app", 81).is_empty(),
            "another port is another name"
        );
        answers.retain(&HashSet::new());
        assert!(!answers.knows("app", 80));
    }
}
