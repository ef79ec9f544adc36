//! Kafka's configuration files and the engine container's start script.
//!
//! Every pod of a role reads the same file from the ConfigMap; the start
//! script adds what differs per pod (`node.id`, `advertised.listeners`).

use std::collections::BTreeMap;

use super::identity::CONTROLLER_ID_BASE;
use super::validate::{Quorum, ValidBroker};

/// The listener for inter-broker traffic; reserved by the API.
pub const REPLICATION: &str = "REPLICATION";
pub const REPLICATION_PORT: i32 = 9091;
/// The KRaft controller listener; reserved by the API.
pub const CONTROLLER: &str = "CONTROLLER";
pub const CONTROLLER_PORT: i32 = 9093;

/// The data volume's mount. Kafka's log directory is a folder below it: a
/// fresh volume's root may hold `lost+found`, which Kafka takes for a
/// corrupt partition.
pub const DATA_MOUNT: &str = "/var/lib/kafka/data";
pub const LOG_DIR: &str = "/var/lib/kafka/data/kafka-logs";
pub const CONFIG_MOUNT: &str = "/etc/tessera";
/// Writable: the file the start script completes for this pod.
pub const RUN_DIR: &str = "/var/run/kafka";

/// What a pod does, by the files it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Controller,
    Broker,
    /// Broker and controller in one process (combined mode).
    Combined,
}

impl Role {
    /// The ConfigMap key of the role's file.
    pub fn file(self) -> &'static str {
        match self {
            Role::Controller => "controller.properties",
            Role::Broker => "broker.properties",
            Role::Combined => "combined.properties",
        }
    }

    fn process_roles(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Broker => "broker",
            Role::Combined => "broker,controller",
        }
    }

    fn is_broker(self) -> bool {
        self != Role::Controller
    }

    fn is_controller(self) -> bool {
        self != Role::Broker
    }
}

/// Names the configuration refers to.
pub struct Names<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

impl Names<'_> {
    pub fn headless(&self) -> String {
        format!("{}-headless", self.name)
    }

    pub fn statefulset(&self, component: &str) -> String {
        format!("{}-{component}", self.name)
    }

    /// The stable DNS name of a pod of `component`, through the headless
    /// Service.
    pub fn host(&self, component: &str, ordinal: i32) -> String {
        format!(
            "{}-{ordinal}.{}.{}.svc",
            self.statefulset(component),
            self.headless(),
            self.namespace
        )
    }
}

/// The static voter list, `id@host:port,...`.
///
/// Static rather than 3.9's dynamic quorum (KIP-853): a dynamic quorum
/// needs every controller formatted with the same `--initial-controllers`
/// string, including directory ids, and brokers with `--no-initial-controllers`,
/// for a feature 3.9 only just introduced; a static quorum cannot become
/// dynamic in 3.9 either way, so the number of controllers is fixed at
/// creation (the API refuses changes to `controllers`).
pub fn voters(b: &ValidBroker) -> String {
    voter_list(&b.name, &b.namespace, b.quorum).join(",")
}

/// The voters one by one, `id@host:port`, as status reports them.
pub fn voter_list(name: &str, namespace: &str, quorum: Quorum) -> Vec<String> {
    let names = Names { name, namespace };
    let (component, base) = match quorum {
        Quorum::Dedicated { .. } => (super::build::CONTROLLER_COMPONENT, CONTROLLER_ID_BASE),
        Quorum::Combined { .. } => (super::build::BROKER_COMPONENT, 0),
    };
    (0..quorum.controllers())
        .map(|i| {
            format!(
                "{}@{}:{CONTROLLER_PORT}",
                base + i,
                names.host(component, i)
            )
        })
        .collect()
}

/// Replication settings that fit the number of brokers: three copies and
/// two in sync when there are three brokers or more, everything on one
/// broker otherwise (Kafka's stock defaults of 3 would make the offsets
/// topic impossible to create on a smaller cluster).
fn defaults(brokers: i32) -> BTreeMap<&'static str, String> {
    let rf = brokers.clamp(1, 3);
    let min_isr = if rf >= 3 { 2 } else { 1 };
    BTreeMap::from([
        ("default.replication.factor", rf.to_string()),
        ("min.insync.replicas", min_isr.to_string()),
        ("offsets.topic.replication.factor", rf.to_string()),
        ("transaction.state.log.replication.factor", rf.to_string()),
        ("transaction.state.log.min.isr", min_isr.to_string()),
        // A replica that falls behind for longer is dropped from the ISR;
        // Kafka's default, written down because safe rolls depend on it.
        ("replica.lag.time.max.ms", "30000".to_string()),
    ])
}

/// The cluster-wide `min.insync.replicas`: the user's, or the default for
/// the number of brokers. (A topic may override it: the roll asks the
/// cluster for each topic's own value and uses this one only for topics it
/// has no answer for.)
pub fn min_insync(b: &ValidBroker) -> usize {
    b.config
        .get("min.insync.replicas")
        .and_then(|v| v.parse().ok())
        .or_else(|| defaults(b.replicas)["min.insync.replicas"].parse().ok())
        .unwrap_or(1)
}

