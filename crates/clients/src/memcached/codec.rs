//! Sans-IO framing for the memcached text protocol: where a request or a
//! response ends, what a request's command and keys are, and whether the
//! server will reply. Lengths from the wire are checked against [`Limits`]
//! before anything waits for them.

use std::ops::Range;

#[cfg(test)]
mod tests;

/// Bounds applied to untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command or response line, CRLF excluded.
    pub max_line_len: usize,
    /// Largest data block of a storage command or a `VALUE`.
    pub max_value_len: usize,
    /// memcached's own key limit is 250 bytes.
    pub max_key_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_len: 64 * 1024,
            max_value_len: 64 * 1024 * 1024,
            max_key_len: 250,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("unknown command")]
    UnknownCommand,
    #[error("bad command line format")]
    BadFormat,
    #[error("key longer than {0} bytes")]
    KeyTooLong(usize),
    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("bad data chunk")]
    BadDataChunk,
    #[error("malformed response")]
    BadResponse,
}

/// The commands the text protocol defines that a proxy can route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Get,
    Gets,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    Version,
    Quit,
}

impl Command {
    pub const ALL: [Command; 14] = [
        Command::Get,
        Command::Gets,
        Command::Set,
        Command::Add,
        Command::Replace,
        Command::Append,
        Command::Prepend,
        Command::Cas,
        Command::Delete,
        Command::Incr,
        Command::Decr,
        Command::Touch,
        Command::Version,
        Command::Quit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Command::Get => "get",
            Command::Gets => "gets",
            Command::Set => "set",
            Command::Add => "add",
            Command::Replace => "replace",
            Command::Append => "append",
            Command::Prepend => "prepend",
            Command::Cas => "cas",
            Command::Delete => "delete",
            Command::Incr => "incr",
            Command::Decr => "decr",
            Command::Touch => "touch",
            Command::Version => "version",
            Command::Quit => "quit",
        }
    }

    fn parse(word: &[u8]) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|c| c.name().as_bytes() == word)
    }

    /// True for `get` and `gets`, whose replies are `VALUE` blocks and `END`.
    pub fn is_retrieval(self) -> bool {
        matches!(self, Command::Get | Command::Gets)
    }

    fn is_storage(self) -> bool {
        matches!(
            self,
            Command::Set
                | Command::Add
                | Command::Replace
                | Command::Append
                | Command::Prepend
                | Command::Cas
        )
    }
}

/// A complete request at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    /// Byte ranges of the keys in the buffer, in order.
    pub keys: Vec<Range<usize>>,
    /// True when the client asked for no reply.
    pub noreply: bool,
    /// Length of the whole request, data block included.
    pub len: usize,
    /// Length of the command line, CRLF included; the data block follows.
    pub line_len: usize,
}

/// How the reply to a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// One line: `STORED`, `DELETED`, a number, `VERSION x`, an error...
    Line,
    /// Zero or more `VALUE` blocks then `END`, or one error line.
    Retrieval,
}

impl Request {
    pub fn response_kind(&self) -> ResponseKind {
        if self.command.is_retrieval() {
            ResponseKind::Retrieval
        } else {
            ResponseKind::Line
        }
    }
}

/// Finds the end of the line at `from`: the index of its CR.
fn line_end(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, Error> {
    let window = &buf[from.min(buf.len())..];
    let limit = window.len().min(max + 2);
    match window[..limit].windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > max => Err(Error::LineTooLong(max)),
        Some(i) => Ok(Some(from + i)),
        None if window.len() > max + 1 => Err(Error::LineTooLong(max)),
        None => Ok(None),
    }
}

fn number<T: std::str::FromStr>(word: &[u8]) -> Result<T, Error> {
    std::str::from_utf8(word)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::BadFormat)
}

