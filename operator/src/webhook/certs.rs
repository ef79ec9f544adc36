//! Keeps the certificate Secret, the served certificate and the webhook
//! configuration's CA bundle in step.
//!
//! Every replica re-reads the Secret each `check_interval` and swaps in a
//! new serving certificate. The leader also makes and renews the
//! certificates ([`tls::renew`]) and applies the configuration with the
//! bundle *before* loading a certificate from a new CA.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use tokio::sync::watch;

use super::WebhookMetrics;
use super::config::{self, Settings};
use super::tls::{self, Change, Pki, Policy, Resolver};
use crate::kinds::shared::{LABEL_MANAGED_BY, LABEL_PART_OF, MANAGER};

/// The Secret holding the CA and the serving certificate.
pub const SECRET: &str = "tessera-operator-webhook-certs";

/// The configuration is applied again at least this often, so that a
/// hand edit (or a deleted configuration) is repaired.
const REAPPLY: Duration = Duration::from_secs(300);

pub struct CertManager {
    pub client: Client,
    pub namespace: String,
    pub policy: Policy,
    pub settings: Settings,
    pub resolver: Arc<Resolver>,
    pub leading: Arc<AtomicBool>,
    pub metrics: WebhookMetrics,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

impl CertManager {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let configs: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let mut applied: Option<(String, Instant)> = None;
        let mut recent_ca: Option<String> = None;
        loop {
            if let Err(e) = self
                .tick(&secrets, &configs, &mut applied, &mut recent_ca)
                .await
            {
                tracing::warn!(error = %e, "webhook certificates");
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(self.policy.check_interval()) => {}
            }
        }
    }

    async fn tick(
        &self,
        secrets: &Api<Secret>,
        configs: &Api<MutatingWebhookConfiguration>,
        applied: &mut Option<(String, Instant)>,
        recent_ca: &mut Option<String>,
    ) -> anyhow::Result<()> {
        let secret = secrets.get_opt(SECRET).await?;
        let mut pki = secret
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(Pki::from_data);
        let leading = self.leading.load(Ordering::SeqCst);
        if leading {
            if let Some((new, change)) =
                tls::renew(pki.as_ref(), &self.policy, now(), recent_ca.as_deref())?
            {
                let data = new.to_data();
                let written = match &secret {
                    None => {
                        let s = Secret {
                            metadata: ObjectMeta {
                                name: Some(SECRET.into()),
                                namespace: Some(self.namespace.clone()),
                                labels: Some(
                                    [
                                        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
                                        (LABEL_PART_OF.to_string(), "tessera".to_string()),
                                    ]
                                    .into(),
                                ),
                                ..Default::default()
                            },
                            type_: Some("Opaque".into()),
                            data: Some(data),
                            ..Default::default()
                        };
                        secrets.create(&PostParams::default(), &s).await
                    }
                    Some(old) => {
                        // resourceVersion makes a concurrent writer lose
                        // with 409; the next tick starts from its result.
                        let mut s = old.clone();
                        s.data = Some(data);
                        s.string_data = None;
                        secrets.replace(SECRET, &PostParams::default(), &s).await
                    }
                };
                match written {
                    Ok(_) => {
                        tracing::info!(?change, "webhook certificates written");
                        self.metrics
                            .rotations
                            .with_label_values(&[change_label(change)])
                            .inc();
                        pki = Some(new);
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(p) = &pki {
                let bundle = p.ca_bundle();
                let due = match applied {
                    Some((b, at)) => *b != bundle || at.elapsed() >= REAPPLY,
                    None => true,
                };
                if due && self.apply(configs, &bundle).await? {
                    *applied = Some((bundle, Instant::now()));
                }
            }
        } else {
            *applied = None;
        }
        if let Some(p) = &pki {
            if self
                .resolver
                .load(&p.cert, &p.key)
                .map_err(anyhow::Error::msg)?
            {
                tracing::info!("serving a new webhook certificate");
                if let Some(info) = tls::inspect(&p.cert) {
                    self.metrics.cert_expiry.set(info.not_after);
                }
            }
            *recent_ca = Some(p.ca_cert.clone());
        }
        Ok(())
    }

    /// Applies the configuration with `bundle`; false when it must wait.
    async fn apply(
        &self,
        configs: &Api<MutatingWebhookConfiguration>,
        bundle: &str,
    ) -> anyhow::Result<bool> {
        if self.settings.owner == config::Owner::Installer
            && configs.get_opt(config::CONFIGURATION).await?.is_none()
        {
            // Creating it would leave an object the installer does not
            // know, and that outlives an uninstall.
            tracing::warn!(
                name = config::CONFIGURATION,
                "waiting for the installer to create the MutatingWebhookConfiguration \
                 (--webhook-configuration-owner=installer)"
            );
            return Ok(false);
        }
        let desired = config::build(&self.settings, bundle);
        configs
            .patch(
                config::CONFIGURATION,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await?;
        tracing::info!(
            name = config::CONFIGURATION,
            "applied the webhook configuration"
        );
        Ok(true)
    }
}

fn change_label(c: Change) -> &'static str {
    match c {
        Change::Created => "created",
        Change::CaRotated => "ca_rotated",
        Change::PreviousCaDropped => "previous_ca_dropped",
        Change::LeafRenewed => "leaf_renewed",
    }
}
