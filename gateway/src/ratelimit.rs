//! Token-bucket rate limiting: one global bucket and one per client.
//!
//! Each bucket is kept as GCRA (the generic cell rate algorithm), which is a
//! token bucket expressed as a single number: the "theoretical arrival time"
//! (TAT) at which the bucket would be full again. A request is allowed when
//! `max(TAT, now) + interval - now <= burst * interval`, and then moves TAT by
//! one interval. That is exactly a bucket of `burst` tokens refilled at `rps`,
//! but the state is one `u64`, so the global bucket is a lock-free CAS loop on
//! one atomic with no packing of tokens and time.
//!
//! A bucket whose TAT is in the past is full, which is the same as having no
//! entry at all: per-client entries can be evicted when idle without changing
//! any decision. The per-client table is sharded behind small mutexes and
//! bounded (`CLIENTS_MAX`); when a shard is full of active clients, a new
//! client is let through (fail-open) and counted, because client ids are chosen
//! by the client and an attacker could otherwise lock out real users; the
//! global bucket still bounds the total.
//!
//! Time is passed in as nanoseconds since the limiter's origin so the
//! decision itself is pure (benchmarks, tests); [`RateLimiter::now_ns`] reads
//! tokio's clock, which tests pause and advance.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::config::{RateLimitConfig, TrustedProxies};

/// Most per-client buckets held at once (over all shards), per key kind.
pub const CLIENTS_MAX: usize = 1 << 20;
const SHARDS: usize = 64;
/// A full shard is swept for idle buckets at most this often.
const SWEEP_INTERVAL_NS: u64 = 10_000_000;

/// How long until the request would be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter {
    pub wait_ns: u64,
}

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header, at least 1.
    pub fn secs(self) -> u64 {
        self.wait_ns.div_ceil(1_000_000_000).max(1)
    }
}

/// The parameters of one bucket.
#[derive(Clone, Copy, Debug)]
struct Gcra {
    /// Time one token takes to refill.
    interval_ns: u64,
    /// `burst * interval_ns`: how far ahead of now TAT may run.
    tolerance_ns: u64,
}

impl Gcra {
    fn new(rps: u64, burst: u64) -> Option<Gcra> {
        if rps == 0 {
            return None;
        }
        let interval_ns = (1_000_000_000 / rps).max(1);
        Some(Gcra {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst.max(1)),
        })
    }

    /// Decides against TAT `tat`; returns the new TAT if allowed.
    #[inline]
    fn decide(self, tat: u64, now: u64) -> Result<u64, RetryAfter> {
        let new_tat = tat.max(now) + self.interval_ns;
        let ahead = new_tat - now;
        if ahead > self.tolerance_ns {
            return Err(RetryAfter {
                wait_ns: ahead - self.tolerance_ns,
            });
        }
        Ok(new_tat)
    }
}

/// One lock-free bucket shared by every request.
pub struct GlobalBucket {
    gcra: Gcra,
    tat: AtomicU64,
}

