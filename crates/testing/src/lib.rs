//! Test support: launchers for real engines on 127.0.0.1, fault helpers and
//! fixture builders for test objects.
#![forbid(unsafe_code)]
