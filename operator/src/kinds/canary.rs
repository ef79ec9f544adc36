//! `Canary`: a kind that exists only in tests, to show that a kind plugs
//! in with one module and one line in a kind list, and to exercise what
//! Ensemble does not: two components (controllers and brokers, as Broker
//! will have) and a referenced Secret (as ShardedStore's auth).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Secret};
use kube::api::ObjectMeta;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};
use tessera_api::{CommonSpec, CommonStatus, Invalid};

use crate::kinds::shared::{self, ClaimSettings, Identity, PodSettings, StatefulSetParts};
use crate::reconcile::child::{BuildContext, Child, Desired};
use crate::reconcile::{Component, Managed, Observed, RefKind, Reference};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "test.tessera.dev",
    version = "v1",
    kind = "Canary",
    namespaced,
    status = "CanaryStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    pub controllers: i32,
    pub brokers: i32,
    /// A Secret the pods read; a change to it reconciles the Canary.
    #[serde(default)]
    pub auth_secret: Option<String>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CanaryStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
}

#[derive(Debug)]
pub struct ValidCanary {
    name: String,
    counts: [(&'static str, i32); 2],
    /// The Secret's resourceVersion, so that a changed Secret rolls the pods.
    secret_version: String,
    pod: PodSettings,
}

impl Managed for Canary {
    type Status = CanaryStatus;
    type Valid = ValidCanary;
    type Live = ();
    const METRIC_KIND: &'static str = "canary";
    const REFERENCES: &'static [RefKind] = &[RefKind::Secret];

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn components(&self) -> Vec<Component> {
        let name = self.name_any();
        vec![
            Component {
                identity: Identity::new("canary", &name, "controller"),
                desired: self.spec.controllers,
                noun: "controllers",
            },
            Component {
                identity: Identity::new("canary", &name, "broker"),
                desired: self.spec.brokers,
                noun: "brokers",
            },
        ]
    }

    fn references(&self) -> Vec<Reference> {
        self.spec
            .auth_secret
            .iter()
            .map(|name| Reference {
                kind: RefKind::Secret,
                name: name.clone(),
            })
            .collect()
    }

    fn validate(&self, _: &BuildContext, observed: &Observed) -> Result<ValidCanary, Invalid> {
        let CanarySpec {
            controllers,
            brokers,
            auth_secret: _,
            common,
        } = &self.spec;
        let mut secret_version = String::new();
        for (r, meta) in &observed.references {
            match meta {
                Some(m) => secret_version = m.resource_version.clone().unwrap_or_default(),
                None => {
                    return Err(Invalid::Rule {
                        path: "spec.authSecret".into(),
                        message: format!("Secret {:?} does not exist", r.name),
                    });
                }
            }
        }
        Ok(ValidCanary {
            name: self.name_any(),
            counts: [("controller", *controllers), ("broker", *brokers)],
            secret_version,
            pod: PodSettings {
                resources: common.resources.clone(),
                storage: ClaimSettings::from_spec(&common.storage),
                template: common.pod_template.clone(),
                adapter: false,
            },
        })
    }

    fn build(valid: &ValidCanary, ctx: &BuildContext) -> Desired {
        let children = valid
            .counts
            .iter()
            .map(|(component, replicas)| {
                let id = Identity::new("canary", &valid.name, component);
                let name = format!("{}-{component}", valid.name);
                let mut containers = vec![Container {
                    name: "engine".into(),
                    image: Some("canary:test".into()),
                    ..Default::default()
                }];
                containers.extend(shared::helpers(&ctx.tessera_image, "canary", 1, &[], false));
                Child::StatefulSet(shared::statefulset(StatefulSetParts {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(id.labels()),
                        ..Default::default()
                    },
                    id: &id,
                    replicas: *replicas,
                    service_name: name,
                    containers,
                    volumes: vec![],
                    uid: 1000,
                    checksum: &valid.secret_version,
                    pod: &valid.pod,
                }))
            })
            .collect();
        Desired { children }
    }

    fn status(&self) -> Option<&CanaryStatus> {
        self.status.as_ref()
    }

    fn common_status(status: &CanaryStatus) -> &CommonStatus {
        &status.common
    }

    fn make_status(&self, common: CommonStatus, _: &Observed, _: &()) -> CanaryStatus {
        CanaryStatus { common }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::PartialObjectMeta;
    use kube::runtime::events::{Recorder, Reporter};
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher;
    use serde_json::json;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    use tessera_api::Ensemble;

    use crate::reconcile::observed::dereference;
    use crate::reconcile::status::Facts;
    use crate::reconcile::tests::{scripted, step};
    use crate::runtime::metrics::Metrics;
    use crate::runtime::registry::{Kind, Registry, Settings, kind, users};

    /// A kind alone, and the same list plus the test kind: one more line.
    const ENSEMBLE_ONLY: &[Kind] = &[kind::<Ensemble>()];
    const WITH_CANARY: &[Kind] = &[kind::<Ensemble>(), kind::<Canary>()];

    fn canary(name: &str, secret: Option<&str>) -> Canary {
        let mut c = Canary::new(
            name,
            CanarySpec {
                controllers: 3,
                brokers: 2,
                auth_secret: secret.map(String::from),
                common: Default::default(),
            },
        );
        c.metadata.namespace = Some("demo".into());
        c.metadata.uid = Some(format!("uid-{name}"));
        c
    }

    fn settings(metrics: Arc<Metrics>) -> Settings {
        // Nothing is sent: the registry only builds its streams here.
        let (client, _, _) = scripted(vec![]);
        Settings {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: "tessera-operator".into(),
                    instance: None,
                },
            ),
            client,
            build: BuildContext::for_tests(),
            metrics,
            resync: Duration::from_secs(300),
            concurrency: 1,
            leading: Arc::new(AtomicBool::new(true)),
            synced: Arc::new(AtomicBool::new(false)),
            stop: tokio::sync::watch::channel(false).1,
        }
    }

