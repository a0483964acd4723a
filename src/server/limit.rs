//! Token buckets for the subscribe form: one per client network and one for everyone, so neither a
//! single address nor a crowd can turn the form into a mail cannon.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

/// Up to `burst` requests at once, then one more every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

impl Rate {
    /// governor's quota for this rate: a bucket of `burst`, one more every `every` (at least one of
    /// each, and a nanosecond, as governor needs).
    fn quota(self) -> Quota {
        Quota::with_period(self.every.max(Duration::from_nanos(1)))
            .expect("a period above zero")
            .allow_burst(NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN))
    }
}

/// Clients remembered before the full buckets are forgotten.
const MAX_CLIENTS: usize = 10_000;

pub struct Limiter {
    clients: DefaultKeyedRateLimiter<IpAddr>,
    all: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl Limiter {
    pub fn new(per_client: Rate, overall: Rate) -> Limiter {
        Limiter {
            clients: DefaultKeyedRateLimiter::keyed(per_client.quota()),
            all: DefaultDirectRateLimiter::direct(overall.quota()),
            clock: DefaultClock::default(),
        }
    }

    /// Counts a request from `ip`; `Err` holds how long the client should wait (`Retry-After`).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.clients.len() >= MAX_CLIENTS {
            self.clients.retain_recent();
        }
        let wait = |n: governor::NotUntil<_>| n.wait_time_from(self.clock.now());
        self.clients.check_key(&network(ip)).map_err(wait)?;
        self.all.check().map_err(wait)
    }
}

/// The unit one client controls: its IPv4 address, or its IPv6 /64 (one host usually has a whole /64).
fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::from(s)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_limit_each_client_and_everyone() {
        let minute = Duration::from_secs(60);
        let l = Limiter::new(Rate { burst: 2, every: minute }, Rate { burst: 4, every: minute });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(l.check(a).is_ok());
        assert!(l.check(a).is_ok());
        let wait = l.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(55) && wait <= minute, "{wait:?}");
        // Another address of the same /64 is the same client.
        assert!(l.check(b).is_ok());
        assert!(l.check("2001:db8::ffff".parse().unwrap()).is_ok());
        assert!(l.check("2001:db8::2".parse().unwrap()).is_err());
        // The overall bucket is empty now.
        assert!(l.check("198.51.100.7".parse().unwrap()).is_err());
    }
}
