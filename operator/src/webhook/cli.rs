//! `--webhook-*` flags of `tessera-operator run`, each with a variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::WebhookConfig;
use super::admission::NativeSidecars;
use super::config::{Endpoint, FailurePolicy, Owner, Selection, Settings};
use super::tls::Policy;

#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Serve the sidecar-injection webhook (docs/injection.md).
    /// `--webhook` alone means true.
    #[arg(
        long = "webhook",
        env = "TESSERA_WEBHOOK",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enabled: bool,

    /// HTTPS address of the webhook.
    #[arg(long, env = "TESSERA_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: SocketAddr,

    /// The operator's namespace: holds the certificate Secret and the
    /// Service, and is never injected.
    #[arg(
        long,
        env = "TESSERA_WEBHOOK_NAMESPACE",
        default_value = "tessera-system"
    )]
    pub webhook_namespace: String,

    /// The Service (in --webhook-namespace, port 443 to --webhook-addr) the
    /// API server calls.
    #[arg(
        long,
        env = "TESSERA_WEBHOOK_SERVICE",
        default_value = "tessera-operator-webhook"
    )]
    pub webhook_service: String,

    /// Call the webhook at this https:// base URL instead of the Service
    /// (an operator outside the cluster, e.g. https://127.0.0.1:8443). Its
    /// host goes into the certificate.
    #[arg(long, env = "TESSERA_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// What the API server does when the webhook does not answer: Ignore
    /// (the pod is created without injection and reported) or Fail.
    #[arg(
        long,
        env = "TESSERA_WEBHOOK_FAILURE_POLICY",
        value_enum,
        default_value = "ignore"
    )]
    pub webhook_failure_policy: FailurePolicy,

    /// opt-out: every namespace but those labelled
    /// tessera.dev/injection=disabled; opt-in: only those labelled
    /// tessera.dev/injection=enabled.
    #[arg(
        long,
        env = "TESSERA_WEBHOOK_NAMESPACES",
        value_enum,
        default_value = "opt-out"
    )]
    pub webhook_namespaces: Selection,

    /// Inject native sidecars (init containers with restartPolicy Always):
    /// auto when every node's kubelet is 1.29 or newer.
    #[arg(
        long,
        env = "TESSERA_WEBHOOK_NATIVE_SIDECARS",
        value_enum,
        default_value = "auto"
    )]
    pub webhook_native_sidecars: NativeSidecars,

    /// Refuse a pod whose password Secret does not exist (needs `get` on
    /// Secrets in every namespace; see docs/injection.md).
    #[arg(long, env = "TESSERA_WEBHOOK_CHECK_SECRETS", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook_check_secrets: bool,

    /// Validity of the serving certificate, e.g. 24h, 90m, 60s; renewed
    /// when a third is left.
    #[arg(long, env = "TESSERA_WEBHOOK_CERT_VALIDITY", default_value = "24h", value_parser = parse_cert_validity)]
    pub webhook_cert_validity: Duration,

    /// Who creates the MutatingWebhookConfiguration `tessera-operator`:
    /// operator (it creates it and labels it as its own) or installer (the
    /// Helm chart creates it and deletes it on uninstall; the operator only
    /// fills in its webhook and CA bundle, and waits while it is missing).
    #[arg(
        long,
        env = "TESSERA_WEBHOOK_CONFIGURATION_OWNER",
        value_enum,
        default_value = "operator"
    )]
    pub webhook_configuration_owner: Owner,

    /// After SIGTERM, keep accepting for this long (0s-60s) before
    /// draining: the API server goes on calling a pod until its endpoint is
    /// removed, and a call that finds the port closed is a pod admitted
    /// without injection.
    #[arg(long, env = "TESSERA_WEBHOOK_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_shutdown_delay)]
    pub webhook_shutdown_delay: Duration,

    /// Seconds the API server waits for an answer (1-30).
    #[arg(long, env = "TESSERA_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    pub webhook_timeout_seconds: i32,
}

/// How long the webhook keeps accepting after SIGTERM (0s-60s), then it
/// drains: the API server sends to a pod until its endpoint is removed.
fn parse_shutdown_delay(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > Duration::from_secs(60) {
        return Err(format!(
            "{s:?}: at most 60s (it must end within the pod's termination grace period)"
        ));
    }
    Ok(d)
}

fn parse_cert_validity(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(30) {
        return Err(format!("{s:?}: a certificate must live at least 30s"));
    }
    Ok(d)
}

