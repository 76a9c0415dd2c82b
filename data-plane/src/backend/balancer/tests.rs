use super::*;
use std::collections::HashMap;

struct Fake {
    up: bool,
    in_flight: usize,
}

/// A server that is never eligible (unhealthy or breaker open).
struct Out;

impl Candidate for Out {
    fn eligible(&self) -> bool {
        false
    }
    fn available(&self) -> bool {
        true
    }
    fn in_flight(&self) -> usize {
        0
    }
}

/// Either kind, to mix them in one slice.
enum Mixed {
    In(Fake),
    Out(Out),
}

impl Candidate for Mixed {
    fn eligible(&self) -> bool {
        match self {
            Mixed::In(f) => f.eligible(),
            Mixed::Out(o) => o.eligible(),
        }
    }
    fn available(&self) -> bool {
        match self {
            Mixed::In(f) => f.available(),
            Mixed::Out(o) => o.available(),
        }
    }
    fn in_flight(&self) -> usize {
        0
    }
}

impl Candidate for Fake {
    fn available(&self) -> bool {
        self.up
    }
    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

fn up(n: usize) -> Vec<Fake> {
    (0..n)
        .map(|_| Fake {
            up: true,
            in_flight: 0,
        })
        .collect()
}

fn servers(weights: &[u32]) -> Vec<Server> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Server {
            address: format!("10.0.0.{i}:80"),
            weight,
        })
        .collect()
}

fn counts(b: &Balancer, fakes: &[Fake], picks: usize) -> Vec<usize> {
    let mut c = vec![0; fakes.len()];
    for i in 0..picks {
        let key = i.to_string();
        if let Some(s) = b.pick(fakes, key.as_bytes()) {
            c[s] += 1;
        }
    }
    c
}

#[test]
fn round_robin_skips_unavailable_servers() {
    let b = Balancer::new(LoadBalancing::RoundRobin, &servers(&[1, 1, 1]));
    let mut fakes = up(3);
    fakes[1].up = false;
    assert_eq!(counts(&b, &fakes, 10), vec![5, 0, 5]);
    // Nobody available: everyone is a candidate again.
    for f in &mut fakes {
        f.up = false;
    }
    assert_eq!(counts(&b, &fakes, 9), vec![3, 3, 3]);
}

