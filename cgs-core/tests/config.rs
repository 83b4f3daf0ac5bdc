//! QEMU `-object` configuration: round-trips for all four object types and specific errors for
//! invalid strings.

use cgs_core::config::{
    CgsConfig, OnOffAuto, PefGuestConfig, S390PvGuestConfig, SevGuestConfig, SevSnpGuestConfig,
};
use cgs_core::{ConfigError, Platform};

fn parse(s: &str) -> Result<CgsConfig, ConfigError> {
    s.parse()
}

fn round_trip(s: &str) -> CgsConfig {
    let cfg = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let text = cfg.to_string();
    assert_eq!(
        parse(&text).unwrap(),
        cfg,
        "display round-trip of {s} via {text}"
    );
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(
        serde_json::from_str::<CgsConfig>(&json).unwrap(),
        cfg,
        "serde round-trip via {json}"
    );
    cfg
}

fn b64(n: usize, byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(vec![byte; n])
}

#[test]
fn sev_guest_round_trip_and_defaults() {
    let cfg = round_trip("sev-guest,id=sev0,cbitpos=47,reduced-phys-bits=1");
    let CgsConfig::SevGuest(c) = &cfg else {
        panic!("{cfg:?}")
    };
    assert_eq!(c.policy, 0x1);
    assert_eq!(c.handle, 0);
    assert_eq!(c.common.sev_device, "/dev/sev");
    assert_eq!(c.legacy_vm_type, OnOffAuto::Auto);
    assert_eq!(cfg.platform(), Platform::Sev);
    assert_eq!(
        cfg.to_string(),
        "sev-guest,id=sev0,cbitpos=47,reduced-phys-bits=1"
    );

    let cfg = round_trip(
        "sev-guest,id=s,sev-device=/dev/sev,,x,cbitpos=51,reduced-phys-bits=5,policy=0x5,\
         handle=7,dh-cert-file=/tmp/a.b64,session-file=/tmp/s.b64,kernel-hashes=yes,\
         legacy-vm-type=off",
    );
    let CgsConfig::SevGuest(c) = &cfg else {
        panic!()
    };
    assert_eq!(c.common.sev_device, "/dev/sev,x");
    assert!(c.common.kernel_hashes);
    assert_eq!(c.policy, 5);
    assert_eq!(cfg.platform(), Platform::SevEs);
    assert_eq!(c.legacy_vm_type, OnOffAuto::Off);
    assert_eq!(c.session_file.as_deref(), Some("/tmp/s.b64"));
}

#[test]
fn sev_snp_guest_round_trip() {
    let s = format!(
        "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,id-block={},\
         id-auth={},author-key-enabled=on,host-data={},kernel-hashes=on,vcek-disabled=on,\
         guest-visible-workarounds={}",
        b64(96, 1),
        b64(4096, 2),
        b64(32, 3),
        b64(16, 4)
    );
    let cfg = round_trip(&s);
    let CgsConfig::SevSnpGuest(c) = &cfg else {
        panic!()
    };
    assert_eq!(c.policy, 0x30000);
    assert_eq!(c.id_block.as_deref(), Some(&[1u8; 96][..]));
    assert_eq!(c.host_data, [3; 32]);
    assert_eq!(c.guest_visible_workarounds, [4; 16]);
    assert!(c.author_key_enabled && c.vcek_disabled && c.common.kernel_hashes);
    assert_eq!(cfg.platform(), Platform::SevSnp);

    // A short id-auth is accepted and padded to the 4096 bytes KVM reads.
    let cfg = round_trip(&format!(
        "sev-snp-guest,id=a,reduced-phys-bits=1,id-block={},id-auth={}",
        b64(96, 0),
        b64(100, 9)
    ));
    let CgsConfig::SevSnpGuest(c) = &cfg else {
        panic!()
    };
    let padded = c.id_auth_padded().unwrap();
    assert_eq!(padded.len(), 4096);
    assert!(padded[..100].iter().all(|&b| b == 9) && padded[100..].iter().all(|&b| b == 0));
}

