//! Apache Kafka in KRaft mode from the jars `hack/install-test-deps.sh`
//! resolves: storage formatted with `kafka.tools.StorageTool`, then
//! `kafka.Kafka`, every node a combined broker and controller.

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use super::{JVM_START, jvm_flags, temp_dir, write};
use crate::{LaunchError, Process, free_ports};

/// Must match `kafka.version` in hack/kafka/pom.xml.
pub const KAFKA_VERSION: &str = "3.9.1";
/// Any valid base64 UUID; tests do not share clusters.
const CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

fn libs() -> Result<PathBuf, LaunchError> {
    let cache = std::env::var_os("TESSERA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tessera")))
        .ok_or_else(|| LaunchError::Setup("kafka: neither TESSERA_CACHE nor HOME is set".into()))?;
    let libs = cache.join("kafka").join(KAFKA_VERSION).join("libs");
    if !libs.join(".complete").exists() {
        return Err(LaunchError::Setup(format!(
            "kafka: no jars in {} (run `make engines` or hack/install-test-deps.sh)",
            libs.display()
        )));
    }
    Ok(libs)
}

/// One broker (also a controller).
#[derive(Debug)]
pub struct KafkaBroker {
    pub node_id: i32,
    pub port: u16,
    pub controller_port: u16,
    pub process: Process,
    /// "Kafka Server started" lines in the log when the process was last
    /// started: only a later one means this start completed.
    markers_at_start: usize,
    _dir: TempDir,
}

impl KafkaBroker {
    /// A single-node cluster.
    pub fn start() -> Result<KafkaBroker, LaunchError> {
        let p = free_ports(2);
        let mut b = Self::spawn(1, p[0], p[1], &format!("1@127.0.0.1:{}", p[1]), 1)?;
        b.wait_started()?;
        Ok(b)
    }

    fn spawn(
        node_id: i32,
        port: u16,
        cport: u16,
        voters: &str,
        rf: usize,
    ) -> Result<KafkaBroker, LaunchError> {
        let libs = libs()?;
        let dir = temp_dir("kafka")?;
        let min_isr = rf.min(2);
        let props = format!(
            "process.roles=broker,controller\nnode.id={node_id}\n\
             controller.quorum.voters={voters}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={logs}\nnum.partitions=1\n\
             offsets.topic.replication.factor={rf}\ntransaction.state.log.replication.factor={rf}\n\
             transaction.state.log.min.isr={min_isr}\ngroup.initial.rebalance.delay.ms=0\n\
             num.network.threads=2\nnum.io.threads=2\nbackground.threads=2\nlog.cleaner.enable=false\n",
            logs = dir.path().join("logs").display()
        );
        write(dir.path().join("server.properties"), &props)?;
        write(
            dir.path().join("log4j.properties"),
            "log4j.rootLogger=INFO, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n\
             log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n\
             log4j.logger.kafka=INFO\nlog4j.logger.org.apache.kafka=INFO\n",
        )?;
        let mut base = jvm_flags(384);
        base.extend([
            format!(
                "-Dlog4j.configuration=file:{}",
                dir.path().join("log4j.properties").display()
            ),
            "-cp".into(),
            format!("{}/*", libs.display()),
        ]);
        let config = dir.path().join("server.properties").display().to_string();
        let mut format = base.clone();
        format.extend(
            [
                "kafka.tools.StorageTool",
                "format",
                "-t",
                CLUSTER_ID,
                "-c",
                &config,
            ]
            .map(String::from),
        );
        let log = dir.path().join("kafka.log");
        let out = Command::new("java")
            .args(&format)
            .output()
            .map_err(|source| LaunchError::Spawn {
                engine: "kafka".into(),
                program: "java".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(LaunchError::Setup(format!(
                "kafka: StorageTool format failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut args = base;
        args.extend(["kafka.Kafka".into(), config]);
        let process = Process::spawn(&format!("kafka-{node_id}"), "java", args, vec![], log)?;
        Ok(KafkaBroker {
            node_id,
            port,
            controller_port: cport,
            process,
            markers_at_start: 0,
            _dir: dir,
        })
    }

    /// Waits for the "Kafka Server started" log line that follows broker
    /// registration.
    pub fn wait_started(&mut self) -> Result<(), LaunchError> {
        let log = self.process.log_path().to_path_buf();
        // Counted at start, not here: in a cluster a broker may finish
        // starting while the test still waits for an earlier one.
        let seen = self.markers_at_start;
        self.process.wait_until(JVM_START, || {
            if count(&log, STARTED) > seen {
                Ok(())
            } else {
                Err("no \"Kafka Server started\" in the log yet".into())
            }
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts a killed broker again with the same ports and data.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        self.markers_at_start = count(self.process.log_path(), STARTED);
        self.process.start()?;
        self.wait_started()
    }
}

fn count(log: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.matches(needle).count())
        .unwrap_or(0)
}

const STARTED: &str = "Kafka Server started";

/// A cluster of combined broker-controllers.
#[derive(Debug)]
pub struct KafkaCluster {
    pub brokers: Vec<KafkaBroker>,
}

impl KafkaCluster {
    pub fn start(n: usize) -> Result<KafkaCluster, LaunchError> {
        let p = free_ports(2 * n);
        let voters = (0..n)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, p[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let rf = n.min(3);
        let mut brokers = (0..n)
            .map(|i| KafkaBroker::spawn(i as i32 + 1, p[2 * i], p[2 * i + 1], &voters, rf))
            .collect::<Result<Vec<_>, _>>()?;
        for b in &mut brokers {
            b.wait_started()?;
        }
        Ok(KafkaCluster { brokers })
    }

    /// `host:port` list for bootstrap.
    pub fn bootstrap(&self) -> String {
        self.brokers
            .iter()
            .map(KafkaBroker::addr)
            .collect::<Vec<_>>()
            .join(",")
    }
}
