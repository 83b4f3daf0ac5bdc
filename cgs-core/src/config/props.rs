//! A parsed property list that object types consume key by key.

use std::fmt::Write as _;

use super::keyval::escape;
use super::ConfigError;

/// The properties of one object, consumed by its type's parser; whatever is left is unexpected.
#[derive(Debug)]
pub struct Props {
    object_type: &'static str,
    pairs: Vec<(String, String)>,
}

impl Props {
    /// Properties of an object of type `object_type` (without `qom-type`).
    pub fn new(object_type: &'static str, pairs: Vec<(String, String)>) -> Self {
        Props { object_type, pairs }
    }

    /// Remove and return a property's value.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(i).1)
    }

    /// Remove a required property.
    pub fn require(&mut self, key: &'static str) -> Result<String, ConfigError> {
        self.take(key).ok_or(ConfigError::Missing {
            object_type: self.object_type,
            property: key,
        })
    }

    /// The object id (required, QEMU's `id_wellformed`: a letter, then letters, digits, `-`, `.`,
    /// `_`).
    pub fn id(&mut self) -> Result<String, ConfigError> {
        let id = self.require("id")?;
        validate_id(&id)?;
        Ok(id)
    }

    /// Fail on the first property nobody consumed.
    pub fn finish(self) -> Result<(), ConfigError> {
        match self.pairs.into_iter().next() {
            None => Ok(()),
            Some((property, _)) => Err(ConfigError::Unexpected {
                object_type: self.object_type,
                property,
            }),
        }
    }
}

/// Check an object id the way QEMU's `id_wellformed` does.
pub fn validate_id(id: &str) -> Result<(), ConfigError> {
    let mut chars = id.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidValue {
            property: "id",
            value: id.chars().take(40).collect(),
            expected: "an identifier: a letter, then letters, digits, '-', '.' or '_'".into(),
        })
    }
}

/// Writes `type,id=…,key=value…` with values escaped.
pub struct Writer(String);

impl Writer {
    /// Start with the object type and id.
    pub fn new(object_type: &str, id: &str) -> Self {
        Writer(format!("{object_type},id={}", escape(id)))
    }

    /// Append one property.
    pub fn prop(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let value = value.to_string();
        let _ = write!(self.0, ",{key}={}", escape(&value));
        self
    }

    /// The finished string.
    pub fn finish(self) -> String {
        self.0
    }
}