/// `0s`, `90s`, `15m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 15m, 24h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => {
            return Err(format!(
                "{s:?} is not a duration such as 90s, 15m, 24h or 7d"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

impl WebhookArgs {
    /// None when the webhook is off. `namespaces` are the operator's.
    pub fn to_config(&self, namespaces: &[String]) -> anyhow::Result<Option<WebhookConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let ns = self.webhook_namespace.clone();
        let (endpoint, names) = match &self.webhook_url {
            Some(url) => {
                let rest = url.strip_prefix("https://").ok_or_else(|| {
                    anyhow::anyhow!("--webhook-url must start with https:// (got {url:?})")
                })?;
                let authority = rest.split('/').next().unwrap_or_default();
                anyhow::ensure!(
                    !authority.is_empty()
                        && !authority.contains('@')
                        && !rest.contains('?')
                        && !rest.contains('#'),
                    "--webhook-url {url:?}: no user, query or fragment allowed"
                );
                let host = match authority.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
                    None => authority
                        .rsplit_once(':')
                        .map_or(authority, |(h, _)| h)
                        .to_string(),
                };
                (Endpoint::Url(url.clone()), vec![host])
            }
            None => {
                let svc = &self.webhook_service;
                (
                    Endpoint::Service {
                        name: svc.clone(),
                        namespace: ns.clone(),
                    },
                    vec![
                        format!("{svc}.{ns}.svc"),
                        format!("{svc}.{ns}.svc.cluster.local"),
                    ],
                )
            }
        };
        let mut excluded = vec!["kube-system".to_string()];
        if ns != "kube-system" {
            excluded.push(ns.clone());
        }
        Ok(Some(WebhookConfig {
            addr: self.webhook_addr,
            namespace: ns,
            settings: Settings {
                endpoint,
                failure_policy: self.webhook_failure_policy,
                selection: self.webhook_namespaces,
                excluded,
                only: namespaces
                    .iter()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
                timeout_seconds: self.webhook_timeout_seconds,
                owner: self.webhook_configuration_owner,
            },
            policy: Policy {
                leaf_validity: self.webhook_cert_validity,
                ca_validity: Duration::from_secs(10 * 365 * 86400),
                names,
            },
            native: self.webhook_native_sidecars,
            shutdown_delay: self.webhook_shutdown_delay,
            check_secrets: self.webhook_check_secrets,
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        w: WebhookArgs,
    }

    fn cfg(args: &[&str]) -> anyhow::Result<Option<WebhookConfig>> {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        T::try_parse_from(all)?.w.to_config(&[])
    }

    #[test]
    fn off_by_default() {
        assert!(cfg(&[]).unwrap().is_none());
        assert!(cfg(&["--webhook", "false"]).unwrap().is_none());
        assert!(cfg(&["--webhook"]).unwrap().is_some());
    }

    #[test]
    fn defaults_serve_through_the_service_and_ignore_failures() {
        let c = cfg(&["--webhook", "true"]).unwrap().unwrap();
        assert_eq!(c.settings.failure_policy, FailurePolicy::Ignore);
        assert_eq!(c.settings.selection, Selection::OptOut);
        assert_eq!(c.settings.excluded, ["kube-system", "tessera-system"]);
        assert_eq!(
            c.policy.names[0],
            "tessera-operator-webhook.tessera-system.svc"
        );
        assert_eq!(c.policy.leaf_validity, Duration::from_secs(86400));
        assert_eq!(c.native, NativeSidecars::Auto);
    }

    #[test]
    fn a_url_puts_its_host_in_the_certificate() {
        let c = cfg(&["--webhook=true", "--webhook-url", "https://127.0.0.1:9443"])
            .unwrap()
            .unwrap();
        assert_eq!(c.policy.names, ["127.0.0.1"]);
        assert_eq!(
            c.settings.endpoint,
            Endpoint::Url("https://127.0.0.1:9443".into())
        );
        let c = cfg(&["--webhook=true", "--webhook-url", "https://[::1]:9443"])
            .unwrap()
            .unwrap();
        assert_eq!(c.policy.names, ["::1"]);
        for bad in ["http://x:1", "https://u@x:1", "https://x:1/?q", "https://"] {
            assert!(
                cfg(&["--webhook=true", "--webhook-url", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_and_bad_values() {
        assert_eq!(parse_cert_validity("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_cert_validity("2d"), Ok(Duration::from_secs(172800)));
        assert!(
            parse_cert_validity("10s")
                .unwrap_err()
                .contains("at least 30s")
        );
        assert_eq!(parse_shutdown_delay("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_shutdown_delay("5s"), Ok(Duration::from_secs(5)));
        assert!(
            parse_shutdown_delay("2m")
                .unwrap_err()
                .contains("at most 60s")
        );
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(cfg(&["--webhook=true", "--webhook-timeout-seconds", "31"]).is_err());
        assert!(cfg(&["--webhook=true", "--webhook-failure-policy", "maybe"]).is_err());
    }
}
