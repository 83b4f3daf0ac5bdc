//! The backend built from QEMU-style configuration: `dh-cert-file` / `session-file`, `cbitpos`,
//! VMSA features, object types and VM types.

use cgs_core::config::{SevGuestConfig, SevSnpGuestConfig};
use cgs_core::testing::kvm_or_skip;
use cgs_core::{ConfidentialBackend, Error, Lifecycle, Platform};
use cgs_sev::backend::SevBackend;
use cgs_sev::firmware::sim::{SimConfig, SimFirmware, SimPlatform};
use cgs_sev::session::GuestOwner;
use rand_core::OsRng;

fn write_b64(name: &str, data: &[u8]) -> String {
    use base64::Engine;
    let path = std::env::temp_dir().join(format!("cgs-sev-{}-{name}", std::process::id()));
    std::fs::write(
        &path,
        base64::engine::general_purpose::STANDARD.encode(data),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn session_files_are_read_and_used() {
    let Some(kvm) = kvm_or_skip("session_files_are_read_and_used") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let owner = GuestOwner::new(0x1, &mut OsRng);
    let blobs = owner.start(&platform.pdh_public(), &mut OsRng);
    let cfg = SevGuestConfig::builder("sev0", 1)
        .dh_cert_file(write_b64("godh.b64", &blobs.dh_cert))
        .session_file(write_b64("session.b64", &blobs.session.to_bytes()))
        .cbitpos(51)
        .build()
        .unwrap();
    let backend = SevBackend::sev(&cfg, SimFirmware::new(&platform)).unwrap();
    assert_eq!(backend.object_type(), "sev-guest");
    assert_eq!(backend.platform(), Platform::Sev);
    assert_eq!(backend.vm_type(), 0, "the simulator runs on a default VM");
    let mut guest = Lifecycle::new(backend);
    let vm = guest.create_vm(&kvm).unwrap();
    guest.kvm_init(&kvm, &vm).unwrap();

    // A session for another policy is refused by the firmware (policy MAC).
    let other = GuestOwner::new(0x3, &mut OsRng).start(&platform.pdh_public(), &mut OsRng);
    let cfg = SevGuestConfig::builder("sev1", 1)
        .dh_cert_file(write_b64("godh2.b64", &other.dh_cert))
        .session_file(write_b64("session2.b64", &other.session.to_bytes()))
        .build()
        .unwrap();
    let mut guest = Lifecycle::new(SevBackend::sev(&cfg, SimFirmware::new(&platform)).unwrap());
    let vm = guest.create_vm(&kvm).unwrap();
    let e = guest.kvm_init(&kvm, &vm).unwrap_err();
    assert!(e.to_string().contains("POLICY_FAILURE"), "{e}");
    // A retry continues after INIT (no "INIT twice" sequence error) and fails the same way.
    let e = guest.kvm_init(&kvm, &vm).unwrap_err();
    assert!(cgs_sev::launch::sequence_error(&e).is_none(), "{e}");
    assert!(e.to_string().contains("POLICY_FAILURE"), "{e}");
}

#[test]
fn bad_files_and_cbitpos_are_clear_errors() {
    let Some(kvm) = kvm_or_skip("bad_files_and_cbitpos_are_clear_errors") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let missing = SevGuestConfig::builder("sev0", 1)
        .dh_cert_file("/nonexistent/godh.b64")
        .build()
        .unwrap();
    let e = SevBackend::sev(&missing, SimFirmware::new(&platform)).unwrap_err();
    assert!(
        e.to_string()
            .contains("SEV: Failed to read '/nonexistent/godh.b64'"),
        "{e}"
    );
    let path = std::env::temp_dir().join(format!("cgs-sev-{}-bad", std::process::id()));
    std::fs::write(&path, "not base64 !!").unwrap();
    let bad = SevGuestConfig::builder("sev0", 1)
        .session_file(path.to_string_lossy())
        .build()
        .unwrap();
    assert!(matches!(
        SevBackend::sev(&bad, SimFirmware::new(&platform)),
        Err(Error::InvalidInput { .. })
    ));

    let cfg = SevSnpGuestConfig::builder("snp0", 1)
        .cbitpos(47)
        .build()
        .unwrap();
    let mut guest = Lifecycle::new(SevBackend::snp(&cfg, SimFirmware::new(&platform)).unwrap());
    let vm = guest.create_vm(&kvm).unwrap();
    let e = guest.kvm_init(&kvm, &vm).unwrap_err();
    assert!(
        e.to_string()
            .contains("cbitpos check failed, host '51' requested '47'"),
        "{e}"
    );

    // VMSA features beyond what KVM offers are refused before INIT2.
    let cfg = SevSnpGuestConfig::builder("snp0", 1).build().unwrap();
    let backend = SevBackend::snp(&cfg, SimFirmware::new(&platform))
        .unwrap()
        .with_vmsa_features(1 << 9);
    let mut guest = Lifecycle::new(backend);
    let vm = guest.create_vm(&kvm).unwrap();
    assert!(matches!(
        guest.kvm_init(&kvm, &vm),
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(guest.state(), cgs_core::State::New);
}

#[test]
fn legacy_es_init_uses_the_legacy_vmsa_preset() {
    let Some(kvm) = kvm_or_skip("legacy_es_init_uses_the_legacy_vmsa_preset") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    for (legacy, preset) in [
        (cgs_core::config::OnOffAuto::Auto, "qemu-legacy-init"),
        (cgs_core::config::OnOffAuto::Off, "qemu"),
    ] {
        let mut cfg = SevGuestConfig::new("es0", 1);
        cfg.policy = 0x5;
        cfg.legacy_vm_type = legacy;
        let backend = SevBackend::sev(&cfg, SimFirmware::new(&platform)).unwrap();
        assert_eq!(backend.vmsa_builder().preset.name, preset);
        assert_eq!(backend.platform(), Platform::SevEs);
        let mut guest = Lifecycle::new(backend);
        let vm = guest.create_vm(&kvm).unwrap();
        guest.kvm_init(&kvm, &vm).unwrap();
        let vcpu = guest.create_vcpu(&vm, 0).unwrap();
        guest.set_vcpu_state(&vm, 0, &vcpu).unwrap();
        let vmsa = guest.backend().vmsas()[0].clone();
        // MXCSR lives at VMSA offset 0x408: 0 with the legacy ES_INIT, 0x1F80 with INIT2.
        let mxcsr = u32::from_le_bytes(vmsa.as_bytes()[0x408..0x40C].try_into().unwrap());
        assert_eq!(mxcsr, if preset == "qemu" { 0x1F80 } else { 0 });
        guest.finalize(&vm).unwrap();
    }
}
