//! Token buckets for the subscribe form: one per client network and one for everyone, so neither a
//! single address nor a crowd can turn the form into a mail cannon.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Up to `burst` requests at once, then one more every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket { tokens: rate.burst as f64, at: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / rate.every.as_secs_f64();
        self.tokens = (self.tokens + gained).min(rate.burst as f64);
        self.at = now;
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(rate.every.mul_f64(1.0 - self.tokens))
        }
    }
}

/// Clients remembered before the full buckets are forgotten.
const MAX_CLIENTS: usize = 10_000;

pub struct Limiter {
    per_client: Rate,
    overall: Rate,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
    all: Mutex<Bucket>,
}

impl Limiter {
    pub fn new(per_client: Rate, overall: Rate) -> Limiter {
        Limiter {
            per_client,
            overall,
            clients: Mutex::new(HashMap::new()),
            all: Mutex::new(Bucket::full(overall, Instant::now())),
        }
    }

    /// Counts a request from `ip`; `Err` holds how long the client should wait (`Retry-After`).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        {
            let mut clients = self.clients.lock().expect("limiter lock");
            if clients.len() >= MAX_CLIENTS {
                let rate = self.per_client;
                clients.retain(|_, b| {
                    b.refill(rate, now);
                    b.tokens < rate.burst as f64
                });
            }
            clients
                .entry(network(ip))
                .or_insert_with(|| Bucket::full(self.per_client, now))
                .take(self.per_client, now)?;
        }
        self.all.lock().expect("limiter lock").take(self.overall, now)
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
