//! RTP port allocation for the media engine: which even port (RTP `p`, RTCP `p + 1`) a new call gets.
//! Decided here, sans-IO, so handling an INVITE never waits for the media thread; the engine only binds
//! what it is told and reports the ports it could not bind, which are then kept out of use for a while.
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a port the engine could not bind (another program holds it) stays out of the rotation.
pub const QUARANTINE: Duration = Duration::from_secs(60);

/// The free even ports of a range, handed out round-robin (a released port goes to the back, so a port
/// is reused as late as possible: its old socket is long closed and late packets of the old call have
/// stopped).
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    in_use: HashSet<u16>,
    /// Ports the engine could not bind, with the instant they may be tried again (in that order).
    quarantined: VecDeque<(Instant, u16)>,
}

impl PortPool {
    /// Every even `p` with `lo <= p` and `p + 1 <= hi`, starting the rotation at a position taken from
    /// `seed` (two servers sharing a range, as parallel tests do, then rarely pick the same port first).
    pub fn new(range: (u16, u16), seed: u64) -> PortPool {
        let (lo, hi) = range;
        let first = lo.saturating_add(lo % 2);
        let mut ports: Vec<u16> = (first..hi).step_by(2).collect();
        if !ports.is_empty() {
            let start = (seed % ports.len() as u64) as usize;
            ports.rotate_left(start);
        }
        PortPool {
            free: ports.into(),
            in_use: HashSet::new(),
            quarantined: VecDeque::new(),
        }
    }

    /// The next free port, or `None` when every port is in use or quarantined.
    pub fn allocate(&mut self, now: Instant) -> Option<u16> {
        while let Some(&(until, port)) = self.quarantined.front() {
            if until > now {
                break;
            }
            self.quarantined.pop_front();
            self.free.push_back(port);
        }
        let port = self.free.pop_front()?;
        self.in_use.insert(port);
        Some(port)
    }

    /// Returns a port whose call ended.
    pub fn release(&mut self, port: u16) {
        if self.in_use.remove(&port) {
            self.free.push_back(port);
        }
    }

    /// Takes a port the engine could not bind out of the rotation until `now + QUARANTINE`.
    pub fn quarantine(&mut self, now: Instant, port: u16) {
        if self.in_use.remove(&port) {
            self.quarantined.push_back((now + QUARANTINE, port));
        }
    }

    /// Ports handed out and not yet released.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_round_robin_with_rtcp_inside_the_range() {
        let t0 = Instant::now();
        let mut pool = PortPool::new((41001, 41006), 0);
        let a = pool.allocate(t0);
        let b = pool.allocate(t0);
        let c = pool.allocate(t0);
        assert_eq!((a, b, c), (Some(41002), Some(41004), None));
        pool.release(41002);
        assert_eq!(pool.allocate(t0), Some(41002));
        // A port released twice (or never handed out) does not appear twice.
        pool.release(41004);
        pool.release(41004);
        pool.release(40000);
        assert_eq!(pool.allocate(t0), Some(41004));
        assert_eq!(pool.allocate(t0), None);
    }

    #[test]
    fn released_ports_go_to_the_back() {
        let t0 = Instant::now();
        let mut pool = PortPool::new((42000, 42005), 0);
        let a = pool.allocate(t0).expect("free");
        pool.release(a);
        assert_ne!(
            pool.allocate(t0),
            Some(a),
            "another free port is used first"
        );
    }

    #[test]
    fn a_port_that_could_not_be_bound_rests_before_reuse() {
        let t0 = Instant::now();
        let mut pool = PortPool::new((43000, 43001), 0);
        let p = pool.allocate(t0).expect("free");
        pool.quarantine(t0, p);
        assert_eq!(pool.allocate(t0 + QUARANTINE / 2), None);
        assert_eq!(pool.allocate(t0 + QUARANTINE), Some(p));
    }

    #[test]
    fn the_seed_moves_the_first_port() {
        let t0 = Instant::now();
        let firsts: HashSet<u16> = (0..8)
            .filter_map(|seed| PortPool::new((30000, 39999), seed).allocate(t0))
            .collect();
        assert_eq!(firsts.len(), 8);
    }
}
