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

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key([u8; 32]);

/// A key is hashed as its first 8 bytes, a `u64` that the table's hasher
/// (foldhash, randomly seeded per cache) mixes once: hashing all 32 bytes
/// again with SipHash, moka's default, cost ~270 instructions a lookup. The
/// seed matters: the digest's input (the snapshot's digest, the path, the
/// body) is known to a client, who could otherwise grind bodies whose keys
/// share the table's buckets or the frequency sketch's counters.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

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
    inner: Option<Cache<Key, Bytes, foldhash::fast::RandomState>>,
    config: CacheConfig,
    shared: Arc<Mutex<HashSet<&'static [u8]>>>,
}

/// Bodies up to this size are shared between entries (see [`DecisionCache::insert`]).
const SHARED_BODY_MAX: usize = 128;
/// At most this many distinct bodies are ever shared (at most 128 KiB).
const SHARED_BODIES: usize = 1024;

impl DecisionCache {
    pub fn new(config: CacheConfig) -> DecisionCache {
        if !config.enabled || config.max_entries == 0 || config.max_size_bytes == 0 {
            return DecisionCache {
                inner: None,
                config,
                shared: Arc::default(),
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
            inner: Some(builder.build_with_hasher(foldhash::fast::RandomState::default())),
            config,
            shared: Arc::default(),
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

    /// Stores `body` in an allocation of exactly its size (response buffers
    /// are allocated with room to spare), or shares one with other entries.
    ///
    /// Most decisions answer one of a handful of small bodies
    /// (`{"result":true}`, the same filter for every request of one user).
    /// Small bodies are interned as `'static` bytes, shared by every entry
    /// that holds them: with 100k entries that saved ~5 MiB of RSS (the body's
    /// allocation and the shared header `Bytes` adds on its first clone),
    /// and since cloning static `Bytes` touches no reference count, hits on
    /// the same body from several threads do not contend. The interned set
    /// is bounded (`SHARED_BODIES` bodies of at most `SHARED_BODY_MAX` bytes,
    /// 128 KiB per cache, and the daemon has one; kept across cache clears);
    /// once it is full, new bodies are copied per entry as before. Entries
    /// still weigh their full body size.
    pub fn insert(&self, key: Key, body: &[u8]) {
        if let Some(cache) = &self.inner {
            cache.insert(key, self.intern(body));
        }
    }

    fn intern(&self, body: &[u8]) -> Bytes {
        if body.len() > SHARED_BODY_MAX {
            return Bytes::copy_from_slice(body);
        }
        let Ok(mut shared) = self.shared.lock() else {
            return Bytes::copy_from_slice(body);
        };
        if let Some(found) = shared.get(body) {
            return Bytes::from_static(found);
        }
        if shared.len() >= SHARED_BODIES {
            return Bytes::copy_from_slice(body);
        }
        let interned: &'static [u8] = Box::leak(body.to_vec().into_boxed_slice());
        shared.insert(interned);
        Bytes::from_static(interned)
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

    #[test]
    fn equal_small_bodies_share_one_allocation() {
        let cache = DecisionCache::new(CacheConfig::default());
        let key = |i: u32| Key::new(&[0; 32], RequestKind::DataPost, 0, "p", &[&i.to_le_bytes()]);
        let big = vec![b'x'; SHARED_BODY_MAX + 1];
        cache.insert(key(0), b"{\"result\":true}\n");
        cache.insert(key(1), b"{\"result\":false}\n");
        cache.insert(key(2), b"{\"result\":true}\n");
        cache.insert(key(3), &big);
        cache.insert(key(4), &big);
        let (t0, f1, t2) = (cache.get(&key(0)), cache.get(&key(1)), cache.get(&key(2)));
        let (t0, f1, t2) = (t0.unwrap(), f1.unwrap(), t2.unwrap());
        assert_eq!(&t0[..], b"{\"result\":true}\n");
        assert_eq!(&f1[..], b"{\"result\":false}\n");
        assert_eq!(t0.as_ptr(), t2.as_ptr(), "equal bodies share");
        assert_ne!(t0.as_ptr(), f1.as_ptr());
        let (b3, b4) = (cache.get(&key(3)).unwrap(), cache.get(&key(4)).unwrap());
        assert_eq!(&b3[..], &big[..]);
        assert_ne!(b3.as_ptr(), b4.as_ptr(), "large bodies are copied");
        // The interned set is bounded: past it, bodies are copied.
        for i in 0..SHARED_BODIES as u32 {
            cache.insert(key(100 + i), format!("{{\"result\":{i}}}\n").as_bytes());
        }
        let late = b"{\"result\":\"late\"}\n";
        cache.insert(key(5), late);
        cache.insert(key(6), late);
        let (l5, l6) = (cache.get(&key(5)).unwrap(), cache.get(&key(6)).unwrap());
        assert_eq!(&l5[..], late);
        assert_ne!(l5.as_ptr(), l6.as_ptr());
        assert!(cache.shared.lock().unwrap().len() <= SHARED_BODIES);
    }
}