#[test]
fn pef_and_s390_round_trip() {
    let cfg = round_trip("pef-guest,id=pef0");
    assert_eq!(cfg, CgsConfig::PefGuest(PefGuestConfig::new("pef0")));
    assert_eq!(cfg.platform(), Platform::Pef);
    let cfg = round_trip("qom-type=s390-pv-guest,id=pv0");
    assert_eq!(cfg, CgsConfig::S390PvGuest(S390PvGuestConfig::new("pv0")));
    assert_eq!(cfg.to_string(), "s390-pv-guest,id=pv0");
    assert_eq!(cfg.platform(), Platform::S390Pv);
    // Typed parsing refuses another type.
    assert!(matches!(
        "pef-guest,id=p".parse::<S390PvGuestConfig>(),
        Err(ConfigError::UnknownType(_))
    ));
    assert_eq!("pef-guest,id=p".parse::<PefGuestConfig>().unwrap().id, "p");
}

#[test]
fn json_with_native_scalars_and_builders() {
    let cfg: CgsConfig = serde_json::from_str(
        r#"{"qom-type":"sev-snp-guest","id":"sev0","cbitpos":51,"reduced-phys-bits":1,
            "kernel-hashes":true,"policy":"0x30000"}"#,
    )
    .unwrap();
    let built = SevSnpGuestConfig::builder("sev0", 1)
        .cbitpos(51)
        .kernel_hashes(true)
        .build()
        .unwrap();
    assert_eq!(cfg, CgsConfig::from(built));
    let err = serde_json::from_str::<CgsConfig>(r#"{"qom-type":"pef-guest","id":"p","x":1}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Parameter 'x' is unexpected"), "{err}");

    let sev = SevGuestConfig::builder("s", 1)
        .policy(0x5)
        .legacy_vm_type(OnOffAuto::On)
        .build()
        .unwrap();
    assert_eq!(sev.to_string().parse::<SevGuestConfig>().unwrap(), sev);
    assert!(SevGuestConfig::builder("s", 0).build().is_err());
    assert!(SevSnpGuestConfig::builder("s", 1)
        .author_key_enabled(true)
        .build()
        .is_err());
    assert!(SevSnpGuestConfig::builder("s", 1)
        .id_block([0; 96], vec![0; 4097])
        .build()
        .is_err());
}

/// Asserts that `s` fails with an error whose message names `needle`.
fn bad(s: &str, needle: &str) -> ConfigError {
    let err = parse(s).expect_err(s);
    let msg = err.to_string();
    assert!(
        msg.contains(needle),
        "{s}: '{msg}' does not mention '{needle}'"
    );
    err
}

fn unexpected(e: &ConfigError, prop: &str) -> bool {
    matches!(e, ConfigError::Unexpected { property, .. } if property == prop)
}
fn invalid(e: &ConfigError, prop: &str) -> bool {
    matches!(e, ConfigError::InvalidValue { property, .. } if *property == prop)
}
fn missing(e: &ConfigError, prop: &str) -> bool {
    matches!(e, ConfigError::Missing { property, .. } if *property == prop)
}

