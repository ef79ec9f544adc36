//! The webhook's certificates, made by the operator itself: a CA and a
//! serving certificate signed by it, kept in a Secret. Pure decisions
//! ([`renew`]) on what to rotate, and a rustls resolver that swaps the
//! serving certificate in place, so a renewal needs no restart.
//!
//! Rotation, with overlap:
//! - the serving certificate is renewed when a third of its validity is
//!   left (default validity 24 h: renewed after 16 h), signed by the same
//!   CA, so the `caBundle` does not change and every replica's old
//!   certificate stays valid while they reload;
//! - the CA (10 years) is replaced when a tenth of its validity is left;
//!   the old one stays in the bundle (`ca-previous.crt`) until it expires,
//!   and the serving certificate is only re-signed by the new CA at its
//!   next renewal, after the bundle with both CAs was written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const CA_PREVIOUS: &str = "ca-previous.crt";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// How long certificates live and which names the serving one carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub leaf_validity: Duration,
    pub ca_validity: Duration,
    /// DNS names and IP addresses of the serving certificate.
    pub names: Vec<String>,
}

impl Policy {
    /// How often replicas re-read the Secret and the leader checks expiry:
    /// often enough that a renewal reaches every replica long before the
    /// old certificate expires.
    pub fn check_interval(&self) -> Duration {
        (self.leaf_validity / 12).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// The contents of the Secret, as PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pki {
    pub ca_cert: String,
    pub ca_key: String,
    pub previous_ca: Option<String>,
    pub cert: String,
    pub key: String,
}

impl Pki {
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Option<Pki> {
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|s| !s.trim().is_empty())
        };
        Some(Pki {
            ca_cert: text(CA_CRT)?,
            ca_key: text(CA_KEY)?,
            previous_ca: text(CA_PREVIOUS),
            cert: text(TLS_CRT)?,
            key: text(TLS_KEY)?,
        })
    }

    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let mut d = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            d.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
        };
        put(CA_CRT, &self.ca_cert);
        put(CA_KEY, &self.ca_key);
        put(TLS_CRT, &self.cert);
        put(TLS_KEY, &self.key);
        if let Some(p) = &self.previous_ca {
            put(CA_PREVIOUS, p);
        }
        d
    }

    /// What the API server must trust: the current CA, then the previous
    /// one while it is still valid.
    pub fn ca_bundle(&self) -> String {
        let mut b = self.ca_cert.trim_end().to_string();
        b.push('\n');
        if let Some(p) = &self.previous_ca {
            b.push_str(p.trim_end());
            b.push('\n');
        }
        b
    }
}

/// The parts of a certificate the rotation looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
}

