//! Load-balancing strategies. Every pick is lock-free. Servers that are not
//! eligible (failed active health checks, open circuit breaker) are never
//! picked; among eligible servers, passively ejected ones are skipped unless
//! none is available, in which case all eligible ones are considered
//! (better a likely failure than a certain 503).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use switchyard_shared::config::{LoadBalancing, Server};

/// Longest precomputed smooth weighted round-robin cycle; larger weight
/// sums are scaled down proportionally.
const MAX_WRR_CYCLE: u64 = 4096;
/// Ring points per unit of weight for consistent hashing.
const POINTS_PER_WEIGHT: u32 = 100;

/// What a server looks like to a balancer.
pub trait Candidate {
    /// May be picked at all (health checks pass, breaker not open).
    fn eligible(&self) -> bool {
        true
    }
    /// Not passively ejected.
    fn available(&self) -> bool;
    fn in_flight(&self) -> usize;
}

/// The per-backend strategy and its state.
#[derive(Debug)]
pub enum Balancer {
    RoundRobin {
        next: AtomicUsize,
    },
    /// The nginx smooth weighted sequence, precomputed, walked by a cursor.
    Weighted {
        cycle: Vec<u32>,
        next: AtomicUsize,
    },
    /// Power of two random choices by in-flight requests.
    LeastRequests,
    Random,
    /// A ring of (point, server index), sorted by point.
    ConsistentHash {
        ring: Vec<(u64, u32)>,
    },
}

impl Balancer {
    pub fn new(strategy: LoadBalancing, servers: &[Server]) -> Self {
        match strategy {
            LoadBalancing::RoundRobin => Balancer::RoundRobin {
                next: AtomicUsize::new(0),
            },
            LoadBalancing::WeightedRoundRobin => Balancer::Weighted {
                cycle: smooth_wrr_cycle(&weights(servers)),
                next: AtomicUsize::new(0),
            },
            LoadBalancing::LeastRequests => Balancer::LeastRequests,
            LoadBalancing::Random => Balancer::Random,
            LoadBalancing::ConsistentHash => Balancer::ConsistentHash {
                ring: hash_ring(servers),
            },
        }
    }

    /// Index of the chosen server; `None` only when `servers` is empty.
    /// Whether `pick` looks at its key (only consistent hashing does).
    pub fn uses_key(&self) -> bool {
        matches!(self, Balancer::ConsistentHash { .. })
    }

    /// `key` is what consistent hashing hashes (e.g. the client IP).
    pub fn pick<C: Candidate>(&self, servers: &[C], key: &[u8]) -> Option<usize> {
        let n = servers.len();
        if n <= 1 {
            return (n == 1 && servers[0].eligible()).then_some(0);
        }
        let any_available = servers.iter().any(|s| s.eligible() && s.available());
        let ok = |i: usize| servers[i].eligible() && (!any_available || servers[i].available());
        match self {
            Balancer::RoundRobin { next } => {
                let start = next.fetch_add(1, Relaxed);
                let k = (0..n).find(|k| ok((start + k) % n))?;
                skip(next, k);
                Some((start + k) % n)
            }
            Balancer::Weighted { cycle, next } => {
                let len = cycle.len();
                let start = next.fetch_add(1, Relaxed);
                let at = |k: usize| cycle.get((start + k) % len).map_or(0, |&i| i as usize);
                let k = (0..len).find(|&k| at(k) < n && ok(at(k)))?;
                skip(next, k);
                Some(at(k))
            }
            Balancer::Random => {
                let start = rand::random_range(0..n);
                (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
            }
            Balancer::LeastRequests => {
                let a = rand::random_range(0..n);
                let mut b = rand::random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                match (ok(a), ok(b)) {
                    (true, true) => Some(if servers[b].in_flight() < servers[a].in_flight() {
                        b
                    } else {
                        a
                    }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => (0..n).find(|&i| ok(i)),
                }
            }
            Balancer::ConsistentHash { ring } => {
                let h = hash64(key);
                let start = ring.partition_point(|(point, _)| *point < h);
                (0..ring.len())
                    .filter_map(|k| ring.get((start + k) % ring.len()).map(|&(_, i)| i as usize))
                    .find(|&i| i < n && ok(i))
            }
        }
    }
}

/// Moves the cursor past skipped entries, so the server after an
/// unavailable one does not get its share too.
fn skip(next: &AtomicUsize, skipped: usize) {
    if skipped > 0 {
        next.fetch_add(skipped, Relaxed);
    }
}

fn weights(servers: &[Server]) -> Vec<u64> {
    servers.iter().map(|s| u64::from(s.weight.max(1))).collect()
}

/// The smooth weighted round-robin order (nginx): each step every server
/// gains its weight, the richest is picked and pays the total. Weights
/// are reduced by their gcd and scaled so the cycle stays short.
fn smooth_wrr_cycle(weights: &[u64]) -> Vec<u32> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|x| x / g).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_WRR_CYCLE {
        w = w
            .iter()
            .map(|x| (x * MAX_WRR_CYCLE / total).max(1))
            .collect();
    }
    let total: i64 = w.iter().map(|&x| x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &wi) in current.iter_mut().zip(&w) {
            *c += wi as i64;
        }
        let best = (0..current.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        current[best] -= total;
        cycle.push(best as u32);
    }
    cycle
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Ketama-style ring: points derived from each server's address, so a
/// server leaving moves only the keys that were on its points, and every
/// data plane builds the same ring.
fn hash_ring(servers: &[Server]) -> Vec<(u64, u32)> {
    let mut ring = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        for p in 0..POINTS_PER_WEIGHT * s.weight.clamp(1, 100) {
            let point = hash64(format!("{}#{p}", s.address).as_bytes());
            ring.push((point, i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

/// FNV-1a with a splitmix64 finish: stable across processes and builds.
pub fn hash64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests;
