//! Named objects of a session: prepared statements and portals, keyed by the
//! name the client gave them.
//!
//! The unnamed object (`""`) is what nearly every driver uses for portals (libpq,
//! JDBC, psycopg, tokio-postgres) and what simple drivers use for statements, and
//! it is replaced on every Bind: it lives in its own slot, so the per-round-trip
//! path hashes and compares no string. Named objects live in a map with a fast,
//! randomly seeded hasher (names come from the session's own client, so the worst
//! a hostile name can slow down is its own connection).
//!
//! Invariant: a name is in at most one place (the slot holds only `""`).

use std::collections::HashMap;

#[derive(Debug)]
pub(crate) struct Named<T> {
    unnamed: Option<T>,
    named: HashMap<String, T, foldhash::fast::RandomState>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Self {
            unnamed: None,
            named: HashMap::default(),
        }
    }
}

impl<T> Named<T> {
    pub(crate) fn get(&self, name: &str) -> Option<&T> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.named.get(name)
        }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Store `value` under `name`, replacing what was there.
    pub(crate) fn insert(&mut self, name: String, value: T) {
        if name.is_empty() {
            self.unnamed = Some(value);
        } else {
            self.named.insert(name, value);
        }
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<T> {
        if name.is_empty() {
            self.unnamed.take()
        } else {
            self.named.remove(name)
        }
    }

    pub(crate) fn clear(&mut self) {
        self.unnamed = None;
        self.named.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Named;

    #[test]
    fn unnamed_and_named_are_separate_and_replaceable() {
        let mut n = Named::default();
        assert!(n.get("").is_none());
        n.insert(String::new(), 1);
        n.insert("p1".into(), 2);
        assert_eq!(n.get(""), Some(&1));
        assert_eq!(n.get("p1"), Some(&2));
        assert!(!n.contains("p2"));
        n.insert(String::new(), 3);
        n.insert("p1".into(), 4);
        assert_eq!((n.get(""), n.get("p1")), (Some(&3), Some(&4)));
        assert_eq!(n.remove(""), Some(3));
        assert_eq!(n.remove(""), None);
        assert_eq!(n.get("p1"), Some(&4));
        n.insert(String::new(), 5);
        n.clear();
        assert!(!n.contains("") && !n.contains("p1"));
    }
}
