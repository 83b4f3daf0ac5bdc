//! Errors from parsing and validating a confidential-guest `-object` configuration.

/// Why a configuration string or value was rejected. Every variant names the property at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The string was empty.
    #[error("empty object description")]
    Empty,
    /// The first element names no object type (`qom-type`).
    #[error("Parameter 'qom-type' is missing")]
    MissingType,
    /// The object type is not a confidential-guest type cgs knows.
    #[error("invalid object type: {0}")]
    UnknownType(String),
    /// A property the object type does not have.
    #[error("Parameter '{property}' is unexpected (object type {object_type})")]
    Unexpected {
        /// The object type being parsed.
        object_type: &'static str,
        /// The unknown property.
        property: String,
    },
    /// A required property is absent.
    #[error("Parameter '{property}' is missing (object type {object_type})")]
    Missing {
        /// The object type being parsed.
        object_type: &'static str,
        /// The missing property.
        property: &'static str,
    },
    /// A property's value is malformed or out of range.
    #[error("Parameter '{property}' expects {expected}, got '{value}'")]
    InvalidValue {
        /// The property.
        property: &'static str,
        /// The value as given (secrets are never echoed; binary blobs are abbreviated).
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// Two properties contradict each other.
    #[error("Parameter '{property}' conflicts with '{other}': {why}")]
    Conflict {
        /// The property that is rejected.
        property: &'static str,
        /// The property it conflicts with (or depends on).
        other: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The key=value syntax itself is broken.
    #[error("invalid syntax at byte {position}: {why}")]
    Syntax {
        /// Byte offset into the string.
        position: usize,
        /// What is wrong.
        why: &'static str,
    },
}
