//! What unknown API keys may cost. A request with a key that is not in the cache of verified
//! keys needs a database lookup; without a bound, anyone could make thousands a second. So:
//! - a key found unknown is remembered, and asking again costs no lookup. (Keys are 256 random
//!   bits, so a key seen unknown cannot become valid later: no new key is ever refused by this.)
//! - each client address may make [`LOOKUPS_PER_SECOND`] lookups a second (bursts of
//!   [`LOOKUP_BURST`]). Beyond that its lookups still happen — a valid key is never refused for
//!   what others sent from the same address (a NAT, a proxy) — but one at a time across all
//!   such addresses, at most [`SLOW_LANE_PER_SECOND`] a second; and a key found unknown there
//!   is answered 429 `RATE_LIMITED`, telling the client to slow down, rather than 401.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use tokio::sync::{Semaphore, SemaphorePermit};

pub const LOOKUPS_PER_SECOND: u32 = 20;
pub const LOOKUP_BURST: u32 = 100;
pub const SLOW_LANE_PER_SECOND: u32 = 50;
/// Unknown keys remembered, and for how long.
const UNKNOWN_KEYS: u64 = 10_000;
const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(600);
/// Client addresses whose lookups are counted; one idle for a minute starts afresh.
const ADDRESSES: u64 = 50_000;
const ADDRESS_IDLE: Duration = Duration::from_secs(60);

pub struct KeyLookups {
    unknown: Cache<Vec<u8>, ()>,
    per_address: Cache<IpAddr, Arc<DefaultDirectRateLimiter>>,
    quota: Quota,
    slow_lane: Semaphore,
    slow_lane_rate: DefaultDirectRateLimiter,
}

/// Permission to look a key up.
pub enum Turn<'a> {
    /// Within the address's budget.
    Free,
    /// Over it: in the slow lane (held until the lookup is done); a key found unknown is a 429.
    Throttled { retry_after_secs: u64, _lane: SemaphorePermit<'a> },
}

impl Default for KeyLookups {
    fn default() -> Self {
        let per_second = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            unknown: Cache::builder()
                .max_capacity(UNKNOWN_KEYS)
                .time_to_live(UNKNOWN_KEY_TTL)
                .build(),
            per_address: Cache::builder()
                .max_capacity(ADDRESSES)
                .time_to_idle(ADDRESS_IDLE)
                .build(),
            quota: Quota::per_second(per_second(LOOKUPS_PER_SECOND))
                .allow_burst(per_second(LOOKUP_BURST)),
            slow_lane: Semaphore::new(1),
            slow_lane_rate: RateLimiter::direct(Quota::per_second(per_second(
                SLOW_LANE_PER_SECOND,
            ))),
        }
    }
}

impl KeyLookups {
    pub fn is_known_unknown(&self, key_hash: &[u8]) -> bool {
        self.unknown.contains_key(key_hash)
    }

    pub fn remember_unknown(&self, key_hash: &[u8]) {
        self.unknown.insert(key_hash.to_vec(), ());
    }

    /// Waits for the client's turn to look a key up (at once, within its budget).
    pub async fn turn(&self, client: Option<IpAddr>) -> Turn<'_> {
        let address = client.map_or(IpAddr::from([0, 0, 0, 0]), per_client);
        let limiter =
            self.per_address.get_with(address, || Arc::new(RateLimiter::direct(self.quota)));
        let Err(not_until) = limiter.check() else { return Turn::Free };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let retry_after_secs = super::limits::retry_after_secs(wait);
        // Fair: the semaphore queues in order, and the lane's pace is kept by one holder at a time.
        let lane = self.slow_lane.acquire().await.expect("the slow lane is never closed");
        self.slow_lane_rate.until_ready().await;
        Turn::Throttled { retry_after_secs, _lane: lane }
    }
}

/// One client: an IPv4 address, or an IPv6 /64 (a single subscriber usually has a whole /64).
pub fn per_client(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_a_mapped_one_its_ipv4_address() {
        let client = |s: &str| per_client(s.parse().unwrap());
        assert_eq!(client("2001:db8:1:2:aaaa::1"), client("2001:db8:1:2:bbbb::2"));
        assert_ne!(client("2001:db8:1:2::1"), client("2001:db8:1:3::1"));
        assert_eq!(client("::ffff:192.0.2.7"), client("192.0.2.7"));
    }

    #[tokio::test]
    async fn past_its_burst_an_address_is_throttled_and_another_is_not() {
        let lookups = KeyLookups::default();
        let attacker = Some("192.0.2.1".parse().unwrap());
        for _ in 0..LOOKUP_BURST {
            assert!(matches!(lookups.turn(attacker).await, Turn::Free));
        }
        match lookups.turn(attacker).await {
            Turn::Throttled { retry_after_secs, .. } => assert!(retry_after_secs >= 1),
            Turn::Free => panic!("the burst is spent"),
        }
        assert!(matches!(lookups.turn(Some("192.0.2.2".parse().unwrap())).await, Turn::Free));
    }
}
