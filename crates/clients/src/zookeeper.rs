//! ZooKeeper four-letter words (`srvr`, `ruok`, `mntr`, ...) and parsers for
//! their replies.
//!
//! A four-letter word is a one-shot exchange: connect, send the word, read
//! until the server closes.

pub mod session;

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::conn::{self, deadline};
use crate::{Error, Result};

/// `mntr` on a large ensemble is a few KiB; `cons`/`dump` can be bigger.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// Sends a four-letter word and returns the whole reply.
///
/// A word missing from `4lw.commands.whitelist` becomes
/// [`Error::UnexpectedReply`] with the server's explanation.
pub async fn four_letter(addr: &str, word: &str, timeout: Duration) -> Result<String> {
    if word.len() != 4 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(Error::Config(format!("{word:?} is not a four-letter word")));
    }
    deadline("zookeeper four-letter word", timeout, async {
        let mut s = conn::connect(addr, timeout).await?;
        s.write_all(word.as_bytes()).await?;
        let buf = conn::read_to_end(&mut s, MAX_REPLY).await?;
        let text = String::from_utf8(buf.to_vec())
            .map_err(|_| Error::Protocol("four-letter reply is not UTF-8".into()))?;
        if text.contains("is not executed because it is not in the whitelist") {
            return Err(Error::UnexpectedReply(text.trim().to_string()));
        }
        Ok(text)
    })
    .await
}

/// A server's role, as `srvr` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Leader,
    Follower,
    Observer,
    Standalone,
    /// "This ZooKeeper instance is not currently serving requests": out of
    /// quorum or still electing.
    NotServing,
    /// A mode this parser does not know (read-only mode, future roles).
    Other,
}

impl Mode {
    /// A lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::Standalone => "standalone",
            Mode::NotServing => "not_serving",
            Mode::Other => "other",
        }
    }
}

/// The reply of `srvr`. Fields the server did not send are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Srvr {
    pub mode: Mode,
    pub version: Option<String>,
    pub zxid: Option<u64>,
    pub node_count: Option<u64>,
    pub connections: Option<u64>,
    pub outstanding: Option<u64>,
    pub received: Option<u64>,
    pub sent: Option<u64>,
    /// Request latency min/avg/max, in milliseconds as ZooKeeper reports it.
    pub latency_min_ms: Option<f64>,
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
}

impl Srvr {
    /// Parses a `srvr` (or `stat`) reply; an empty reply or one without a
    /// `Mode:` line is a protocol error.
    pub fn parse(text: &str) -> Result<Srvr> {
        if text.contains("not currently serving requests") {
            return Ok(Srvr::empty(Mode::NotServing));
        }
        if text.trim().is_empty() {
            // What a peer does while it shuts its server down, e.g. on
            // leaving the quorum: it closes connections without a word.
            return Err(Error::Protocol(
                "empty srvr reply: the server closed the connection without answering \
                 (it may be restarting or leaving the quorum)"
                    .into(),
            ));
        }
        let mut s = Srvr::empty(Mode::Other);
        let mut saw_mode = false;
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "Zookeeper version" => s.version = Some(v.to_string()),
                "Mode" => {
                    saw_mode = true;
                    s.mode = match v {
                        "leader" => Mode::Leader,
                        "follower" => Mode::Follower,
                        "observer" => Mode::Observer,
                        "standalone" => Mode::Standalone,
                        _ => Mode::Other,
                    }
                }
                "Zxid" => s.zxid = u64::from_str_radix(v.trim_start_matches("0x"), 16).ok(),
                "Node count" => s.node_count = v.parse().ok(),
                "Connections" => s.connections = v.parse().ok(),
                "Outstanding" => s.outstanding = v.parse().ok(),
                "Received" => s.received = v.parse().ok(),
                "Sent" => s.sent = v.parse().ok(),
                "Latency min/avg/max" => {
                    let mut it = v.split('/').map(|x| x.trim().parse::<f64>().ok());
                    s.latency_min_ms = it.next().flatten();
                    s.latency_avg_ms = it.next().flatten();
                    s.latency_max_ms = it.next().flatten();
                }
                _ => {}
            }
        }
        if !saw_mode {
            return Err(Error::Protocol(format!(
                "srvr reply without a Mode line: {:?}",
                text.chars().take(120).collect::<String>()
            )));
        }
        Ok(s)
    }

    fn empty(mode: Mode) -> Srvr {
        Srvr {
            mode,
            version: None,
            zxid: None,
            node_count: None,
            connections: None,
            outstanding: None,
            received: None,
            sent: None,
            latency_min_ms: None,
            latency_avg_ms: None,
            latency_max_ms: None,
        }
    }
}

