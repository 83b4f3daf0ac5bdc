//! `sev-guest` and `sev-snp-guest`, with their common base `sev-common` (QEMU `target/i386/sev.c`,
//! `qapi/qom.json` `SevCommonProperties`, `SevGuestProperties`, `SevSnpGuestProperties`).

use serde::{Deserialize, Serialize};

use super::props::{Props, Writer};
use super::value::{
    base64, bool_str, parse_base64, parse_base64_array, parse_bool, parse_u32, parse_u64,
};
use super::ConfigError;

/// QEMU's default `sev-device`.
pub const DEFAULT_SEV_DEVICE: &str = "/dev/sev";
/// QEMU's default `sev-guest` policy (NODBG).
pub const DEFAULT_SEV_POLICY: u32 = 0x1;
/// QEMU's default `sev-snp-guest` policy: SMT allowed (bit 16) and the must-be-one bit 17.
pub const DEFAULT_SEV_SNP_POLICY: u64 = 0x30000;
/// Length of an SNP ID block (`KVM_SEV_SNP_ID_BLOCK_SIZE`).
pub const SNP_ID_BLOCK_SIZE: usize = 96;
/// Length KVM reads for an SNP ID authentication structure (`KVM_SEV_SNP_ID_AUTH_SIZE`).
pub const SNP_ID_AUTH_SIZE: usize = 4096;

/// `legacy-vm-type`: whether SEV/SEV-ES use the legacy `KVM_X86_DEFAULT_VM` + `KVM_SEV_INIT` or
/// the `KVM_X86_SEV(_ES)_VM` types + `KVM_SEV_INIT2` (which measures differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOffAuto {
    /// Legacy VM type and INIT.
    On,
    /// New VM types and INIT2; fail if the kernel lacks them.
    Off,
    /// QEMU's default: behaves like `on` today.
    #[default]
    Auto,
}

impl OnOffAuto {
    fn parse(property: &'static str, value: &str) -> Result<Self, ConfigError> {
        match value {
            "auto" => Ok(OnOffAuto::Auto),
            v => match parse_bool(property, v) {
                Ok(true) => Ok(OnOffAuto::On),
                Ok(false) => Ok(OnOffAuto::Off),
                Err(_) => Err(ConfigError::InvalidValue {
                    property,
                    value: v.chars().take(40).collect(),
                    expected: "'on', 'off' or 'auto'".into(),
                }),
            },
        }
    }

    /// The QEMU spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnOffAuto::On => "on",
            OnOffAuto::Off => "off",
            OnOffAuto::Auto => "auto",
        }
    }
}

/// Properties shared by `sev-guest` and `sev-snp-guest` (`sev-common`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SevCommon {
    /// The SEV device node (`sev-device`, default `/dev/sev`).
    pub sev_device: String,
    /// Position of the C-bit (`cbitpos`); must match host CPUID 0x8000001F `EBX[5:0]` at
    /// `kvm_init`. `None` when not given (QEMU's 0).
    pub cbitpos: Option<u32>,
    /// Physical address bits lost to encryption (`reduced-phys-bits`, required, 1..=63).
    pub reduced_phys_bits: u32,
    /// Measured direct boot: add the kernel-hashes table (`kernel-hashes`).
    pub kernel_hashes: bool,
}

impl SevCommon {
    /// Defaults with the required `reduced-phys-bits`.
    pub fn new(reduced_phys_bits: u32) -> Self {
        SevCommon {
            sev_device: DEFAULT_SEV_DEVICE.to_string(),
            cbitpos: None,
            reduced_phys_bits,
            kernel_hashes: false,
        }
    }

    fn parse(props: &mut Props) -> Result<Self, ConfigError> {
        let reduced_phys_bits =
            parse_u32("reduced-phys-bits", &props.require("reduced-phys-bits")?)?;
        let mut common = SevCommon::new(reduced_phys_bits);
        if let Some(v) = props.take("sev-device") {
            common.sev_device = v;
        }
        if let Some(v) = props.take("cbitpos") {
            common.cbitpos = Some(parse_u32("cbitpos", &v)?);
        }
        if let Some(v) = props.take("kernel-hashes") {
            common.kernel_hashes = parse_bool("kernel-hashes", &v)?;
        }
        common.validate()?;
        Ok(common)
    }

