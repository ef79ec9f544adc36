//! A tolerant, bounded parser for the Prometheus text exposition format
//! (what etcd's `/metrics` serves). Comments are skipped; malformed lines are
//! skipped and counted rather than failing the whole scrape.

/// One sample: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The result of [`parse_counted`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub samples: Vec<Sample>,
    /// Lines that were neither comments nor valid samples, or that were
    /// dropped because a limit was reached.
    pub skipped: usize,
}

/// Samples beyond this are dropped (and counted as skipped).
pub const MAX_SAMPLES: usize = 200_000;
/// Lines longer than this are skipped.
pub const MAX_LINE: usize = 64 * 1024;

/// Parses exposition text, skipping bad lines.
pub fn parse(text: &str) -> Vec<Sample> {
    parse_counted(text).samples
}

/// Parses exposition text and reports how many lines were skipped.
pub fn parse_counted(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_LINE || out.samples.len() >= MAX_SAMPLES {
            out.skipped += 1;
            continue;
        }
        match parse_line(line) {
            Some(s) => out.samples.push(s),
            None => out.skipped += 1,
        }
    }
    out
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))?;
    let name = &line[..name_end];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let (l, used) = parse_labels(rest)?;
        labels = l;
        rest = &rest[used..];
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = parse_value(fields.next()?)?;
    // An optional integer timestamp, then nothing.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `{k="v",...}` at the start of `s`; returns the labels and how many
/// bytes were consumed. Shared with the ZooKeeper `mntr` parser.
pub(crate) fn parse_labels(s: &str) -> Option<(Vec<(String, String)>, usize)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut i = 1;
    let mut labels = Vec::new();
    loop {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        match b.get(i)? {
            b'}' => return Some((labels, i + 1)),
            b',' if !labels.is_empty() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let start = i;
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            i += 1;
        }
        let key = &s[start..i];
        if key.is_empty() || b.get(i) != Some(&b'=') || b.get(i + 1) != Some(&b'"') {
            return None;
        }
        i += 2;
        let mut val = String::new();
        loop {
            match *b.get(i)? {
                b'"' => break,
                b'\\' => {
                    match *b.get(i + 1)? {
                        b'n' => val.push('\n'),
                        c => val.push(c as char),
                    }
                    i += 2;
                }
                _ => {
                    // Copy one UTF-8 character.
                    let ch = s[i..].chars().next()?;
                    val.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        i += 1;
        labels.push((key.to_string(), val));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_and_skips_garbage() {
        let p = parse_counted(
            "# HELP etcd_server_has_leader Whether or not a leader exists.\n\
             # TYPE etcd_server_has_leader gauge\n\
             etcd_server_has_leader 1\n\
             etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 42\n\
             x{a=\"q\\\"uote\",b=\"ü\"} NaN 1700000000000\n\
             broken{a=\"1\" 3\n\
             no_value\n\
             1bad 2\n\
             inf +Inf\n",
        );
        assert_eq!(p.samples.len(), 4);
        assert_eq!(p.skipped, 3);
        assert_eq!(p.samples[0].value, 1.0);
        assert_eq!(p.samples[1].label("le"), Some("+Inf"));
        assert_eq!(p.samples[2].label("a"), Some("q\"uote"));
        assert_eq!(p.samples[2].label("b"), Some("ü"));
        assert!(p.samples[2].value.is_nan());
        assert!(p.samples[3].value.is_infinite());
    }
}
