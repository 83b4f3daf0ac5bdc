//! `pef-guest` and `s390-pv-guest`: objects with no property but `id` (all their configuration
//! comes from the guest image and the ultravisor).

use super::props::{validate_id, Props, Writer};
use super::ConfigError;

macro_rules! id_only_object {
    ($(#[$doc:meta])* $name:ident, $type_name:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name {
            /// The object id.
            pub id: String,
        }

        impl $name {
            /// QEMU's object type name.
            pub const TYPE: &'static str = $type_name;

            /// A configuration with object id `id`.
            pub fn new(id: impl Into<String>) -> Self {
                $name { id: id.into() }
            }

            /// Check the id.
            pub fn validate(&self) -> Result<(), ConfigError> {
                validate_id(&self.id)
            }

            pub(super) fn parse(mut props: Props) -> Result<Self, ConfigError> {
                let id = props.id()?;
                props.finish()?;
                Ok($name { id })
            }

            pub(super) fn write(&self) -> String {
                Writer::new(Self::TYPE, &self.id).finish()
            }
        }
    };
}

id_only_object!(
    /// `pef-guest`: a POWER Protected Execution Facility guest.
    PefGuestConfig,
    "pef-guest"
);
id_only_object!(
    /// `s390-pv-guest`: an IBM s390 Protected Virtualization guest.
    S390PvGuestConfig,
    "s390-pv-guest"
);