    /// Check ranges: `reduced-phys-bits` 1..=63, `cbitpos` below 64, a non-empty device path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=63).contains(&self.reduced_phys_bits) {
            return Err(ConfigError::InvalidValue {
                property: "reduced-phys-bits",
                value: self.reduced_phys_bits.to_string(),
                expected: "a value in the range of 1 to 63".into(),
            });
        }
        if let Some(c) = self.cbitpos {
            if !(1..64).contains(&c) {
                return Err(ConfigError::InvalidValue {
                    property: "cbitpos",
                    value: c.to_string(),
                    expected: "a physical address bit in the range of 1 to 63".into(),
                });
            }
        }
        if self.sev_device.is_empty() {
            return Err(ConfigError::InvalidValue {
                property: "sev-device",
                value: String::new(),
                expected: "a device path".into(),
            });
        }
        Ok(())
    }

    fn write(&self, w: &mut Writer) {
        if self.sev_device != DEFAULT_SEV_DEVICE {
            w.prop("sev-device", &self.sev_device);
        }
        if let Some(c) = self.cbitpos {
            w.prop("cbitpos", c);
        }
        w.prop("reduced-phys-bits", self.reduced_phys_bits);
        if self.kernel_hashes {
            w.prop("kernel-hashes", "on");
        }
    }
}

/// `sev-guest`: an SEV or SEV-ES guest (SEV-ES when policy bit 2 is set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SevGuestConfig {
    /// The object id.
    pub id: String,
    /// `sev-common` properties.
    pub common: SevCommon,
    /// Guest policy (`policy`, default 0x1): NODBG 0x1, NOKS 0x2, ES 0x4, NOSEND 0x8, DOMAIN 0x10,
    /// SEV 0x20.
    pub policy: u32,
    /// Firmware handle to share keys with (`handle`, default 0).
    pub handle: u32,
    /// File with the guest owner's base64 DH certificate (`dh-cert-file`).
    pub dh_cert_file: Option<String>,
    /// File with the guest owner's base64 launch session (`session-file`).
    pub session_file: Option<String>,
    /// `legacy-vm-type` (default auto).
    pub legacy_vm_type: OnOffAuto,
}

/// SEV policy bit: SEV-ES required.
pub const SEV_POLICY_ES: u32 = 0x4;

impl SevGuestConfig {
    /// QEMU's object type name.
    pub const TYPE: &'static str = "sev-guest";

    /// A configuration with QEMU's defaults.
    pub fn new(id: impl Into<String>, reduced_phys_bits: u32) -> Self {
        SevGuestConfig {
            id: id.into(),
            common: SevCommon::new(reduced_phys_bits),
            policy: DEFAULT_SEV_POLICY,
            handle: 0,
            dh_cert_file: None,
            session_file: None,
            legacy_vm_type: OnOffAuto::Auto,
        }
    }

    /// Start a builder.
    pub fn builder(id: impl Into<String>, reduced_phys_bits: u32) -> SevGuestBuilder {
        SevGuestBuilder(SevGuestConfig::new(id, reduced_phys_bits))
    }

    /// Whether the policy asks for SEV-ES.
    pub fn is_es(&self) -> bool {
        self.policy & SEV_POLICY_ES != 0
    }