#[test]
fn smooth_weighted_round_robin_interleaves_like_nginx() {
    assert_eq!(smooth_wrr_cycle(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    // gcd reduction keeps the cycle short.
    assert_eq!(smooth_wrr_cycle(&[200, 100]), vec![0, 1, 0]);
    // Huge sums are scaled, never empty, every server present.
    let big = smooth_wrr_cycle(&[10_000, 1, 9_999]);
    assert!(big.len() as u64 <= MAX_WRR_CYCLE + 3);
    assert!(big.contains(&1));

    let b = Balancer::new(LoadBalancing::WeightedRoundRobin, &servers(&[3, 1]));
    assert_eq!(counts(&b, &up(2), 400), vec![300, 100]);
    let mut fakes = up(2);
    fakes[0].up = false;
    assert_eq!(counts(&b, &fakes, 40), vec![0, 40]);
}

#[test]
fn least_requests_prefers_the_less_busy_of_two() {
    let b = Balancer::new(LoadBalancing::LeastRequests, &servers(&[1, 1]));
    let mut fakes = up(2);
    fakes[0].in_flight = 10;
    assert_eq!(counts(&b, &fakes, 100), vec![0, 100]);

    // With many servers, a busy one is rarely chosen.
    let b = Balancer::new(LoadBalancing::LeastRequests, &servers(&[1; 4]));
    let mut fakes = up(4);
    fakes[2].in_flight = 50;
    let c = counts(&b, &fakes, 4000);
    assert_eq!(c[2], 0, "{c:?}");
    assert!(
        c.iter().enumerate().all(|(i, &n)| i == 2 || n > 900),
        "{c:?}"
    );
}

#[test]
fn random_spreads_within_tolerance() {
    let b = Balancer::new(LoadBalancing::Random, &servers(&[1, 1, 1, 1]));
    let c = counts(&b, &up(4), 8000);
    // Expected 2000 each; 6 sigma is about 230.
    assert!(c.iter().all(|&n| (1700..=2300).contains(&n)), "{c:?}");
}

#[test]
fn consistent_hash_is_stable_and_moves_few_keys_when_a_server_leaves() {
    let all = servers(&[1, 1, 1, 1]);
    let b = Balancer::new(LoadBalancing::ConsistentHash, &all);
    let fakes = up(4);
    let keys: Vec<String> = (0..4000)
        .map(|i| format!("192.168.{}.{}", i / 256, i % 256))
        .collect();
    let before: HashMap<&str, usize> = keys
        .iter()
        .filter_map(|k| b.pick(&fakes, k.as_bytes()).map(|s| (k.as_str(), s)))
        .collect();
    // Same key, same server, every time.
    for k in keys.iter().take(100) {
        assert_eq!(
            b.pick(&fakes, k.as_bytes()),
            before.get(k.as_str()).copied()
        );
    }
    let mut share = [0usize; 4];
    for s in before.values() {
        share[*s] += 1;
    }
    assert!(
        share.iter().all(|&n| (600..=1400).contains(&n)),
        "{share:?}"
    );

    // Server 3 ejected: only its keys move.
    let mut without = up(4);
    without[3].up = false;
    let mut moved = 0;
    for k in &keys {
        let old = before[k.as_str()];
        let new = b.pick(&without, k.as_bytes());
        if old == 3 {
            assert_ne!(new, Some(3));
            moved += 1;
        } else {
            assert_eq!(new, Some(old), "key {k} moved off a healthy server");
        }
    }
    assert_eq!(moved, share[3]);

    // Removed from the config (a new ring): same property.
    let three = Balancer::new(LoadBalancing::ConsistentHash, &all[..3]);
    let kept = keys
        .iter()
        .filter(|k| before[k.as_str()] != 3)
        .filter(|k| three.pick(&up(3), k.as_bytes()) == Some(before[k.as_str()]))
        .count();
    assert_eq!(kept, keys.len() - share[3]);
}

#[test]
fn a_single_or_no_server_needs_no_strategy() {
    for lb in [
        LoadBalancing::RoundRobin,
        LoadBalancing::WeightedRoundRobin,
        LoadBalancing::LeastRequests,
        LoadBalancing::Random,
        LoadBalancing::ConsistentHash,
    ] {
        let b = Balancer::new(lb, &servers(&[1]));
        assert_eq!(b.pick(&up(1), b"k"), Some(0));
        assert_eq!(b.pick(&up(0), b"k"), None);
    }
}

#[test]
fn ineligible_servers_are_never_picked_even_when_nothing_else_is_left() {
    for lb in [
        LoadBalancing::RoundRobin,
        LoadBalancing::WeightedRoundRobin,
        LoadBalancing::LeastRequests,
        LoadBalancing::Random,
        LoadBalancing::ConsistentHash,
    ] {
        let b = Balancer::new(lb, &servers(&[1, 1, 1]));
        // One ineligible, one ejected, one fine: only the fine one.
        let mixed = vec![
            Mixed::Out(Out),
            Mixed::In(Fake {
                up: false,
                in_flight: 0,
            }),
            Mixed::In(Fake {
                up: true,
                in_flight: 0,
            }),
        ];
        for i in 0..50 {
            assert_eq!(b.pick(&mixed, i.to_string().as_bytes()), Some(2), "{lb:?}");
        }
        // Only an ejected one besides the ineligible: panic routing to it.
        let mixed = vec![
            Mixed::Out(Out),
            Mixed::In(Fake {
                up: false,
                in_flight: 0,
            }),
        ];
        let b = Balancer::new(lb, &servers(&[1, 1]));
        for i in 0..20 {
            assert_eq!(b.pick(&mixed, i.to_string().as_bytes()), Some(1), "{lb:?}");
        }
        // Nothing eligible: no pick.
        assert_eq!(b.pick(&[Out, Out], b"k"), None, "{lb:?}");
        assert_eq!(b.pick(&[Out], b"k"), None, "{lb:?}");
    }
}
