//! Key placement, reproducing twemproxy's `server_pool_idx`: hash tags, the
//! pool's hash function, and the ketama / modula / random distributions.
//!
//! A [`Ring`] is immutable; ejections and reloads build a new one.

pub mod hash;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use hash::HashFn;

/// How hashes map to servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Distribution {
    #[default]
    Ketama,
    Modula,
    Random,
}

impl Distribution {
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Ketama => "ketama",
            Distribution::Modula => "modula",
            Distribution::Random => "random",
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown distribution {0:?} (expected ketama, modula or random)")]
pub struct UnknownDistribution(pub String);

impl FromStr for Distribution {
    type Err = UnknownDistribution;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ketama" => Ok(Distribution::Ketama),
            "modula" => Ok(Distribution::Modula),
            "random" => Ok(Distribution::Random),
            _ => Err(UnknownDistribution(s.to_owned())),
        }
    }
}

/// The identity twemproxy hashes onto the continuum: the server's name when
/// it has one, else `host:port`, else `host` alone when the port is 11211
/// (libmemcached compatibility).
pub fn server_identity(host: &str, port: u16, name: Option<&str>) -> String {
    match name {
        Some(n) => n.to_owned(),
        None if port == 11211 => host.to_owned(),
        None => format!("{host}:{port}"),
    }
}

/// One server as the ring sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub identity: String,
    pub weight: u32,
    /// False while the server is ejected.
    pub live: bool,
}

const KETAMA_POINTS_PER_SERVER: u32 = 160;
const KETAMA_POINTS_PER_HASH: u32 = 4;

/// The part of `key` that is hashed: the text inside the first hash tag
/// when there is a non-empty one, else the whole key.
pub fn hash_tagged(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(start) = key.iter().position(|&b| b == open) else {
        return key;
    };
    match key[start + 1..].iter().position(|&b| b == close) {
        Some(len) if len > 0 => &key[start + 1..start + 1 + len],
        _ => key,
    }
}

/// An immutable placement table built from the current live members.
#[derive(Debug, Clone)]
pub struct Ring {
    hash: HashFn,
    dist: Distribution,
    tag: Option<[u8; 2]>,
    /// Number of configured servers, live or not.
    nservers: usize,
    /// Ketama: (point, server index) sorted by point. Modula: one entry per
    /// unit of weight, in server order. Random: one entry per live server.
    continuum: Vec<(u32, u32)>,
}

impl Ring {
    pub fn new(hash: HashFn, dist: Distribution, tag: Option<[u8; 2]>, members: &[Member]) -> Ring {
        // nutcracker sorts a pool's servers by name (shorter first, then
        // bytewise) while checking for duplicates, and that sorted order is
        // the order of modula slots and of ketama ties.
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (
                members[a].identity.as_bytes(),
                members[b].identity.as_bytes(),
            );
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        });
        let live = || {
            order
                .iter()
                .map(|&i| (i, &members[i]))
                .filter(|(_, m)| m.live)
        };
        let nlive = live().count() as u32;
        let total_weight: u32 = live().map(|(_, m)| m.weight).sum();
        let mut continuum = Vec::new();
        match dist {
            Distribution::Ketama => {
                for (index, m) in live() {
                    let pct = m.weight as f32 / total_weight as f32;
                    // Same arithmetic and precisions as ketama_update: f32
                    // products, the epsilon added in f64, floorf in f32.
                    let scaled = pct * KETAMA_POINTS_PER_SERVER as f32 / 4.0 * nlive as f32;
                    let points = ((scaled as f64 + 0.000_000_000_1) as f32).floor() as u32 * 4;
                    for i in 0..points / KETAMA_POINTS_PER_HASH {
                        let words = hash::md5_words(format!("{}-{i}", m.identity).as_bytes());
                        continuum.extend(words.iter().map(|&w| (w, index as u32)));
                    }
                }
                // glibc's qsort is a merge sort here, so ties keep server order.
                continuum.sort_by_key(|&(point, _)| point);
            }
            Distribution::Modula => {
                for (index, m) in live() {
                    continuum.extend((0..m.weight).map(|_| (0, index as u32)));
                }
            }
            Distribution::Random => {
                continuum.extend(live().map(|(index, _)| (0, index as u32)));
            }
        }
        Ring {
            hash,
            dist,
            tag,
            nservers: members.len(),
            continuum,
        }
    }

    pub fn hash_fn(&self) -> HashFn {
        self.hash
    }

    pub fn distribution(&self) -> Distribution {
        self.dist
    }

    /// True when at least one server is live.
    pub fn has_live(&self) -> bool {
        !self.continuum.is_empty()
    }

    /// The hash twemproxy computes for `key` (after the hash tag): an empty
    /// key hashes to 0.
    pub fn key_hash(&self, key: &[u8]) -> u32 {
        let key = hash_tagged(key, self.tag);
        if key.is_empty() {
            0
        } else {
            self.hash.hash(key)
        }
    }

    /// The index of the server that owns `key`, or `None` when every server
    /// is ejected.
    pub fn route(&self, key: &[u8]) -> Option<usize> {
        if self.continuum.is_empty() {
            return None;
        }
        if self.nservers == 1 {
            return Some(0);
        }
        let slot = match self.dist {
            Distribution::Ketama => {
                let h = self.key_hash(key);
                let i = self.continuum.partition_point(|&(point, _)| point < h);
                if i == self.continuum.len() { 0 } else { i }
            }
            Distribution::Modula => self.key_hash(key) as usize % self.continuum.len(),
            Distribution::Random => fastrand::usize(..self.continuum.len()),
        };
        Some(self.continuum[slot].1 as usize)
    }

    /// Number of continuum points (for tests and metrics).
    pub fn points(&self) -> usize {
        self.continuum.len()
    }
}