pub fn inspect(pem: &str) -> Option<CertInfo> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names
                        .push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    names.sort();
    Some(CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
    })
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// A new self-signed CA valid from `now` (a minute early, for clock skew).
pub fn new_ca(now: i64, validity: Duration) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    // The time in the name tells CAs apart: the serving certificate's
    // issuer must name exactly one of them.
    p.distinguished_name.push(
        DnType::CommonName,
        format!("tessera-operator webhook CA {now}"),
    );
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = at(now - 60);
    p.not_after = at(now + secs(validity));
    let cert = p.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names`, signed by the CA.
pub fn issue(
    ca_cert: &str,
    ca_key: &str,
    names: &[String],
    now: i64,
    validity: Duration,
) -> Result<(String, String), rcgen::Error> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key)?)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name
        .push(DnType::CommonName, "tessera-operator webhook");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = at(now - 60);
    p.not_after = at(now + secs(validity));
    let cert = p.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Why [`renew`] changed something: for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    CaRotated,
    PreviousCaDropped,
    LeafRenewed,
}

/// The leader's decision: `None` keeps `current`; otherwise the new
/// contents of the Secret and why. `recent_ca` is a CA this process served
/// with before (kept as the previous CA when the Secret was lost).
pub fn renew(
    current: Option<&Pki>,
    policy: &Policy,
    now: i64,
    recent_ca: Option<&str>,
) -> Result<Option<(Pki, Change)>, rcgen::Error> {
    let parsed = current.and_then(|p| Some((p, inspect(&p.ca_cert)?, inspect(&p.cert)?)));
    let Some((pki, ca, leaf)) = parsed.filter(|(_, ca, _)| ca.not_after > now) else {
        let (ca_cert, ca_key) = new_ca(now, policy.ca_validity)?;
        let (cert, key) = issue(&ca_cert, &ca_key, &policy.names, now, policy.leaf_validity)?;
        let previous_ca = recent_ca
            .filter(|p| inspect(p).is_some_and(|i| i.not_after > now))
            .map(str::to_string);
        return Ok(Some((
            Pki {
                ca_cert,
                ca_key,
                previous_ca,
                cert,
                key,
            },
            Change::Created,
        )));
    };
    if ca.not_after - now < secs(policy.ca_validity) / 10 {
        let (ca_cert, ca_key) = new_ca(now, policy.ca_validity)?;
        // The serving certificate stays (signed by the old CA, still in the
        // bundle) until its next renewal.
        return Ok(Some((
            Pki {
                ca_cert,
                ca_key,
                previous_ca: Some(pki.ca_cert.clone()),
                cert: pki.cert.clone(),
                key: pki.key.clone(),
            },
            Change::CaRotated,
        )));
    }
    let previous = pki.previous_ca.as_deref().and_then(inspect);
    let mut wanted_names = policy.names.clone();
    wanted_names.sort();
    let trusted_issuer = leaf.issuer == ca.subject
        || previous
            .as_ref()
            .is_some_and(|p| p.not_after > now && leaf.issuer == p.subject);
    let leaf_life = (leaf.not_after - leaf.not_before).max(1);
    // A certificate made for a longer validity than asked for now (the
    // flag changed) is replaced too; 120 s allow for the backdating.
    if leaf.not_after - now < leaf_life.min(secs(policy.leaf_validity)) / 3
        || leaf_life > secs(policy.leaf_validity) + 120
        || !trusted_issuer
        || leaf.names != wanted_names
    {
        let (cert, key) = issue(
            &pki.ca_cert,
            &pki.ca_key,
            &policy.names,
            now,
            policy.leaf_validity,
        )?;
        return Ok(Some((
            Pki {
                cert,
                key,
                ..pki.clone()
            },
            Change::LeafRenewed,
        )));
    }
    if previous.as_ref().is_some_and(|p| p.not_after <= now)
        || (pki.previous_ca.is_some() && previous.is_none())
    {
        return Ok(Some((
            Pki {
                previous_ca: None,
                ..pki.clone()
            },
            Change::PreviousCaDropped,
        )));
    }
    Ok(None)
}

/// The serving certificate, swapped atomically; handshakes pick up a new
/// one at once.
#[derive(Debug, Default)]
pub struct Resolver {
    current: ArcSwapOption<CertifiedKey>,
    pem: ArcSwapOption<String>,
}

impl Resolver {
    /// Loads `cert` and `key` unless they are already served. Returns true
    /// when the certificate changed.
    pub fn load(&self, cert: &str, key: &str) -> Result<bool, String> {
        if self.pem.load().as_deref().map(String::as_str) == Some(cert) {
            return Ok(false);
        }
        let der = |pem: &str| {
            x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .map(|(_, p)| p.contents)
                .map_err(|e| format!("not PEM: {e}"))
        };
        let cert_der = CertificateDer::from(der(cert)?);
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der(key)?));
        let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
            .map_err(|e| format!("unusable key: {e}"))?;
        self.current
            .store(Some(Arc::new(CertifiedKey::new(vec![cert_der], signing))));
        self.pem.store(Some(Arc::new(cert.to_string())));
        Ok(true)
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// The PEM being served.
    pub fn serving(&self) -> Option<String> {
        self.pem.load().as_deref().cloned()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const NOW: i64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            leaf_validity: 24 * HOUR,
            ca_validity: 10 * 365 * 24 * HOUR,
            names: vec![
                "tessera-operator-webhook.tessera-system.svc".into(),
                "127.0.0.1".into(),
            ],
        }
    }

    fn fresh() -> Pki {
        renew(None, &policy(), NOW, None).unwrap().unwrap().0
    }

    #[test]
    fn a_fresh_pki_has_a_ca_and_a_serving_certificate_for_the_names() {
        let (pki, change) = renew(None, &policy(), NOW, None).unwrap().unwrap();
        assert_eq!(change, Change::Created);
        let ca = inspect(&pki.ca_cert).unwrap();
        let leaf = inspect(&pki.cert).unwrap();
        assert_eq!(leaf.issuer, ca.subject);
        assert_eq!(
            leaf.names,
            ["127.0.0.1", "tessera-operator-webhook.tessera-system.svc"]
        );
        assert_eq!(leaf.not_after, NOW + 24 * 3600);
        assert!(pki.previous_ca.is_none());
        assert_eq!(Pki::from_data(&pki.to_data()), Some(pki.clone()));
        assert!(Resolver::default().load(&pki.cert, &pki.key).unwrap());
    }

    #[test]
    fn nothing_changes_until_a_third_of_the_leaf_is_left() {
        let pki = fresh();
        assert_eq!(
            renew(Some(&pki), &policy(), NOW + 15 * 3600, None).unwrap(),
            None
        );
        let (renewed, change) = renew(Some(&pki), &policy(), NOW + 17 * 3600, None)
            .unwrap()
            .unwrap();
        assert_eq!(change, Change::LeafRenewed);
        assert_eq!(
            renewed.ca_cert, pki.ca_cert,
            "same CA: the bundle does not change"
        );
        assert_ne!(renewed.cert, pki.cert);
        assert_eq!(inspect(&renewed.cert).unwrap().not_after, NOW + 41 * 3600);
    }

    #[test]
    fn a_shorter_validity_reissues_the_leaf() {
        let pki = fresh();
        let mut p = policy();
        p.leaf_validity = Duration::from_secs(30);
        let (renewed, change) = renew(Some(&pki), &p, NOW + 10, None).unwrap().unwrap();
        assert_eq!(change, Change::LeafRenewed);
        assert_eq!(inspect(&renewed.cert).unwrap().not_after, NOW + 40);
        assert_eq!(renew(Some(&renewed), &p, NOW + 15, None).unwrap(), None);
        assert!(renew(Some(&renewed), &p, NOW + 31, None).unwrap().is_some());
    }

    #[test]
    fn new_names_reissue_the_leaf() {
        let pki = fresh();
        let mut p = policy();
        p.names.push("other.svc".into());
        let (renewed, change) = renew(Some(&pki), &p, NOW + 10, None).unwrap().unwrap();
        assert_eq!(change, Change::LeafRenewed);
        assert!(
            inspect(&renewed.cert)
                .unwrap()
                .names
                .contains(&"other.svc".to_string())
        );
    }

    #[test]
    fn the_ca_rotates_with_overlap_and_the_leaf_follows_later() {
        let pki = fresh();
        let late = NOW + 9 * 365 * 24 * 3600 + 200 * 24 * 3600;
        // Keep the leaf fresh at that time so that only the CA is due.
        let (cert, key) =
            issue(&pki.ca_cert, &pki.ca_key, &policy().names, late, 24 * HOUR).unwrap();
        let pki = Pki { cert, key, ..pki };
        let (rotated, change) = renew(Some(&pki), &policy(), late, None).unwrap().unwrap();
        assert_eq!(change, Change::CaRotated);
        assert_eq!(rotated.previous_ca.as_deref(), Some(pki.ca_cert.as_str()));
        assert_eq!(rotated.cert, pki.cert, "the old leaf is still served");
        assert!(rotated.ca_bundle().contains(pki.ca_cert.trim_end()));
        assert!(rotated.ca_bundle().starts_with(rotated.ca_cert.trim_end()));
        assert_eq!(
            renew(Some(&rotated), &policy(), late + 3600, None).unwrap(),
            None
        );
        // The leaf's renewal is signed by the new CA.
        let (renewed, change) = renew(Some(&rotated), &policy(), late + 17 * 3600, None)
            .unwrap()
            .unwrap();
        assert_eq!(change, Change::LeafRenewed);
        assert_eq!(
            inspect(&renewed.cert).unwrap().issuer,
            inspect(&rotated.ca_cert).unwrap().subject
        );
    }

    #[test]
    fn an_expired_previous_ca_is_dropped() {
        let pki = fresh();
        let (old, _) = new_ca(NOW - 7200, HOUR).unwrap();
        let with_old = Pki {
            previous_ca: Some(old),
            ..pki.clone()
        };
        let (clean, change) = renew(Some(&with_old), &policy(), NOW, None)
            .unwrap()
            .unwrap();
        assert_eq!(change, Change::PreviousCaDropped);
        assert_eq!(clean, pki);
    }

    #[test]
    fn garbage_or_an_expired_ca_starts_over_keeping_the_served_ca() {
        let pki = fresh();
        let broken = Pki {
            cert: "junk".into(),
            ..pki.clone()
        };
        let (new, change) = renew(Some(&broken), &policy(), NOW, Some(&pki.ca_cert))
            .unwrap()
            .unwrap();
        assert_eq!(change, Change::Created);
        assert_ne!(new.ca_cert, pki.ca_cert);
        assert_eq!(new.previous_ca.as_deref(), Some(pki.ca_cert.as_str()));
        let mut data = pki.to_data();
        data.remove(TLS_KEY);
        assert_eq!(Pki::from_data(&data), None);
    }

    #[test]
    fn a_leaf_from_an_unknown_ca_is_reissued() {
        let pki = fresh();
        let other = renew(None, &policy(), NOW + 1, None).unwrap().unwrap().0;
        let mixed = Pki {
            cert: other.cert,
            key: other.key,
            ..pki.clone()
        };
        let (fixed, change) = renew(Some(&mixed), &policy(), NOW + 2, None)
            .unwrap()
            .unwrap();
        assert_eq!(change, Change::LeafRenewed);
        assert_eq!(
            inspect(&fixed.cert).unwrap().issuer,
            inspect(&pki.ca_cert).unwrap().subject
        );
    }

    #[test]
    fn the_resolver_swaps_only_on_change() {
        let pki = fresh();
        let r = Resolver::default();
        assert!(!r.is_loaded());
        assert!(r.load(&pki.cert, &pki.key).unwrap());
        assert!(!r.load(&pki.cert, &pki.key).unwrap());
        assert!(r.load("junk", "junk").is_err());
        assert_eq!(r.serving().as_deref(), Some(pki.cert.as_str()));
    }

    #[test]
    fn the_check_interval_follows_the_validity() {
        let mut p = policy();
        assert_eq!(p.check_interval(), Duration::from_secs(60));
        p.leaf_validity = Duration::from_secs(60);
        assert_eq!(p.check_interval(), Duration::from_secs(5));
    }
}