#[test]
fn sev_guest_invalid_strings() {
    let base = "sev-guest,id=s,reduced-phys-bits=1";
    assert!(missing(
        &bad("sev-guest,id=s", "reduced-phys-bits"),
        "reduced-phys-bits"
    ));
    assert!(missing(&bad("sev-guest,reduced-phys-bits=1", "'id'"), "id"));
    assert!(invalid(
        &bad("sev-guest,id=s,reduced-phys-bits=0", "1 to 63"),
        "reduced-phys-bits"
    ));
    assert!(invalid(
        &bad("sev-guest,id=s,reduced-phys-bits=64", "1 to 63"),
        "reduced-phys-bits"
    ));
    assert!(invalid(
        &bad(&format!("{base},policy=0x100000000"), "2^32"),
        "policy"
    ));
    assert!(invalid(
        &bad(&format!("{base},policy=abc"), "policy"),
        "policy"
    ));
    assert!(invalid(
        &bad(&format!("{base},handle=-1"), "handle"),
        "handle"
    ));
    assert!(invalid(
        &bad(&format!("{base},cbitpos=64"), "cbitpos"),
        "cbitpos"
    ));
    assert!(invalid(
        &bad(&format!("{base},kernel-hashes=maybe"), "'on' or 'off'"),
        "kernel-hashes"
    ));
    assert!(invalid(
        &bad(&format!("{base},legacy-vm-type=sometimes"), "'auto'"),
        "legacy-vm-type"
    ));
    assert!(unexpected(
        &bad(
            &format!("{base},host-data=AAAA"),
            "'host-data' is unexpected"
        ),
        "host-data"
    ));
    assert!(unexpected(
        &bad(&format!("{base},polcy=1"), "'polcy'"),
        "polcy"
    ));
    assert!(invalid(
        &bad("sev-guest,id=1s,reduced-phys-bits=1", "identifier"),
        "id"
    ));
    assert!(invalid(
        &bad(&format!("{base},dh-cert-file="), "file path"),
        "dh-cert-file"
    ));
    assert!(matches!(
        bad(&format!("{base},flag"), "expected '='"),
        ConfigError::Syntax { .. }
    ));
}

#[test]
fn sev_snp_guest_invalid_strings() {
    let base = "sev-snp-guest,id=s,reduced-phys-bits=1";
    let ib = b64(96, 0);
    assert!(invalid(
        &bad(&format!("{base},id-block={}", b64(95, 0)), "exactly 96"),
        "id-block"
    ));
    assert!(invalid(
        &bad(&format!("{base},id-block=!!!!"), "base64"),
        "id-block"
    ));
    assert!(invalid(
        &bad(
            &format!("{base},id-block={ib},id-auth={}", b64(4097, 0)),
            "4096"
        ),
        "id-auth"
    ));
    assert!(matches!(
        bad(&format!("{base},id-auth={}", b64(10, 0)), "id-block"),
        ConfigError::Conflict {
            property: "id-auth",
            ..
        }
    ));
    assert!(matches!(
        bad(&format!("{base},author-key-enabled=on"), "id-auth"),
        ConfigError::Conflict {
            property: "author-key-enabled",
            ..
        }
    ));
    assert!(invalid(
        &bad(&format!("{base},host-data={}", b64(31, 0)), "32 bytes"),
        "host-data"
    ));
    assert!(invalid(
        &bad(
            &format!("{base},guest-visible-workarounds={}", b64(17, 0)),
            "16 bytes"
        ),
        "guest-visible-workarounds"
    ));
    assert!(invalid(
        &bad(&format!("{base},policy=0x1ffffffffffffffff"), "2^64"),
        "policy"
    ));
    assert!(invalid(
        &bad(&format!("{base},vcek-disabled=2"), "'on' or 'off'"),
        "vcek-disabled"
    ));
    assert!(unexpected(
        &bad(&format!("{base},handle=1"), "'handle' is unexpected"),
        "handle"
    ));
    assert!(unexpected(
        &bad(&format!("{base},legacy-vm-type=on"), "legacy-vm-type"),
        "legacy-vm-type"
    ));
    assert!(missing(
        &bad("sev-snp-guest,id=s,cbitpos=51", "reduced-phys-bits"),
        "reduced-phys-bits"
    ));
    assert!(invalid(
        &bad(&format!("{base},host-data=AAA"), "base64"),
        "host-data"
    ));
}

