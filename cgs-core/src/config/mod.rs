//! Confidential-guest configuration in QEMU `-object` syntax.
//!
//! One typed configuration per QEMU object type, with QEMU's property names, defaults and checks:
//! [`SevGuestConfig`] (`sev-guest`), [`SevSnpGuestConfig`] (`sev-snp-guest`),
//! [`PefGuestConfig`] (`pef-guest`) and [`S390PvGuestConfig`] (`s390-pv-guest`). [`CgsConfig`] is
//! any of them:
//!
//! ```
//! use cgs_core::config::CgsConfig;
//!
//! let cfg: CgsConfig = "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000"
//!     .parse()?;
//! let CgsConfig::SevSnpGuest(snp) = &cfg else { unreachable!() };
//! assert_eq!(snp.common.cbitpos, Some(51));
//! // Display writes QEMU syntax back (defaults omitted); parsing it gives the same value.
//! assert_eq!(cfg.to_string().parse::<CgsConfig>()?, cfg);
//! # Ok::<(), cgs_core::ConfigError>(())
//! ```
//!
//! The same checks run whichever way a configuration is made: `FromStr`,
//! serde (a map of QEMU property names, as QEMU's JSON `-object` form), or the builders.

mod error;
pub mod keyval;
mod props;
mod sev;
mod simple;
pub mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use sev::{
    OnOffAuto, SevCommon, SevGuestBuilder, SevGuestConfig, SevSnpGuestBuilder, SevSnpGuestConfig,
    DEFAULT_SEV_DEVICE, DEFAULT_SEV_POLICY, DEFAULT_SEV_SNP_POLICY, SEV_POLICY_ES,
    SNP_ID_AUTH_SIZE, SNP_ID_BLOCK_SIZE,
};
pub use simple::{PefGuestConfig, S390PvGuestConfig};

use crate::platform::Platform;
use props::Props;

/// Any confidential-guest object QEMU accepts with `-object`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CgsConfig {
    /// `sev-guest` (SEV, or SEV-ES with policy bit 2).
    SevGuest(SevGuestConfig),
    /// `sev-snp-guest`.
    SevSnpGuest(SevSnpGuestConfig),
    /// `pef-guest`.
    PefGuest(PefGuestConfig),
    /// `s390-pv-guest`.
    S390PvGuest(S390PvGuestConfig),
}

/// The object types [`CgsConfig`] parses.
pub const OBJECT_TYPES: [&str; 4] = [
    SevGuestConfig::TYPE,
    SevSnpGuestConfig::TYPE,
    PefGuestConfig::TYPE,
    S390PvGuestConfig::TYPE,
];

impl CgsConfig {
    /// The QEMU object type.
    pub fn object_type(&self) -> &'static str {
        match self {
            CgsConfig::SevGuest(_) => SevGuestConfig::TYPE,
            CgsConfig::SevSnpGuest(_) => SevSnpGuestConfig::TYPE,
            CgsConfig::PefGuest(_) => PefGuestConfig::TYPE,
            CgsConfig::S390PvGuest(_) => S390PvGuestConfig::TYPE,
        }
    }

    /// The object id.
    pub fn id(&self) -> &str {
        match self {
            CgsConfig::SevGuest(c) => &c.id,
            CgsConfig::SevSnpGuest(c) => &c.id,
            CgsConfig::PefGuest(c) => &c.id,
            CgsConfig::S390PvGuest(c) => &c.id,
        }
    }

    /// The platform the configuration asks for.
    pub fn platform(&self) -> Platform {
        match self {
            CgsConfig::SevGuest(c) if c.is_es() => Platform::SevEs,
            CgsConfig::SevGuest(_) => Platform::Sev,
            CgsConfig::SevSnpGuest(_) => Platform::SevSnp,
            CgsConfig::PefGuest(_) => Platform::Pef,
            CgsConfig::S390PvGuest(_) => Platform::S390Pv,
        }
    }

    /// Check every property (configurations built field by field may be invalid).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            CgsConfig::SevGuest(c) => c.validate(),
            CgsConfig::SevSnpGuest(c) => c.validate(),
            CgsConfig::PefGuest(c) => c.validate(),
            CgsConfig::S390PvGuest(c) => c.validate(),
        }
    }

    /// Build from `(property, value)` pairs, one of which is `qom-type`.
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Result<Self, ConfigError> {
        let i = pairs
            .iter()
            .position(|(k, _)| k == keyval::IMPLIED_KEY)
            .ok_or(ConfigError::MissingType)?;
        let qom_type = pairs.remove(i).1;
        let ty = OBJECT_TYPES
            .iter()
            .copied()
            .find(|t| *t == qom_type)
            .ok_or_else(|| ConfigError::UnknownType(qom_type.chars().take(64).collect()))?;
        let props = Props::new(ty, pairs);
        Ok(match ty {
            SevGuestConfig::TYPE => CgsConfig::SevGuest(SevGuestConfig::parse(props)?),
            SevSnpGuestConfig::TYPE => CgsConfig::SevSnpGuest(SevSnpGuestConfig::parse(props)?),
            PefGuestConfig::TYPE => CgsConfig::PefGuest(PefGuestConfig::parse(props)?),
            _ => CgsConfig::S390PvGuest(S390PvGuestConfig::parse(props)?),
        })
    }
}

