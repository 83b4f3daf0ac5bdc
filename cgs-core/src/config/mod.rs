//! Confidential-guest configuration in QEMU `-object` syntax.

mod error;

pub use error::ConfigError;