    /// Check every property.
    pub fn validate(&self) -> Result<(), ConfigError> {
        super::props::validate_id(&self.id)?;
        self.common.validate()?;
        for (property, value) in [
            ("dh-cert-file", &self.dh_cert_file),
            ("session-file", &self.session_file),
        ] {
            if value.as_deref() == Some("") {
                return Err(ConfigError::InvalidValue {
                    property,
                    value: String::new(),
                    expected: "a file path".into(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn parse(mut props: Props) -> Result<Self, ConfigError> {
        let id = props.id()?;
        let common = SevCommon::parse(&mut props)?;
        let mut c = SevGuestConfig {
            id,
            common,
            ..SevGuestConfig::new("x", 1)
        };
        if let Some(v) = props.take("policy") {
            c.policy = parse_u32("policy", &v)?;
        }
        if let Some(v) = props.take("handle") {
            c.handle = parse_u32("handle", &v)?;
        }
        c.dh_cert_file = props.take("dh-cert-file");
        c.session_file = props.take("session-file");
        if let Some(v) = props.take("legacy-vm-type") {
            c.legacy_vm_type = OnOffAuto::parse("legacy-vm-type", &v)?;
        }
        props.finish()?;
        c.validate()?;
        Ok(c)
    }

    pub(super) fn write(&self) -> String {
        let mut w = Writer::new(Self::TYPE, &self.id);
        self.common.write(&mut w);
        if self.policy != DEFAULT_SEV_POLICY {
            w.prop("policy", format!("{:#x}", self.policy));
        }
        if self.handle != 0 {
            w.prop("handle", self.handle);
        }
        if let Some(f) = &self.dh_cert_file {
            w.prop("dh-cert-file", f);
        }
        if let Some(f) = &self.session_file {
            w.prop("session-file", f);
        }
        if self.legacy_vm_type != OnOffAuto::Auto {
            w.prop("legacy-vm-type", self.legacy_vm_type.as_str());
        }
        w.finish()
    }
}

/// Setters for the `sev-common` properties, shared by both builders.
macro_rules! common_setters {
    () => {
        /// Set `cbitpos`.
        pub fn cbitpos(mut self, cbitpos: u32) -> Self {
            self.0.common.cbitpos = Some(cbitpos);
            self
        }
        /// Set `sev-device`.
        pub fn sev_device(mut self, path: impl Into<String>) -> Self {
            self.0.common.sev_device = path.into();
            self
        }
        /// Set `kernel-hashes`.
        pub fn kernel_hashes(mut self, on: bool) -> Self {
            self.0.common.kernel_hashes = on;
            self
        }
    };
}

/// Builds a validated [`SevGuestConfig`].
#[derive(Debug, Clone)]
pub struct SevGuestBuilder(SevGuestConfig);

impl SevGuestBuilder {
    /// Set `policy`.
    pub fn policy(mut self, policy: u32) -> Self {
        self.0.policy = policy;
        self
    }
    common_setters!();
    /// Set `handle`.
    pub fn handle(mut self, handle: u32) -> Self {
        self.0.handle = handle;
        self
    }
    /// Set `dh-cert-file`.
    pub fn dh_cert_file(mut self, path: impl Into<String>) -> Self {
        self.0.dh_cert_file = Some(path.into());
        self
    }
    /// Set `session-file`.
    pub fn session_file(mut self, path: impl Into<String>) -> Self {
        self.0.session_file = Some(path.into());
        self
    }
    /// Set `legacy-vm-type`.
    pub fn legacy_vm_type(mut self, v: OnOffAuto) -> Self {
        self.0.legacy_vm_type = v;
        self
    }
    /// Validate and return the configuration.
    pub fn build(self) -> Result<SevGuestConfig, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

/// `sev-snp-guest`: an SEV-SNP guest (always guest_memfd, `KVM_X86_SNP_VM`, `KVM_SEV_INIT2`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SevSnpGuestConfig {
    /// The object id.
    pub id: String,
    /// `sev-common` properties.
    pub common: SevCommon,
    /// Guest policy (`policy`, default 0x30000).
    pub policy: u64,
    /// Guest OS visible workarounds (`guest-visible-workarounds`, 16 bytes, default zero).
    pub guest_visible_workarounds: [u8; 16],
    /// The ID block (`id-block`, 96 bytes).
    pub id_block: Option<Vec<u8>>,
    /// The ID authentication information structure (`id-auth`, at most 4096 bytes; KVM reads
    /// 4096, see [`id_auth_padded`](Self::id_auth_padded)).
    pub id_auth: Option<Vec<u8>>,
    /// Whether `id-auth` carries an author key (`author-key-enabled`).
    pub author_key_enabled: bool,
    /// Whether the VCEK is disabled for reports (`vcek-disabled`).
    pub vcek_disabled: bool,
    /// Host data placed in attestation reports (`host-data`, 32 bytes, default zero).
    pub host_data: [u8; 32],
}

impl SevSnpGuestConfig {
    /// QEMU's object type name.
    pub const TYPE: &'static str = "sev-snp-guest";

    /// A configuration with QEMU's defaults.
    pub fn new(id: impl Into<String>, reduced_phys_bits: u32) -> Self {
        SevSnpGuestConfig {
            id: id.into(),
            common: SevCommon::new(reduced_phys_bits),
            policy: DEFAULT_SEV_SNP_POLICY,
            guest_visible_workarounds: [0; 16],
            id_block: None,
            id_auth: None,
            author_key_enabled: false,
            vcek_disabled: false,
            host_data: [0; 32],
        }
    }

    /// Start a builder.
    pub fn builder(id: impl Into<String>, reduced_phys_bits: u32) -> SevSnpGuestBuilder {
        SevSnpGuestBuilder(SevSnpGuestConfig::new(id, reduced_phys_bits))
    }

    /// `id-auth` padded with zeroes to the 4096 bytes KVM reads (`None` without `id-auth`).
    pub fn id_auth_padded(&self) -> Option<Box<[u8; SNP_ID_AUTH_SIZE]>> {
        let auth = self.id_auth.as_ref()?;
        let mut out = Box::new([0u8; SNP_ID_AUTH_SIZE]);
        let n = auth.len().min(SNP_ID_AUTH_SIZE);
        out[..n].copy_from_slice(&auth[..n]);
        Some(out)
    }

    /// Check every property and their combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        super::props::validate_id(&self.id)?;
        self.common.validate()?;
        if let Some(b) = &self.id_block {
            if b.len() != SNP_ID_BLOCK_SIZE {
                return Err(ConfigError::InvalidValue {
                    property: "id-block",
                    value: format!("<{} bytes>", b.len()),
                    expected: format!("exactly {SNP_ID_BLOCK_SIZE} bytes"),
                });
            }
        }
        if let Some(a) = &self.id_auth {
            if a.is_empty() || a.len() > SNP_ID_AUTH_SIZE {
                return Err(ConfigError::InvalidValue {
                    property: "id-auth",
                    value: format!("<{} bytes>", a.len()),
                    expected: format!("1 to {SNP_ID_AUTH_SIZE} bytes"),
                });
            }
            if self.id_block.is_none() {
                return Err(ConfigError::Conflict {
                    property: "id-auth",
                    other: "id-block",
                    why: "id-auth is only used together with an id-block",
                });
            }
        }
        if self.author_key_enabled && self.id_auth.is_none() {
            return Err(ConfigError::Conflict {
                property: "author-key-enabled",
                other: "id-auth",
                why: "the author key is carried in id-auth",
            });
        }
        Ok(())
    }

    pub(super) fn parse(mut props: Props) -> Result<Self, ConfigError> {
        let id = props.id()?;
        let common = SevCommon::parse(&mut props)?;
        let mut c = SevSnpGuestConfig {
            id,
            common,
            ..SevSnpGuestConfig::new("x", 1)
        };
        if let Some(v) = props.take("policy") {
            c.policy = parse_u64("policy", &v)?;
        }
        if let Some(v) = props.take("guest-visible-workarounds") {
            c.guest_visible_workarounds = parse_base64_array("guest-visible-workarounds", &v)?;
        }
        if let Some(v) = props.take("id-block") {
            let b = parse_base64("id-block", &v)?;
            if b.len() != SNP_ID_BLOCK_SIZE {
                return Err(ConfigError::InvalidValue {
                    property: "id-block",
                    value: format!("<{} bytes>", b.len()),
                    expected: format!("base64 of exactly {SNP_ID_BLOCK_SIZE} bytes"),
                });
            }
            c.id_block = Some(b);
        }
        if let Some(v) = props.take("id-auth") {
            c.id_auth = Some(parse_base64("id-auth", &v)?);
        }
        if let Some(v) = props.take("author-key-enabled") {
            c.author_key_enabled = parse_bool("author-key-enabled", &v)?;
        }
        if let Some(v) = props.take("vcek-disabled") {
            c.vcek_disabled = parse_bool("vcek-disabled", &v)?;
        }
        if let Some(v) = props.take("host-data") {
            c.host_data = parse_base64_array("host-data", &v)?;
        }
        props.finish()?;
        c.validate()?;
        Ok(c)
    }

    pub(super) fn write(&self) -> String {
        let mut w = Writer::new(Self::TYPE, &self.id);
        self.common.write(&mut w);
        if self.policy != DEFAULT_SEV_SNP_POLICY {
            w.prop("policy", format!("{:#x}", self.policy));
        }
        if self.guest_visible_workarounds != [0; 16] {
            w.prop(
                "guest-visible-workarounds",
                base64(&self.guest_visible_workarounds),
            );
        }
        if let Some(b) = &self.id_block {
            w.prop("id-block", base64(b));
        }
        if let Some(a) = &self.id_auth {
            w.prop("id-auth", base64(a));
        }
        if self.author_key_enabled {
            w.prop("author-key-enabled", bool_str(true));
        }
        if self.vcek_disabled {
            w.prop("vcek-disabled", bool_str(true));
        }
        if self.host_data != [0; 32] {
            w.prop("host-data", base64(&self.host_data));
        }
        w.finish()
    }
}

/// Builds a validated [`SevSnpGuestConfig`].
#[derive(Debug, Clone)]
pub struct SevSnpGuestBuilder(SevSnpGuestConfig);

impl SevSnpGuestBuilder {
    /// Set `policy`.
    pub fn policy(mut self, policy: u64) -> Self {
        self.0.policy = policy;
        self
    }
    common_setters!();
    /// Set `guest-visible-workarounds`.
    pub fn guest_visible_workarounds(mut self, gosvw: [u8; 16]) -> Self {
        self.0.guest_visible_workarounds = gosvw;
        self
    }
    /// Set `id-block` and `id-auth` (the auth structure may be shorter than 4096 bytes).
    pub fn id_block(mut self, id_block: [u8; SNP_ID_BLOCK_SIZE], id_auth: Vec<u8>) -> Self {
        self.0.id_block = Some(id_block.to_vec());
        self.0.id_auth = Some(id_auth);
        self
    }
    /// Set `author-key-enabled`.
    pub fn author_key_enabled(mut self, on: bool) -> Self {
        self.0.author_key_enabled = on;
        self
    }
    /// Set `vcek-disabled`.
    pub fn vcek_disabled(mut self, on: bool) -> Self {
        self.0.vcek_disabled = on;
        self
    }
    /// Set `host-data`.
    pub fn host_data(mut self, data: [u8; 32]) -> Self {
        self.0.host_data = data;
        self
    }
    /// Validate and return the configuration.
    pub fn build(self) -> Result<SevSnpGuestConfig, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
}
