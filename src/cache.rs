//! The decision cache: finished response bytes keyed by everything that can
//! change them, so that a hit costs a hash and a lookup (no JSON parsing, no
//! evaluation, no serialization).
//!
//! The key is a SHA-256 over the snapshot's full content digest, the kind of
//! request, the options that change the bytes (`pretty`,
//! `strict-builtin-errors`), the query path and the raw input bytes. A new
//! policy or data revision has a new digest, so every earlier entry is
//! unreachable from the moment the new snapshot is active; a collision would
//! need a SHA-256 collision, which callers cannot craft. Two bodies that
//! differ only in key order are separate entries.
//!
//! Bounds: `max_size_bytes` (entries weigh their key, their bytes and a fixed
//! bookkeeping estimate) and `max_entries`, enforced together by giving every
//! entry a weight of at least `max_size_bytes / max_entries`; an optional TTL.

use std::time::Duration;

use bytes::Bytes;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

/// Bookkeeping bytes per entry beyond key and value (moka's node, the map
/// slot, the `Bytes` header), an estimate used for weighing.
const ENTRY_OVERHEAD: u64 = 160;

/// How the cache is bounded (see `--decision-cache-*`).
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    pub enabled: bool,
    pub max_entries: u64,
    pub max_size_bytes: u64,
    /// `None`: entries live until evicted or their revision is replaced.
    pub ttl: Option<Duration>,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            enabled: true,
            max_entries: 100_000,
            max_size_bytes: 64 << 20,
            ttl: None,
        }
    }
}

/// What a cached request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    /// `POST /v1/data`: the raw body.
    DataPost = 1,
    /// `GET /v1/data?input=`: the raw parameter.
    DataGet = 2,
    /// One item of `POST /v1/batch/data`: common input and item input.
    BatchItem = 3,
}

/// A cache key: a SHA-256 over everything the answer depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    /// `flags` are the request options that change the response bytes;
    /// `parts` are the raw input bytes (length-prefixed, so part boundaries
    /// cannot be shifted).
    pub fn new(
        digest: &[u8; 32],
        kind: RequestKind,
        flags: u8,
        path: &str,
        parts: &[&[u8]],
    ) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(digest);
        hasher.update([kind as u8, flags]);
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Key(hasher.finalize().into())
    }
}

/// The shared cache handle; cheap to clone. Disabled: every lookup misses and
/// nothing is stored.
#[derive(Clone)]
pub struct DecisionCache {
    inner: Option<Cache<Key, Bytes>>,
    config: CacheConfig,
}

impl DecisionCache {
    pub fn new(config: CacheConfig) -> DecisionCache {
        if !config.enabled || config.max_entries == 0 || config.max_size_bytes == 0 {
            return DecisionCache {
                inner: None,
                config,
            };
        }
        let floor = config.max_size_bytes.div_ceil(config.max_entries);
        let mut builder = Cache::builder()
            .max_capacity(config.max_size_bytes)
            .weigher(move |_key: &Key, value: &Bytes| -> u32 {
                let weight = (32 + value.len() as u64 + ENTRY_OVERHEAD).max(floor);
                u32::try_from(weight).unwrap_or(u32::MAX)
            });
        if let Some(ttl) = config.ttl {
            builder = builder.time_to_live(ttl);
        }
        DecisionCache {
            inner: Some(builder.build()),
            config,
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn config(&self) -> CacheConfig {
        self.config
    }

    pub fn get(&self, key: &Key) -> Option<Bytes> {
        self.inner.as_ref()?.get(key)
    }

    /// Stores a copy of `body` in an allocation of exactly its size (response
    /// buffers are allocated with room to spare).
    pub fn insert(&self, key: Key, body: &[u8]) {
        if let Some(cache) = &self.inner {
            cache.insert(key, Bytes::copy_from_slice(body));
        }
    }

    /// Drops every entry (a new snapshot makes them unreachable anyway; this
    /// returns their memory at once).
    pub fn clear(&self) {
        if let Some(cache) = &self.inner {
            cache.invalidate_all();
        }
    }

    /// Entry count and weighted size in bytes, after pending evictions ran.
    pub fn usage(&self) -> (u64, u64) {
        match &self.inner {
            Some(cache) => {
                cache.run_pending_tasks();
                (cache.entry_count(), cache.weighted_size())
            }
            None => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_revision_kind_flags_path_and_input() {
        let d1 = [1u8; 32];
        let d2 = [2u8; 32];
        let base = Key::new(&d1, RequestKind::DataPost, 0, "a/b", &[b"{}"]);
        assert_eq!(
            base,
            Key::new(&d1, RequestKind::DataPost, 0, "a/b", &[b"{}"])
        );
        for other in [
            Key::new(&d2, RequestKind::DataPost, 0, "a/b", &[b"{}"]),
            Key::new(&d1, RequestKind::DataGet, 0, "a/b", &[b"{}"]),
            Key::new(&d1, RequestKind::DataPost, 1, "a/b", &[b"{}"]),
            Key::new(&d1, RequestKind::DataPost, 0, "a/c", &[b"{}"]),
            Key::new(&d1, RequestKind::DataPost, 0, "a/b", &[b"{ }"]),
            Key::new(&d1, RequestKind::DataPost, 0, "a/b", &[b"{", b"}"]),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn entry_bound_holds_for_small_entries() {
        let cache = DecisionCache::new(CacheConfig {
            max_entries: 50,
            max_size_bytes: 1 << 20,
            ..CacheConfig::default()
        });
        for i in 0..1000u32 {
            let key = Key::new(&[0; 32], RequestKind::DataPost, 0, "p", &[&i.to_le_bytes()]);
            cache.insert(key, b"{\"result\":true}\n");
        }
        let (entries, size) = cache.usage();
        assert!(entries <= 50, "{entries} entries");
        assert!(size <= 1 << 20, "{size} bytes");
        assert!(entries > 0);
    }
}
