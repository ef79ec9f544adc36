//! One module per engine. Shared here: temp dirs and the JVM command line.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use crate::LaunchError;

pub mod etcd;
pub mod kafka;
pub mod memcached;
pub mod redis;
pub mod zookeeper;

/// How long an engine may take to come up. JVMs on a busy 2-core machine
/// are slow; C engines are up in milliseconds.
pub(crate) const NATIVE_START: Duration = Duration::from_secs(20);
pub(crate) const JVM_START: Duration = Duration::from_secs(120);

/// A fresh temporary directory named after the engine.
pub(crate) fn temp_dir(engine: &str) -> Result<TempDir, LaunchError> {
    tempfile::Builder::new()
        .prefix(&format!("tessera-{engine}-"))
        .tempdir()
        .map_err(|e| LaunchError::Setup(format!("{engine}: temp dir: {e}")))
}

pub(crate) fn write(path: PathBuf, text: &str) -> Result<(), LaunchError> {
    std::fs::write(&path, text)
        .map_err(|e| LaunchError::Setup(format!("write {}: {e}", path.display())))
}

/// JVM flags that keep a test engine small and gentle on shared CPUs.
pub(crate) fn jvm_flags(heap_mb: u32) -> Vec<String> {
    vec![
        format!("-Xmx{heap_mb}m"),
        "-Xms32m".into(),
        "-XX:+UseSerialGC".into(),
        "-XX:TieredStopAtLevel=1".into(),
        "-Xshare:auto".into(),
        "-Djava.awt.headless=true".into(),
    ]
}
