//! The MutatingWebhookConfiguration the leader applies (server-side apply,
//! field manager `tessera-operator`), with the CA bundle. Pure builder.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::ObjectMeta;

use super::spec::INJECT;
use crate::kinds::shared::{LABEL_MANAGED_BY, LABEL_PART_OF, MANAGER};

/// The name of the configuration and of its one webhook.
pub const CONFIGURATION: &str = "tessera-operator";
pub const WEBHOOK: &str = "inject.tessera.dev";
/// The path the operator serves AdmissionReviews on.
pub const PATH: &str = "/inject";
/// The namespace label that opts in (`enabled`) or out (`disabled`).
pub const NAMESPACE_LABEL: &str = "tessera.dev/injection";

/// Which namespaces the API server sends pods from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Selection {
    /// Every namespace but those labelled `tessera.dev/injection=disabled`.
    OptOut,
    /// Only namespaces labelled `tessera.dev/injection=enabled`.
    OptIn,
}

/// The label values of [`NAMESPACE_LABEL`].
const OPTED_OUT: &str = "disabled";
const OPTED_IN: &str = "enabled";

impl Selection {
    /// Whether the webhook's namespace selector takes a namespace with
    /// these labels: the rule of the `tessera.dev/injection` expression that
    /// [`build`] puts in the selector, for those who must tell
    /// without asking the API server (the reporter of missing injections).
    pub fn selects(self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(NAMESPACE_LABEL).map(String::as_str);
        match self {
            Selection::OptOut => value != Some(OPTED_OUT),
            Selection::OptIn => value == Some(OPTED_IN),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    Ignore,
    Fail,
}

/// Who creates (and deletes) the configuration object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Owner {
    /// The operator creates it and labels it as its own; removing the
    /// operator leaves it behind (docs/injection.md says how to delete it).
    Operator,
    /// The installer (the Helm chart) creates it and deletes it on
    /// uninstall; the operator only fills in its webhook and CA bundle,
    /// and waits while the object does not exist.
    Installer,
}

/// How the API server reaches the webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://host:port` (the path is appended).
    Url(String),
    /// A Service in the operator's namespace, port 443.
    Service { name: String, namespace: String },
}

/// What the configuration says besides the CA bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: Endpoint,
    pub failure_policy: FailurePolicy,
    pub selection: Selection,
    /// Never injected: kube-system and the operator's namespace.
    pub excluded: Vec<String>,
    /// When the operator watches only some namespaces, only those.
    pub only: Vec<String>,
    pub timeout_seconds: i32,
    pub owner: Owner,
}