/// Parses the request at the start of `buf`: `Ok(None)` when incomplete.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<Request>, Error> {
    let Some(end) = line_end(buf, 0, limits.max_line_len)? else {
        return Ok(None);
    };
    let line = &buf[..end];
    let line_len = end + 2;
    // Word ranges, split on spaces as memcached does.
    let mut words: Vec<Range<usize>> = Vec::with_capacity(8);
    let mut at = 0;
    while at < line.len() {
        if line[at] == b' ' {
            at += 1;
            continue;
        }
        let start = at;
        while at < line.len() && line[at] != b' ' {
            at += 1;
        }
        words.push(start..at);
    }
    let word = |i: usize| &line[words[i].clone()];
    if words.is_empty() {
        return Err(Error::UnknownCommand);
    }
    let command = Command::parse(word(0)).ok_or(Error::UnknownCommand)?;
    let noreply = words.len() > 1 && word(words.len() - 1) == b"noreply";
    let args = words.len() - 1 - usize::from(noreply);
    let check_key = |r: &Range<usize>| {
        if r.len() > limits.max_key_len {
            Err(Error::KeyTooLong(limits.max_key_len))
        } else if line[r.clone()].iter().any(|b| b.is_ascii_control()) {
            Err(Error::BadFormat)
        } else {
            Ok(())
        }
    };
    let mut len = line_len;
    let keys = match command {
        Command::Get | Command::Gets => {
            // A key may be literally "noreply" in a get.
            if words.len() < 2 {
                return Err(Error::BadFormat);
            }
            for r in &words[1..] {
                check_key(r)?;
            }
            return Ok(Some(Request {
                command,
                keys: words[1..].to_vec(),
                noreply: false,
                len,
                line_len,
            }));
        }
        c if c.is_storage() => {
            let want = if c == Command::Cas { 5 } else { 4 };
            if args != want {
                return Err(Error::BadFormat);
            }
            number::<u32>(word(2))?;
            number::<i64>(word(3))?;
            let bytes: usize = number(word(4))?;
            if c == Command::Cas {
                number::<u64>(word(5))?;
            }
            if bytes > limits.max_value_len {
                return Err(Error::ValueTooLarge {
                    len: bytes,
                    max: limits.max_value_len,
                });
            }
            len = line_len + bytes + 2;
            if buf.len() < len {
                return Ok(None);
            }
            if &buf[len - 2..len] != b"\r\n" {
                return Err(Error::BadDataChunk);
            }
            vec![words[1].clone()]
        }
        Command::Delete => {
            // `delete <key> [0] [noreply]`: the legacy time must be 0.
            if !(args == 1 || (args == 2 && word(2) == b"0")) {
                return Err(Error::BadFormat);
            }
            vec![words[1].clone()]
        }
        Command::Incr | Command::Decr => {
            if args != 2 {
                return Err(Error::BadFormat);
            }
            number::<u64>(word(2))?;
            vec![words[1].clone()]
        }
        Command::Touch => {
            if args != 2 {
                return Err(Error::BadFormat);
            }
            number::<i64>(word(2))?;
            vec![words[1].clone()]
        }
        Command::Version | Command::Quit => {
            if args != 0 {
                return Err(Error::BadFormat);
            }
            Vec::new()
        }
        _ => unreachable!("every command is handled above"),
    };
    for r in &keys {
        check_key(r)?;
    }
    Ok(Some(Request {
        command,
        keys,
        noreply,
        len,
        line_len,
    }))
}

/// Returns the length of the complete response of `kind` at the start of
/// `buf`, or `Ok(None)` when more bytes are needed.
pub fn response_len(
    buf: &[u8],
    kind: ResponseKind,
    limits: &Limits,
) -> Result<Option<usize>, Error> {
    match kind {
        ResponseKind::Line => Ok(line_end(buf, 0, limits.max_line_len)?.map(|e| e + 2)),
        ResponseKind::Retrieval => {
            let mut at = 0;
            loop {
                let Some(end) = line_end(buf, at, limits.max_line_len)? else {
                    return Ok(None);
                };
                let line = &buf[at..end];
                if line == b"END" {
                    return Ok(Some(end + 2));
                }
                if let Some(rest) = line.strip_prefix(b"VALUE ") {
                    // VALUE <key> <flags> <bytes> [<cas>]
                    let mut parts = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
                    let bytes: usize = match (parts.next(), parts.next(), parts.next()) {
                        (Some(_), Some(_), Some(n)) => number(n).map_err(|_| Error::BadResponse)?,
                        _ => return Err(Error::BadResponse),
                    };
                    if bytes > limits.max_value_len {
                        return Err(Error::ValueTooLarge {
                            len: bytes,
                            max: limits.max_value_len,
                        });
                    }
                    let data_end = end + 2 + bytes;
                    if buf.len() < data_end + 2 {
                        return Ok(None);
                    }
                    if &buf[data_end..data_end + 2] != b"\r\n" {
                        return Err(Error::BadResponse);
                    }
                    at = data_end + 2;
                } else if at == 0 {
                    // An error line (ERROR, CLIENT_ERROR, SERVER_ERROR) ends it.
                    return Ok(Some(end + 2));
                } else {
                    return Err(Error::BadResponse);
                }
            }
        }
    }
}

/// Splits a complete retrieval response into its `VALUE` blocks, dropping
/// the final `END`, so that the replies of several shards can be merged.
pub fn retrieval_values(response: &[u8]) -> &[u8] {
    response.strip_suffix(b"END\r\n").unwrap_or(response)
}