impl FromStr for CgsConfig {
    type Err = ConfigError;

    /// Parse a QEMU `-object` argument.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CgsConfig::from_pairs(keyval::parse(s)?)
    }
}

impl fmt::Display for CgsConfig {
    /// Write the QEMU `-object` argument (properties at their default are omitted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            CgsConfig::SevGuest(c) => c.write(),
            CgsConfig::SevSnpGuest(c) => c.write(),
            CgsConfig::PefGuest(c) => c.write(),
            CgsConfig::S390PvGuest(c) => c.write(),
        };
        f.write_str(&s)
    }
}

macro_rules! object_from_str {
    ($($ty:ident => $variant:ident),*) => {$(
        impl FromStr for $ty {
            type Err = ConfigError;

            /// Parse a QEMU `-object` argument of this type.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match CgsConfig::from_str(s)? {
                    CgsConfig::$variant(c) => Ok(c),
                    other => Err(ConfigError::UnknownType(format!(
                        "{} (expected {})",
                        other.object_type(),
                        $ty::TYPE
                    ))),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.write())
            }
        }

        impl From<$ty> for CgsConfig {
            fn from(c: $ty) -> Self {
                CgsConfig::$variant(c)
            }
        }
    )*};
}

object_from_str!(
    SevGuestConfig => SevGuest,
    SevSnpGuestConfig => SevSnpGuest,
    PefGuestConfig => PefGuest,
    S390PvGuestConfig => S390PvGuest
);

impl Serialize for CgsConfig {
    /// A map of QEMU property names to string values, `qom-type` first (QEMU's JSON `-object`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let pairs = keyval::parse(&self.to_string()).map_err(serde::ser::Error::custom)?;
        let mut map = serializer.serialize_map(Some(pairs.len()))?;
        for (k, v) in &pairs {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A JSON-ish scalar property value.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Bool(bool),
    Num(u64),
}

impl<'de> Deserialize<'de> for CgsConfig {
    /// Accepts the map [`Serialize`] writes; values may also be JSON booleans and unsigned numbers.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;

        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Vec<(String, String)>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of QEMU object properties")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = BTreeMap::new();
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Scalar>()? {
                    let v = match v {
                        Scalar::Str(s) => s,
                        Scalar::Bool(b) => value::bool_str(b).to_string(),
                        Scalar::Num(n) => n.to_string(),
                    };
                    if seen.insert(k.clone(), ()).is_some() {
                        return Err(de::Error::custom(format!("duplicate property '{k}'")));
                    }
                    pairs.push((k, v));
                }
                Ok(pairs)
            }
        }

        let pairs = deserializer.deserialize_map(PairsVisitor)?;
        CgsConfig::from_pairs(pairs).map_err(de::Error::custom)
    }
}