pub fn build(s: &Settings, ca_bundle: &str) -> MutatingWebhookConfiguration {
    let client_config = match &s.endpoint {
        Endpoint::Url(base) => WebhookClientConfig {
            url: Some(format!("{}{PATH}", base.trim_end_matches('/'))),
            ca_bundle: Some(ByteString(ca_bundle.as_bytes().to_vec())),
            ..Default::default()
        },
        Endpoint::Service { name, namespace } => WebhookClientConfig {
            service: Some(ServiceReference {
                name: name.clone(),
                namespace: namespace.clone(),
                path: Some(PATH.into()),
                port: Some(443),
            }),
            ca_bundle: Some(ByteString(ca_bundle.as_bytes().to_vec())),
            ..Default::default()
        },
    };
    let req = |key: &str, operator: &str, values: &[String]| LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: Some(values.to_vec()),
    };
    let name_label = "kubernetes.io/metadata.name";
    let mut exprs = vec![req(name_label, "NotIn", &s.excluded)];
    if !s.only.is_empty() {
        exprs.push(req(name_label, "In", &s.only));
    }
    exprs.push(match s.selection {
        Selection::OptOut => req(NAMESPACE_LABEL, "NotIn", &[OPTED_OUT.into()]),
        Selection::OptIn => req(NAMESPACE_LABEL, "In", &[OPTED_IN.into()]),
    });
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIGURATION.into()),
            // An installer's object keeps the installer's labels: owning
            // them would flip `managed-by` back and forth with every
            // upgrade.
            labels: (s.owner == Owner::Operator).then(|| {
                BTreeMap::from([
                    (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
                    (LABEL_PART_OF.to_string(), "tessera".to_string()),
                ])
            }),
            ..Default::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: WEBHOOK.into(),
            admission_review_versions: vec!["v1".into()],
            client_config,
            side_effects: "None".into(),
            failure_policy: Some(
                match s.failure_policy {
                    FailurePolicy::Ignore => "Ignore",
                    FailurePolicy::Fail => "Fail",
                }
                .into(),
            ),
            // Later webhooks may add containers; we are called again and
            // add nothing twice.
            reinvocation_policy: Some("IfNeeded".into()),
            match_policy: Some("Equivalent".into()),
            timeout_seconds: Some(s.timeout_seconds),
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(exprs),
                ..Default::default()
            }),
            // Only pods that ask are sent at all: no latency, and no
            // dependency on the webhook, for every other pod.
            match_conditions: Some(vec![MatchCondition {
                name: "asks-for-injection".into(),
                expression: format!(
                    "has(object.metadata.annotations) && '{INJECT}' in object.metadata.annotations"
                ),
            }]),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["pods".into()]),
                scope: Some("Namespaced".into()),
            }]),
            ..Default::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            endpoint: Endpoint::Service {
                name: "tessera-operator-webhook".into(),
                namespace: "tessera-system".into(),
            },
            failure_policy: FailurePolicy::Ignore,
            selection: Selection::OptOut,
            excluded: vec!["kube-system".into(), "tessera-system".into()],
            only: vec![],
            timeout_seconds: 5,
            owner: Owner::Operator,
        }
    }

    #[test]
    fn defaults_ignore_failures_and_exclude_system_namespaces() {
        let c = build(&settings(), "CA");
        let w = &c.webhooks.unwrap()[0];
        assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));
        assert_eq!(w.side_effects, "None");
        let svc = w.client_config.service.as_ref().unwrap();
        assert_eq!(
            (svc.path.as_deref(), svc.port),
            (Some("/inject"), Some(443))
        );
        assert_eq!(w.client_config.ca_bundle.as_ref().unwrap().0, b"CA");
        assert_eq!(
            c.metadata.labels.unwrap()[LABEL_MANAGED_BY],
            "tessera-operator"
        );
        let exprs = w
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .clone()
            .unwrap();
        assert_eq!(exprs[0].operator, "NotIn");
        assert_eq!(
            exprs[0].values.as_deref().unwrap(),
            ["kube-system", "tessera-system"]
        );
        assert_eq!(
            (exprs[1].key.as_str(), exprs[1].operator.as_str()),
            (NAMESPACE_LABEL, "NotIn")
        );
        assert!(
            w.match_conditions.as_ref().unwrap()[0]
                .expression
                .contains("'tessera.dev/inject' in object.metadata.annotations")
        );
    }

    /// `Selection::selects` must say what the API server decides from the
    /// selector `build` writes: evaluate that requirement (In / NotIn, where
    /// NotIn takes a namespace without the label) for every kind of value.
    #[test]
    fn selects_agrees_with_the_namespace_selector() {
        for selection in [Selection::OptOut, Selection::OptIn] {
            let mut s = settings();
            s.selection = selection;
            let w = &build(&s, "CA").webhooks.unwrap()[0];
            let exprs = w
                .namespace_selector
                .clone()
                .unwrap()
                .match_expressions
                .unwrap();
            let req = exprs.iter().find(|e| e.key == NAMESPACE_LABEL).unwrap();
            for value in [None, Some("disabled"), Some("enabled"), Some("yes")] {
                let labels: BTreeMap<String, String> = value
                    .map(|v| (NAMESPACE_LABEL.to_string(), v.to_string()))
                    .into_iter()
                    .collect();
                let listed =
                    value.is_some_and(|v| req.values.as_ref().unwrap().iter().any(|x| x == v));
                let api_server = match req.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    other => panic!("unexpected operator {other}"),
                };
                assert_eq!(
                    selection.selects(&labels),
                    api_server,
                    "{selection:?} with {NAMESPACE_LABEL}={value:?}"
                );
            }
        }
    }

    #[test]
    fn opt_in_url_fail_and_watched_namespaces() {
        let mut s = settings();
        s.endpoint = Endpoint::Url("https://127.0.0.1:8443/".into());
        s.selection = Selection::OptIn;
        s.failure_policy = FailurePolicy::Fail;
        s.only = vec!["app".into()];
        let c = build(&s, "CA");
        let w = &c.webhooks.unwrap()[0];
        assert_eq!(
            w.client_config.url.as_deref(),
            Some("https://127.0.0.1:8443/inject")
        );
        assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
        let exprs = w
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .clone()
            .unwrap();
        assert_eq!(
            (exprs[1].operator.as_str(), exprs[1].values.clone().unwrap()),
            ("In", vec!["app".to_string()])
        );
        assert_eq!(
            (exprs[2].operator.as_str(), exprs[2].values.clone().unwrap()),
            ("In", vec!["enabled".to_string()])
        );
    }

    #[test]
    fn an_installers_configuration_keeps_the_installers_labels() {
        let mut s = settings();
        s.owner = Owner::Installer;
        let c = build(&s, "CA");
        assert_eq!(c.metadata.labels, None);
        assert_eq!(c.webhooks.unwrap()[0].name, WEBHOOK);
    }
}