#[test]
fn pef_guest_invalid_strings() {
    assert!(missing(&bad("pef-guest", "'id' is missing"), "id"));
    assert!(unexpected(
        &bad("pef-guest,id=p,policy=1", "'policy' is unexpected"),
        "policy"
    ));
    assert!(unexpected(
        &bad("pef-guest,id=p,cbitpos=51", "cbitpos"),
        "cbitpos"
    ));
    assert!(invalid(&bad("pef-guest,id=", "identifier"), "id"));
    assert!(invalid(&bad("pef-guest,id=-p", "identifier"), "id"));
    assert!(invalid(&bad("pef-guest,id=p q", "identifier"), "id"));
    assert!(invalid(&bad("pef-guest,id=p,,q", "identifier"), "id"));
    assert!(matches!(
        bad("pef-guest,id=p,on", "expected '='"),
        ConfigError::Syntax { .. }
    ));
    assert!(matches!(
        bad("pef-guest,id=p,,,=1", "invalid parameter name"),
        ConfigError::Syntax { .. }
    ));
    assert!(matches!(
        bad("pef-guests,id=p", "invalid object type"),
        ConfigError::UnknownType(_)
    ));
    assert!(matches!(
        bad("PEF-GUEST,id=p", "invalid object type"),
        ConfigError::UnknownType(_)
    ));
    assert!(matches!(bad("", "empty"), ConfigError::Empty));
}

#[test]
fn s390_pv_guest_invalid_strings() {
    assert!(missing(&bad("s390-pv-guest", "'id' is missing"), "id"));
    assert!(missing(&bad("s390-pv-guest,", "'id' is missing"), "id"));
    assert!(unexpected(
        &bad("s390-pv-guest,id=pv,dump=on", "'dump' is unexpected"),
        "dump"
    ));
    assert!(unexpected(&bad("s390-pv-guest,id=pv,ID=pv", "'ID'"), "ID"));
    assert!(invalid(&bad("s390-pv-guest,id=9pv", "identifier"), "id"));
    assert!(invalid(&bad("s390-pv-guest,id=pv/0", "identifier"), "id"));
    assert!(matches!(
        bad("s390-pv-guest,id=pv,x y=1", "invalid parameter name"),
        ConfigError::Syntax { .. }
    ));
    assert!(matches!(
        bad("s390-pv-guest,id=pv,,=", "identifier"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        bad("s390pv-guest,id=pv", "invalid object type"),
        ConfigError::UnknownType(_)
    ));
    assert!(matches!(bad("id=pv", "qom-type"), ConfigError::MissingType));
    assert!(matches!(
        bad("=s390-pv-guest,id=pv", "invalid parameter name"),
        ConfigError::Syntax { .. }
    ));
    assert!(matches!(
        bad("s390-pv-guest,id=pv,=x", "invalid parameter name"),
        ConfigError::Syntax { .. }
    ));
}

#[test]
fn duplicate_keys_last_wins_and_booleans() {
    let cfg = parse("sev-guest,id=a,reduced-phys-bits=1,policy=1,policy=0x7,id=b").unwrap();
    let CgsConfig::SevGuest(c) = cfg else {
        panic!()
    };
    assert_eq!((c.id.as_str(), c.policy), ("b", 7));
    for (v, expect) in [("y", true), ("true", true), ("no", false), ("off", false)] {
        let c: SevGuestConfig = format!("sev-guest,id=a,reduced-phys-bits=1,kernel-hashes={v}")
            .parse()
            .unwrap();
        assert_eq!(c.common.kernel_hashes, expect);
    }
}

#[test]
fn never_panics_on_arbitrary_strings() {
    // Deterministic pseudo-random strings over the syntax's alphabet.
    let alphabet: Vec<char> = "sev-gust,=idcbtpo0x1AB+/snp-ef39,,=".chars().collect();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..5000 {
        let mut s = String::new();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for i in 0..(x % 60) {
            let r = x.rotate_left(i as u32 * 5);
            s.push(alphabet[(r % alphabet.len() as u64) as usize]);
        }
        if let Ok(cfg) = parse(&s) {
            assert_eq!(parse(&cfg.to_string()).unwrap(), cfg);
        }
        for prefix in OBJECT_PREFIXES {
            if let Ok(cfg) = parse(&format!("{prefix}{s}")) {
                assert_eq!(parse(&cfg.to_string()).unwrap(), cfg);
            }
        }
    }
}

const OBJECT_PREFIXES: [&str; 4] = [
    "sev-guest,id=a,reduced-phys-bits=1,",
    "sev-snp-guest,id=a,reduced-phys-bits=1,",
    "pef-guest,",
    "s390-pv-guest,",
];
