//! Which image each container runs.
//!
//! A resource's `spec.image` wins. Otherwise the engine's official image at
//! the resource's version, unless the operator was told to map that engine
//! elsewhere (`--engine-image redis=mirror.example/redis:{version}`): a
//! private mirror, or the images built from Debian packages for the tests.
//! The sidecar and the adapter run from Tessera's own image.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use tessera_api::images::{self, ImageContract};

/// Tessera's image at this operator's version.
pub fn default_tessera_image() -> String {
    format!(
        "{}:{}",
        images::TESSERA_REPOSITORY,
        env!("CARGO_PKG_VERSION")
    )
}

/// Placeholder in a mapped image that becomes the resource's version.
pub const VERSION_PLACEHOLDER: &str = "{version}";

/// Per-engine replacements of the official images.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineImages(BTreeMap<&'static str, String>);

impl EngineImages {
    /// The image for an engine at `version`, when no `spec.image` is set.
    pub fn resolve(&self, contract: &ImageContract, version: &str) -> String {
        match self.0.get(contract.engine) {
            Some(template) => template.replace(VERSION_PLACEHOLDER, version),
            None => contract.image(version),
        }
    }

    /// Adds one `ENGINE=IMAGE` mapping.
    pub fn insert(&mut self, mapping: EngineImage) {
        self.0.insert(mapping.engine, mapping.image);
    }
}

impl FromIterator<EngineImage> for EngineImages {
    fn from_iter<I: IntoIterator<Item = EngineImage>>(iter: I) -> Self {
        let mut images = EngineImages::default();
        for mapping in iter {
            images.insert(mapping);
        }
        images
    }
}

/// One `ENGINE=IMAGE` flag value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineImage {
    engine: &'static str,
    image: String,
}

/// Why an `--engine-image` value was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidEngineImage(String);

impl fmt::Display for InvalidEngineImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidEngineImage {}

impl FromStr for EngineImage {
    type Err = InvalidEngineImage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let engines = || {
            images::ALL
                .iter()
                .map(|c| c.engine)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some((engine, image)) = s.split_once('=') else {
            return Err(InvalidEngineImage(format!(
                "'{s}' is not ENGINE=IMAGE (engines: {})",
                engines()
            )));
        };
        let engine = engine.trim();
        let image = image.trim();
        let contract = images::contract(engine).ok_or_else(|| {
            InvalidEngineImage(format!(
                "unknown engine '{engine}' in '{s}' (engines: {})",
                engines()
            ))
        })?;
        if image.is_empty() || image.chars().any(char::is_whitespace) {
            return Err(InvalidEngineImage(format!(
                "'{s}' needs an image reference without spaces after '='"
            )));
        }
        Ok(EngineImage {
            engine: contract.engine,
            image: image.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapped_engines_get_the_official_image() {
        let images = EngineImages::default();
        assert_eq!(
            images.resolve(&images::ETCD, "3.5.17"),
            "quay.io/coreos/etcd:v3.5.17"
        );
    }

    #[test]
    fn a_mapping_replaces_the_image_and_may_keep_the_version() {
        let images: EngineImages = [
            "etcd=mirror.example/etcd:v{version}".parse().unwrap(),
            " zookeeper = tessera.local/zookeeper:bookworm"
                .parse()
                .unwrap(),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            images.resolve(&images::ETCD, "3.5.17"),
            "mirror.example/etcd:v3.5.17"
        );
        assert_eq!(
            images.resolve(&images::ZOOKEEPER, "3.9.3"),
            "tessera.local/zookeeper:bookworm"
        );
        assert_eq!(
            images.resolve(&images::REDIS, "7.4"),
            "docker.io/library/redis:7.4"
        );
    }

    #[test]
    fn bad_mappings_say_what_is_wrong() {
        let err = "mysql=mysql:8".parse::<EngineImage>().unwrap_err();
        assert!(err.0.contains("unknown engine 'mysql'"), "{err}");
        assert!(err.0.contains("redis, memcached, zookeeper, etcd, kafka"));
        let err = "redis".parse::<EngineImage>().unwrap_err();
        assert!(err.0.contains("not ENGINE=IMAGE"), "{err}");
        let err = "redis=".parse::<EngineImage>().unwrap_err();
        assert!(err.0.contains("needs an image"), "{err}");
        let err = "redis=a b".parse::<EngineImage>().unwrap_err();
        assert!(err.0.contains("without spaces"), "{err}");
    }

    #[test]
    fn the_tessera_image_is_at_the_operators_version() {
        assert_eq!(
            default_tessera_image(),
            format!("ghcr.io/tessera-dev/tessera:{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