impl GlobalBucket {
    #[inline]
    pub fn check(&self, now: u64) -> Result<(), RetryAfter> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = self.gcra.decide(tat, now)?;
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

struct Shard<K> {
    tats: HashMap<K, u64, RandomState>,
    swept_at: u64,
}

/// Buckets per client key, bounded.
pub struct KeyedBuckets<K> {
    gcra: Gcra,
    hasher: RandomState,
    shards: Box<[Mutex<Shard<K>>]>,
    shard_cap: usize,
    /// Clients let through because their shard was full of active clients.
    pub overflowed: AtomicU64,
}

impl<K: Hash + Eq> KeyedBuckets<K> {
    fn new(gcra: Gcra, capacity: usize) -> Self {
        let hasher = RandomState::new();
        KeyedBuckets {
            gcra,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tats: HashMap::with_hasher(hasher.clone()),
                        swept_at: 0,
                    })
                })
                .collect(),
            hasher,
            shard_cap: (capacity / SHARDS).max(1),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Decides for `key` (borrowed: a user id is looked up as `&str`, and
    /// copied only when it gets a bucket).
    #[inline]
    pub fn check<Q>(&self, key: &Q, now: u64) -> Result<(), RetryAfter>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = self.shards[index].lock();
        if let Some(tat) = shard.tats.get_mut(key) {
            *tat = self.gcra.decide(*tat, now)?;
            return Ok(());
        }
        // A new client starts with a full bucket: decide against TAT = now.
        let new_tat = self.gcra.decide(now, now)?;
        if shard.tats.len() >= self.shard_cap {
            if now.saturating_sub(shard.swept_at) >= SWEEP_INTERVAL_NS {
                shard.swept_at = now;
                // Buckets that are full again carry no information.
                shard.tats.retain(|_, tat| *tat > now);
            }
            if shard.tats.len() >= self.shard_cap {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        shard.tats.insert(key.to_owned(), new_tat);
        Ok(())
    }

    /// Buckets held now (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().tats.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All of the gateway's limiters. A limiter configured with rate 0 is absent
/// and costs one branch.
pub struct RateLimiter {
    origin: tokio::time::Instant,
    pub global: Option<GlobalBucket>,
    /// Purchases per user id (its bytes; bounded like every keyed table).
    pub users: Option<KeyedBuckets<String>>,
    /// Other public routes per client address.
    pub ips: Option<KeyedBuckets<IpAddr>>,
    /// Purchases per client address, IPv6 by its /64 (`per_ip_rps`).
    pub purchase_ips: Option<KeyedBuckets<IpAddr>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> RateLimiter {
        Self::with_capacity(config, CLIENTS_MAX)
    }

    /// As `new`, with at most `clients_max` buckets per key kind.
    pub fn with_capacity(config: &RateLimitConfig, clients_max: usize) -> RateLimiter {
        let per_client = Gcra::new(config.per_client_rps, config.per_client_burst);
        RateLimiter {
            origin: tokio::time::Instant::now(),
            global: Gcra::new(config.global_rps, config.global_burst).map(|gcra| GlobalBucket {
                gcra,
                tat: AtomicU64::new(0),
            }),
            users: per_client.map(|g| KeyedBuckets::new(g, clients_max)),
            ips: per_client.map(|g| KeyedBuckets::new(g, clients_max)),
            purchase_ips: Gcra::new(config.per_ip_rps, config.per_ip_burst)
                .map(|g| KeyedBuckets::new(g, clients_max)),
        }
    }

    /// Nanoseconds since the limiter was made, on tokio's (pausable) clock.
    /// Offset by one second so a fresh bucket's TAT of 0 is in the past.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX) + 1_000_000_000
    }

    #[inline]
    pub fn check_global(&self, now: u64) -> Result<(), RetryAfter> {
        match &self.global {
            Some(bucket) => bucket.check(now),
            None => Ok(()),
        }
    }

    #[inline]
    pub fn check_user(&self, user_id: &str, now: u64) -> Result<(), RetryAfter> {
        match &self.users {
            Some(buckets) => buckets.check(user_id, now),
            None => Ok(()),
        }
    }

    #[inline]
    pub fn check_ip(&self, ip: IpAddr, now: u64) -> Result<(), RetryAfter> {
        match &self.ips {
            Some(buckets) => buckets.check(&ip, now),
            None => Ok(()),
        }
    }

    /// A purchase from client address `ip`, counted by [`ip_key`].
    #[inline]
    pub fn check_purchase_ip(&self, ip: IpAddr, now: u64) -> Result<(), RetryAfter> {
        match &self.purchase_ips {
            Some(buckets) => buckets.check(&ip_key(ip), now),
            None => Ok(()),
        }
    }

    /// Whether any limiter is on.
    pub fn enabled(&self) -> bool {
        self.global.is_some() || self.users.is_some() || self.purchase_ips.is_some()
    }
}

/// The key an address is limited by: an IPv4 address (an IPv4-mapped IPv6
/// one too) as it is, an IPv6 address by its /64, the smallest block a
/// site is given: one host can hold 2^64 addresses of its /64.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(net))
            }
        },
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy
/// and says otherwise in `X-Forwarded-For`. Then the rightmost address of
/// the header that is not itself a trusted proxy (each proxy appends the
/// address it heard from, so only the entries our proxies wrote are true;
/// the leftmost ones are whatever the client sent). An entry that does
/// not parse stops the walk at the last trusted hop.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&[u8]>, trusted: &TrustedProxies) -> IpAddr {
    let (Some(header), true) = (forwarded_for, !trusted.nets.is_empty()) else {
        return peer;
    };
    if !trusted.contains(peer) {
        return peer;
    }
    let Ok(header) = std::str::from_utf8(header) else {
        return peer;
    };
    let mut client = peer;
    for entry in header.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            return client;
        };
        client = ip;
        if !trusted.contains(ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn config(global: (u64, u64), client: (u64, u64)) -> RateLimitConfig {
        RateLimitConfig {
            global_rps: global.0,
            global_burst: global.1,
            per_client_rps: client.0,
            per_client_burst: client.1,
            per_ip_rps: 0,
            per_ip_burst: 0,
        }
    }

    #[test]
    fn burst_then_refill_at_rate() {
        let rl = RateLimiter::new(&config((10, 5), (0, 0)));
        let t0 = 10 * SEC;
        for _ in 0..5 {
            assert!(rl.check_global(t0).is_ok());
        }
        let denied = rl.check_global(t0).unwrap_err();
        assert_eq!(denied.wait_ns, SEC / 10);
        assert_eq!(denied.secs(), 1);
        // One token per 100 ms.
        assert!(rl.check_global(t0 + SEC / 10).is_ok());
        assert!(rl.check_global(t0 + SEC / 10).is_err());
        // A long idle period refills only up to the burst.
        let t1 = t0 + 100 * SEC;
        for _ in 0..5 {
            assert!(rl.check_global(t1).is_ok());
        }
        assert!(rl.check_global(t1).is_err());
    }

    #[test]
    fn off_when_zero() {
        let rl = RateLimiter::new(&config((0, 0), (0, 0)));
        for _ in 0..10_000 {
            assert!(rl.check_global(SEC).is_ok());
            assert!(rl.check_user("1", SEC).is_ok());
        }
        assert!(!rl.enabled());
    }

    #[test]
    fn clients_are_independent() {
        let rl = RateLimiter::new(&config((0, 0), (1, 2)));
        assert!(rl.check_user("1", SEC).is_ok());
        assert!(rl.check_user("1", SEC).is_ok());
        let denied = rl.check_user("1", SEC).unwrap_err();
        assert_eq!(denied.secs(), 1);
        assert!(rl.check_user("2", SEC).is_ok());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(rl.check_ip(ip, SEC).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let rl = RateLimiter::new(&config((0, 0), (1, 3)));
        for _ in 0..3 {
            rl.check_user("7", SEC).unwrap();
        }
        // A rate of 1/s with 3 spent: next token in 1 s.
        assert_eq!(rl.check_user("7", SEC).unwrap_err().secs(), 1);
        let rl = RateLimiter::new(&config((0, 0), (1, 1)));
        rl.check_user("7", SEC).unwrap();
        assert_eq!(rl.check_user("7", SEC + 1).unwrap_err().wait_ns, SEC - 1);
        assert_eq!(RetryAfter { wait_ns: SEC + 1 }.secs(), 2);
        assert_eq!(RetryAfter { wait_ns: 0 }.secs(), 1);
    }

    #[test]
    fn table_is_bounded_and_idle_buckets_are_evicted() {
        let rl = RateLimiter::with_capacity(&config((0, 0), (1, 1)), SHARDS * 4);
        let users = rl.users.as_ref().unwrap();
        for user in 0..100_000u64 {
            rl.check_user(&user.to_string(), SEC).unwrap();
        }
        assert!(users.len() <= SHARDS * 4, "{} buckets", users.len());
        assert!(users.overflowed.load(Ordering::Relaxed) > 0);
        // Two seconds later every bucket is full again: new clients evict them.
        for user in 1_000_000..1_000_100u64 {
            rl.check_user(&user.to_string(), 3 * SEC).unwrap();
        }
        assert!(users.len() <= SHARDS * 4);
        // A client whose bucket was evicted is treated as new (full): allowed.
        assert!(rl.check_user("5", 3 * SEC).is_ok());
    }

    /// Purchases per address: an IPv6 /64 is one client, another /64 is
    /// another; IPv4 addresses are each their own.
    #[test]
    fn purchases_per_ip_count_ipv6_by_its_64() {
        let mut c = config((0, 0), (0, 0));
        (c.per_ip_rps, c.per_ip_burst) = (1, 2);
        let rl = RateLimiter::new(&c);
        assert!(rl.enabled());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(rl.check_purchase_ip(a, SEC).is_ok());
        assert!(rl.check_purchase_ip(b, SEC).is_ok());
        assert!(
            rl.check_purchase_ip(a, SEC).is_err(),
            "same /64, burst spent"
        );
        assert!(rl.check_purchase_ip(other, SEC).is_ok());
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(rl.check_purchase_ip(v4, SEC).is_ok());
        assert!(rl.check_purchase_ip(mapped, SEC).is_ok());
        assert!(
            rl.check_purchase_ip(v4, SEC).is_err(),
            "mapped is the same address"
        );
        assert!(rl
            .check_purchase_ip("192.0.2.2".parse().unwrap(), SEC)
            .is_ok());
        // Bounded like every keyed table.
        let rl = RateLimiter::with_capacity(&c, SHARDS * 2);
        for n in 0..10_000u32 {
            let ip = IpAddr::V6(Ipv6Addr::from(u128::from(n) << 64));
            rl.check_purchase_ip(ip, SEC).unwrap();
        }
        assert!(rl.purchase_ips.as_ref().unwrap().len() <= SHARDS * 2);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, fd00::1").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let check = |peer: &str, xff: Option<&str>, want: &str| {
            let got = client_ip(ip(peer), xff.map(str::as_bytes), &trusted);
            assert_eq!(got, ip(want), "peer {peer}, X-Forwarded-For {xff:?}");
        };
        check("203.0.113.9", Some("198.51.100.1"), "203.0.113.9");
        check("10.1.1.1", None, "10.1.1.1");
        check("10.1.1.1", Some("198.51.100.1"), "198.51.100.1");
        // The client's own claims sit left of what our proxies wrote.
        check(
            "10.1.1.1",
            Some("1.2.3.4, 198.51.100.1, 10.2.2.2"),
            "198.51.100.1",
        );
        check("fd00::1", Some("2001:db8::7"), "2001:db8::7");
        check("10.1.1.1", Some("10.3.3.3"), "10.3.3.3");
        check("10.1.1.1", Some("garbage, 10.3.3.3"), "10.3.3.3");
        check("10.1.1.1", Some("198.51.100.1, junk"), "10.1.1.1");
        let none = TrustedProxies::default();
        assert_eq!(
            client_ip(ip("10.1.1.1"), Some(b"1.2.3.4"), &none),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn concurrent_global_never_exceeds_burst() {
        let rl = std::sync::Arc::new(RateLimiter::new(&config((1, 1000), (0, 0))));
        let allowed = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (rl, allowed) = (rl.clone(), allowed.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if rl.check_global(SEC).is_ok() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(allowed.load(Ordering::Relaxed), 1000);
    }
}
