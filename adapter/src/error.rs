//! Why part or all of a scrape failed; each variant has a stable label used
//! as `tessera_scrape_errors_total{reason}`.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The engine call failed (connect, timeout, garbage, auth...).
    #[error(transparent)]
    Client(#[from] tessera_clients::Error),
    /// The whole scrape exceeded `--scrape-timeout`.
    #[error("scrape exceeded {0:?}")]
    Deadline(Duration),
    /// One native field could not be parsed; the field is skipped.
    #[error("field {field}: cannot parse {value:?}")]
    Malformed { field: String, value: String },
    /// The engine answered, but not in a shape we understand (for example
    /// an unknown role); that part of the mapping is skipped.
    #[error("unexpected {what}: {detail}")]
    Unexpected { what: &'static str, detail: String },
}

impl ScrapeError {
    pub fn label(&self) -> &'static str {
        match self {
            ScrapeError::Client(e) => e.label(),
            ScrapeError::Deadline(_) => "deadline",
            ScrapeError::Malformed { .. } => "malformed_field",
            ScrapeError::Unexpected { .. } => "unexpected",
        }
    }

    /// Reasons that are exported at 0 from the start, so that `rate()` and
    /// `increase()` see the first error.
    pub const PRESET: &'static [&'static str] = &[
        "connect",
        "timeout",
        "deadline",
        "malformed_field",
        "unexpected",
    ];
}