    fn watches(metrics: &Metrics) -> BTreeMap<String, i64> {
        [
            "statefulsets",
            "services",
            "configmaps",
            "poddisruptionbudgets",
            "pods",
            "secrets-metadata",
            "ensembles",
            "canaries",
        ]
        .into_iter()
        .map(|r| (r.to_string(), metrics.watches.with_label_values(&[r]).get()))
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    #[tokio::test]
    async fn a_kind_plugs_in_with_one_line_and_shares_the_child_watches() {
        let production = Registry::new(
            settings(Arc::new(Metrics::new())),
            Some("demo"),
            crate::kinds::KINDS,
        );
        assert_eq!(production.kinds(), ["ensemble", "shardedstore", "broker"]);
        let alone = Arc::new(Metrics::new());
        let r = Registry::new(settings(alone.clone()), Some("demo"), ENSEMBLE_ONLY);
        assert_eq!(r.kinds(), ["ensemble"]);
        let both = Arc::new(Metrics::new());
        let r = Registry::new(settings(both.clone()), Some("demo"), WITH_CANARY);
        assert_eq!(r.kinds(), ["ensemble", "canary"]);
        // One watch per child type with one kind or two; the second kind
        // adds only its own resources and the Secrets it references.
        let mut expected = watches(&alone);
        assert_eq!(
            expected.values().filter(|n| **n != 1).count(),
            0,
            "{expected:?}"
        );
        assert_eq!(
            expected.len(),
            6,
            "five child types and ensembles: {expected:?}"
        );
        expected.insert("canaries".into(), 1);
        expected.insert("secrets-metadata".into(), 1);
        assert_eq!(watches(&both), expected);
    }

    #[test]
    fn a_changed_secret_reconciles_the_resources_that_reference_it() {
        let (store, mut writer) = reflector::store::<Canary>();
        for c in [
            canary("a", Some("auth")),
            canary("b", Some("other")),
            canary("c", None),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(c));
        }
        let mapper = users::<Canary, Secret>(store, RefKind::Secret);
        let secret = |ns: &str| {
            Arc::new(PartialObjectMeta::<Secret> {
                metadata: ObjectMeta {
                    name: Some("auth".into()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        assert_eq!(
            mapper(secret("demo")),
            vec![ObjectRef::new("a").within("demo")]
        );
        assert!(
            mapper(secret("elsewhere")).is_empty(),
            "same name, other namespace"
        );
    }

    /// Each component is counted against its own desired number, from its
    /// own StatefulSet and pods, and validation reads the referenced Secret
    /// from the cache.
    #[tokio::test]
    async fn components_are_observed_separately_and_references_are_read() {
        let (client, _, _) = scripted(vec![]);
        let (ctx, _) = crate::reconcile::tests::context(client);
        let mut stores = ctx.stores.clone();
        let (sts, mut sts_w) = reflector::store::<StatefulSet>();
        let (secrets, mut secrets_w) = reflector::store::<PartialObjectMeta<Secret>>();
        stores.statefulsets = sts;
        stores.secrets = Some(secrets);
        let c = canary("k", Some("auth"));
        let desired = {
            let mut obs = Observed::default();
            obs.references.insert(
                Reference {
                    kind: RefKind::Secret,
                    name: "auth".into(),
                },
                Some(ObjectMeta::default()),
            );
            Canary::build(&c.validate(&ctx.build, &obs).unwrap(), &ctx.build)
        };
        for (child, ready) in desired.children.into_iter().zip([3, 1]) {
            let Child::StatefulSet(mut s) = child else {
                panic!("statefulsets only")
            };
            s.metadata.namespace = Some("demo".into());
            s.metadata.owner_references = Some(vec![OwnerReference {
                uid: "uid-k".into(),
                controller: Some(true),
                ..Default::default()
            }]);
            s.status = Some(StatefulSetStatus {
                replicas: s.spec.as_ref().unwrap().replicas.unwrap(),
                ready_replicas: Some(ready),
                ..Default::default()
            });
            sts_w.apply_watcher_event(&watcher::Event::Apply(s));
        }
        let observed = dereference(&c, &stores);
        // Missing Secret: refused, naming it.
        let err = c.validate(&ctx.build, &observed).unwrap_err();
        assert!(err.to_string().contains("\"auth\""), "{err}");

        let facts = Facts::observe(Some(1), false, None, &observed);
        let counts: Vec<(i32, i32)> = facts
            .components
            .iter()
            .map(|c| (c.desired, c.ready))
            .collect();
        assert_eq!(counts, [(3, 3), (2, 1)]);

        secrets_w.apply_watcher_event(&watcher::Event::Apply(PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                name: Some("auth".into()),
                namespace: Some("demo".into()),
                resource_version: Some("42".into()),
                ..Default::default()
            },
            ..Default::default()
        }));
        let observed = dereference(&c, &stores);
        let valid = c
            .validate(&ctx.build, &observed)
            .expect("the Secret exists");
        assert_eq!(valid.secret_version, "42");
    }

    /// Deletion removes the claims of both components.
    #[tokio::test]
    async fn deletion_lists_the_claims_of_every_component() {
        let mut c = canary("k", None);
        c.spec.common.storage.delete_claims_on_delete = true;
        c.metadata.resource_version = Some("3".into());
        c.metadata.finalizers = Some(vec![crate::reconcile::finalizer::FINALIZER.into()]);
        let empty = json!({"kind": "PersistentVolumeClaimList", "apiVersion": "v1", "metadata": {}, "items": []});
        let claims = "/api/v1/namespaces/demo/persistentvolumeclaims";
        let (client, seen, server) = scripted(vec![
            step(Method::GET, claims, 200, Some(empty.clone())),
            step(Method::GET, claims, 200, Some(empty)),
            step(
                Method::PATCH,
                "/apis/test.tessera.dev/v1/namespaces/demo/canaries/k",
                200,
                Some(serde_json::to_value(&c).unwrap()),
            ),
        ]);
        let (ctx, _) = crate::reconcile::tests::context(client);
        crate::reconcile::finalizer::cleanup(&c, &ctx)
            .await
            .expect("cleanup");
        server.abort();
        let seen = seen.lock().unwrap();
        assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
        assert_eq!(seen.requests.len(), 3);
    }
}