/// One line of `mntr`: `zk_key<TAB>value`, or since 3.6 possibly
/// `zk_key{label="v",...}<TAB>value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MntrLine {
    pub key: String,
    pub labels: Vec<(String, String)>,
    pub value: String,
}

/// Parses `mntr` output. Lines that do not parse are skipped rather than
/// failing the whole reply.
pub fn parse_mntr(text: &str) -> Vec<MntrLine> {
    text.lines().filter_map(parse_mntr_line).collect()
}

fn parse_mntr_line(line: &str) -> Option<MntrLine> {
    let line = line.trim();
    let (key, labels, rest) = match line.find(['{', '\t', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            let (labels, used) = crate::promtext::parse_labels(&line[i..])?;
            (&line[..i], labels, &line[i + used..])
        }
        Some(i) => (&line[..i], Vec::new(), &line[i..]),
        None => return None,
    };
    let value = rest.trim();
    if key.is_empty() || value.is_empty() {
        return None;
    }
    Some(MntrLine {
        key: key.to_string(),
        labels,
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::fake::{Behaviour, serve};

    const SRVR: &str = "Zookeeper version: 3.8.0-debian, built on 2022-09-01 00:00 UTC\nLatency min/avg/max: 0/0.5/12\nReceived: 10\nSent: 9\nConnections: 1\nOutstanding: 0\nZxid: 0x100000002\nMode: follower\nNode count: 5\n";

    #[test]
    fn srvr_parses_modes() {
        let s = Srvr::parse(SRVR).unwrap();
        assert_eq!(s.mode, Mode::Follower);
        assert_eq!(s.zxid, Some(0x1_0000_0002));
        assert_eq!(s.node_count, Some(5));
        assert_eq!(s.latency_max_ms, Some(12.0));
        assert_eq!(
            Srvr::parse("This ZooKeeper instance is not currently serving requests\n")
                .unwrap()
                .mode,
            Mode::NotServing
        );
        assert!(Srvr::parse("hello\n").is_err());
        let empty = Srvr::parse("").unwrap_err().to_string();
        assert!(empty.contains("closed the connection"), "{empty}");
    }

    #[test]
    fn mntr_handles_labelled_keys() {
        let m = parse_mntr(
            "zk_version\t3.8.0\nzk_server_state\tleader\nzk_cnt_x{key=\"a b\",q=\"1\"}\t7\nnonsense\nzk_avg_latency 0.1\n",
        );
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].value, "leader");
        assert_eq!(m[2].key, "zk_cnt_x");
        assert_eq!(
            m[2].labels,
            vec![("key".into(), "a b".into()), ("q".into(), "1".into())]
        );
        assert_eq!(m[2].value, "7");
        assert_eq!(m[3].value, "0.1");
    }

    #[tokio::test]
    async fn four_letter_bounded_and_typed() {
        let a = serve(Behaviour::Reply(b"imok".to_vec())).await;
        let t = Duration::from_millis(300);
        assert_eq!(
            four_letter(&a.to_string(), "ruok", t).await.unwrap(),
            "imok"
        );
        let a = serve(Behaviour::Reply(
            b"mntr is not executed because it is not in the whitelist.\n".to_vec(),
        ))
        .await;
        assert_eq!(
            four_letter(&a.to_string(), "mntr", t)
                .await
                .unwrap_err()
                .label(),
            "unexpected_reply"
        );
        let a = serve(Behaviour::Flood(1 << 30)).await;
        let e = four_letter(&a.to_string(), "srvr", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.label(), "too_large", "{e}");
        let a = serve(Behaviour::ReplyAndHang(b"Mode: leader\n".to_vec())).await;
        assert_eq!(
            four_letter(&a.to_string(), "srvr", t)
                .await
                .unwrap_err()
                .label(),
            "timeout"
        );
        assert!(four_letter("127.0.0.1:1", "kill", t).await.is_err());
    }
}