/// The complete file of a role, without the per-pod lines. User settings
/// are merged over the defaults; the operator's own keys come after them
/// (validation has already refused owned keys in `config`).
pub fn properties(b: &ValidBroker, role: Role) -> String {
    let mut settings: BTreeMap<String, String> = defaults(b.replicas)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    settings.extend(b.config.iter().map(|(k, v)| (k.clone(), v.clone())));

    let mut listeners = Vec::new();
    let mut protocols = vec![format!("{CONTROLLER}:PLAINTEXT")];
    if role.is_broker() {
        listeners.push(format!("{REPLICATION}://:{REPLICATION_PORT}"));
        protocols.push(format!("{REPLICATION}:PLAINTEXT"));
        for l in &b.listeners {
            listeners.push(format!("{}://:{}", l.name, l.port));
            protocols.push(format!("{}:PLAINTEXT", l.name));
        }
    }
    if role.is_controller() {
        listeners.push(format!("{CONTROLLER}://:{CONTROLLER_PORT}"));
    }
    let mut owned: Vec<(&str, String)> = vec![
        ("process.roles", role.process_roles().into()),
        ("controller.quorum.voters", voters(b)),
        ("controller.listener.names", CONTROLLER.into()),
        ("listeners", listeners.join(",")),
        ("listener.security.protocol.map", protocols.join(",")),
        ("log.dirs", LOG_DIR.into()),
    ];
    if role.is_broker() {
        owned.push(("inter.broker.listener.name", REPLICATION.into()));
    }

    let mut out = format!(
        "# Generated by tessera-operator for Broker {}/{} ({}). Do not edit: changes are overwritten.\n\
         # The start script appends node.id and advertised.listeners.\n",
        b.namespace,
        b.name,
        role.process_roles()
    );
    for (k, v) in &settings {
        out.push_str(&format!("{k}={v}\n"));
    }
    for (k, v) in &owned {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

/// Logging to the console only: the root filesystem is read-only, and the
/// images' own files also write under `kafka.logs.dir`.
pub fn log4j() -> String {
    "log4j.rootLogger=INFO, stdout\n\
     log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n\
     log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n\
     log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n\
     log4j.logger.kafka.request.logger=WARN\n\
     log4j.logger.state.change.logger=WARN\n"
        .to_string()
}

/// The start script of a component's pods. It starts the JVM main classes
/// with the `/opt/kafka/libs` classpath, which the official image and the
/// locally built one both have, rather than either image's scripts.
///
/// Storage is formatted on every start with `--ignore-formatted`: a new
/// volume is formatted with the cluster id, a formatted one is kept, and a
/// volume formatted for another cluster or node id makes the format fail,
/// so the pod crashes with Kafka's message (also its termination message,
/// which status shows) instead of joining the wrong cluster or being
/// reformatted.
pub fn start_script(b: &ValidBroker, component: &str) -> String {
    let names = Names {
        name: &b.name,
        namespace: &b.namespace,
    };
    let (base, role) = match (b.quorum, component == super::build::CONTROLLER_COMPONENT) {
        (_, true) => (CONTROLLER_ID_BASE, String::from("role=controller")),
        (Quorum::Dedicated { .. }, false) => (0, String::from("role=broker")),
        (Quorum::Combined { controllers }, false) => (
            0,
            format!(
                r#"role=broker
if [ "$ordinal" -lt {controllers} ]; then role=combined; fi"#
            ),
        ),
    };
    let mut advertised = vec![format!("{REPLICATION}://${{host}}:{REPLICATION_PORT}")];
    advertised.extend(
        b.listeners
            .iter()
            .map(|l| format!("{}://${{host}}:{}", l.name, l.port)),
    );
    format!(
        r#"set -eu
ordinal="${{HOSTNAME##*-}}"
node_id=$((ordinal + {base}))
host="${{HOSTNAME}}.{headless}.{namespace}.svc"
{role}
cfg={RUN_DIR}/server.properties
cp "{CONFIG_MOUNT}/$role.properties" "$cfg"
echo "node.id=$node_id" >> "$cfg"
if [ "$role" != controller ]; then
  echo "advertised.listeners={advertised}" >> "$cfg"
fi
log4j="-Dlog4j.configuration=file:{CONFIG_MOUNT}/log4j.properties -Dkafka.logs.dir=/tmp"
echo "formatting {LOG_DIR} for cluster $TESSERA_KAFKA_CLUSTER_ID, node $node_id ($role)"
if ! out=$(java -XX:-UsePerfData -Xmx128m $log4j -cp '/opt/kafka/libs/*' kafka.tools.StorageTool \
  format --cluster-id="$TESSERA_KAFKA_CLUSTER_ID" -c "$cfg" --ignore-formatted 2>&1); then
  echo "$out"
  # The pod's termination message: the operator's status shows it.
  # Kafka's own words: not its log lines, not the stack trace.
  why=$(printf '%s\n' "$out" | grep -v -e '^[[:space:]]*at ' -e '^\[' | grep . | tail -n 2 |
    sed 's/^Exception in thread "main" [A-Za-z.]*: //' | tr '\n' ' ')
  printf 'The volume was left untouched: Kafka refused to format %s for cluster %s, node %s: %s' \
    "{LOG_DIR}" "$TESSERA_KAFKA_CLUSTER_ID" "$node_id" "$why" > /dev/termination-log
  exit 1
fi
echo "$out"
exec java -XX:-UsePerfData $KAFKA_HEAP_OPTS $log4j -cp '/opt/kafka/libs/*' kafka.Kafka "$cfg"
"#,
        headless = names.headless(),
        namespace = b.namespace,
        advertised = advertised.join(","),
    )
}
