//! A read cache that only its owner writes: a `DashMap` keyed by name that
//! one actor fills ([`ReadCache`], the writable handle, which is not
//! `Clone`) and every other actor and request handler reads through a
//! [`CacheView`], which has lookups and iteration but no insert or remove.
//!
//! The Broker's topic registry ([`crate::broker::TopicsView`]), the
//! ConsumerGroups actor's group registry
//! ([`crate::group_registry::GroupsView`]) and the subscription-group
//! settings ([`crate::subscription_groups::SubscriptionGroupsView`]) are
//! such caches; the types keep "written by its owner only"
//! (docs/architecture.md) true without anyone having to remember it.

use std::sync::Arc;

use dashmap::mapref::multiple::RefMulti;
use dashmap::mapref::one::Ref;
use dashmap::DashMap;

/// The owner's writable handle of a read cache. Not `Clone`: the one actor
/// that holds it is the only writer. It reads like its view (`Deref`).
pub struct ReadCache<V> {
    view: CacheView<V>,
}

/// A read-only view of a [`ReadCache`], for everyone but its owner.
pub struct CacheView<V> {
    map: Arc<DashMap<String, V>>,
}

impl<V> Clone for CacheView<V> {
    fn clone(&self) -> Self {
        CacheView {
            map: self.map.clone(),
        }
    }
}

impl<V> Default for ReadCache<V> {
    fn default() -> Self {
        ReadCache::from_map(DashMap::new())
    }
}

impl<V> FromIterator<(String, V)> for ReadCache<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(entries: I) -> Self {
        ReadCache::from_map(entries.into_iter().collect())
    }
}

impl<V> std::ops::Deref for ReadCache<V> {
    type Target = CacheView<V>;
    fn deref(&self) -> &CacheView<V> {
        &self.view
    }
}

impl<V> ReadCache<V> {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn from_map(map: DashMap<String, V>) -> Self {
        ReadCache {
            view: CacheView { map: Arc::new(map) },
        }
    }

    /// A read-only view for the other actors.
    pub fn view(&self) -> CacheView<V> {
        self.view.clone()
    }

    /// Publishes `value` under `key`; answers the value it replaced.
    pub fn insert(&self, key: String, value: V) -> Option<V> {
        self.view.map.insert(key, value)
    }

    /// Withdraws `key`; answers its entry, if it had one.
    pub fn remove(&self, key: &str) -> Option<(String, V)> {
        self.view.map.remove(key)
    }
}

impl<V> CacheView<V> {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<Ref<'_, String, V>> {
        self.map.get(key)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Every entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = RefMulti<'_, String, V>> {
        self.map.iter()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_sees_what_the_owner_publishes() {
        let cache = ReadCache::new();
        let view = cache.view();
        assert!(view.is_empty());
        assert_eq!(cache.insert("a".to_string(), 1), None);
        assert_eq!(cache.insert("b".to_string(), 2), None);
        assert_eq!(cache.insert("a".to_string(), 3), Some(1));
        assert_eq!(view.len(), 2);
        assert_eq!(view.get("a").map(|v| *v), Some(3));
        assert!(view.clone().contains_key("b"));
        assert_eq!(cache.remove("b"), Some(("b".to_string(), 2)));
        assert!(!view.contains_key("b"));
        let mut keys: Vec<String> = view.iter().map(|e| e.key().clone()).collect();
        keys.sort();
        assert_eq!(keys, ["a"]);
    }
}
