//! Every illegal launch order: refused by the launchers with a typed error and no firmware call,
//! and refused by the simulated firmware itself with the real status codes. Plus the real
//! KVM firmware on a host without SEV.

use cgs_core::config::{SevGuestConfig, SevSnpGuestConfig};
use cgs_core::testing::kvm_or_skip;
use cgs_core::{Error, Lifecycle};
use cgs_sev::backend::SevBackend;
use cgs_sev::firmware::kvm::{KvmFirmware, NO_SEV};
use cgs_sev::firmware::sim::{GuestState, SimConfig, SimFirmware, SimPlatform};
use cgs_sev::firmware::{
    status_of, Flavour, InitParams, LaunchStart, SevFirmware, SevStatus, SnpLaunchFinish,
    SnpLaunchStart, SnpPageType, SnpUpdate,
};
use cgs_sev::launch::sev::{SevLauncher, StartParams};
use cgs_sev::launch::snp::{SnpLauncher, SnpRegion};
use cgs_sev::launch::{sequence_error, LaunchState};
use cgs_sev::measure::vmsa::VmsaPage;
use cgs_sev::session::{PacketHeader, PACKET_HEADER_LEN};
use cgs_sev::testing::GmemRegion;
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::VolatileSlice;

fn vmsa(snp: bool) -> VmsaPage {
    cgs_sev::measure::vmsa::VmsaBuilder::new(cgs_sev::measure::VmmPreset::QEMU)
        .signature(cgs_sev::measure::CpuSignature(0x00800F12))
        .sev_features(u64::from(snp))
        .bsp()
        .unwrap()
        .to_vmsa()
}

/// Assert `r` is a sequence error for `op` and that the launch state is `state`.
fn refused<T: std::fmt::Debug>(r: cgs_core::Result<T>, op: &str) {
    let e = r.unwrap_err();
    let s = sequence_error(&e).unwrap_or_else(|| panic!("not a sequence error: {e}"));
    assert_eq!(s.op, op, "{e}");
}

struct Buf(Vec<u8>);
impl Buf {
    fn new(len: usize) -> Self {
        Buf(vec![0x42; len])
    }
    fn slice(&mut self) -> VolatileSlice<'_> {
        VolatileSlice::from(&mut self.0[..])
    }
}

fn header() -> PacketHeader {
    PacketHeader::from_bytes(&[0; PACKET_HEADER_LEN]).unwrap()
}

fn vm(kvm: &Kvm) -> VmFd {
    kvm.create_vm().unwrap()
}

#[test]
fn sev_launcher_refuses_every_illegal_order() {
    let Some(kvm) = kvm_or_skip("sev_launcher_refuses_every_illegal_order") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let vm = vm(&kvm);
    let mut buf = Buf::new(4096);
    let mut l = SevLauncher::new(SimFirmware::new(&platform), 0x1).unwrap();

    refused(l.start(&vm, &StartParams::default()), "LAUNCH_START");
    refused(l.update_data(&vm, 0, &buf.slice()), "LAUNCH_UPDATE_DATA");
    refused(l.measure(&vm), "LAUNCH_MEASURE");
    refused(l.finish(&vm), "LAUNCH_FINISH");
    l.init(&vm, false, 0).unwrap();
    refused(l.init(&vm, false, 0), "INIT");
    refused(l.measure(&vm), "LAUNCH_MEASURE");
    refused(
        l.inject_secret(&vm, 0, &header(), &[0; 16], &buf.slice()),
        "LAUNCH_SECRET",
    );
    l.start(&vm, &StartParams::default()).unwrap();
    refused(l.start(&vm, &StartParams::default()), "LAUNCH_START");
    refused(l.update_vmsa(&vm, &[vmsa(false)]), "LAUNCH_UPDATE_VMSA");
    refused(l.finish(&vm), "LAUNCH_FINISH");
    refused(l.attestation_report(&vm, [0; 16]), "GET_ATTESTATION_REPORT");
    refused(
        l.inject_secret(&vm, 0, &header(), &[0; 16], &buf.slice()),
        "LAUNCH_SECRET",
    );
    l.update_data(&vm, 0, &buf.slice()).unwrap();
    l.measure(&vm).unwrap();
    let calls = l.firmware().stats().launch_update_data_calls;
    refused(l.update_data(&vm, 0, &buf.slice()), "LAUNCH_UPDATE_DATA");
    assert_eq!(
        l.firmware().stats().launch_update_data_calls,
        calls,
        "no ioctl"
    );
    refused(l.measure(&vm), "LAUNCH_MEASURE");
    l.finish(&vm).unwrap();
    refused(l.finish(&vm), "LAUNCH_FINISH");
    refused(
        l.inject_secret(&vm, 0, &header(), &[0; 16], &buf.slice()),
        "LAUNCH_SECRET",
    );
    assert_eq!(l.state(), LaunchState::Finished);
    assert_eq!(l.firmware().guest_state(), Some(GuestState::Running));
    l.attestation_report(&vm, [1; 16]).unwrap();
}

#[test]
fn sev_es_launcher_requires_vmsa_before_measure() {
    let Some(kvm) = kvm_or_skip("sev_es_launcher_requires_vmsa_before_measure") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let vm = vm(&kvm);
    let mut buf = Buf::new(4096);
    let mut l = SevLauncher::new(SimFirmware::new(&platform), 0x5).unwrap();
    assert!(
        l.init(&vm, true, 0x20).is_err(),
        "legacy ES_INIT has no features"
    );
    l.init(&vm, false, 0).unwrap();
    l.start(&vm, &StartParams::default()).unwrap();
    refused(l.measure(&vm), "LAUNCH_MEASURE");
    l.update_vmsa(&vm, &[vmsa(false)]).unwrap();
    refused(l.update_vmsa(&vm, &[vmsa(false)]), "LAUNCH_UPDATE_VMSA");
    refused(l.update_data(&vm, 0, &buf.slice()), "LAUNCH_UPDATE_DATA");
    l.measure(&vm).unwrap();
    l.finish(&vm).unwrap();
}

#[test]
fn snp_launcher_refuses_every_illegal_order() {
    let Some(kvm) = kvm_or_skip("snp_launcher_refuses_every_illegal_order") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let vm = vm(&kvm);
    let mem = GmemRegion::new(&vm, 0, 0x10_0000, 0x2000).unwrap();
    let region = || SnpRegion {
        gpa: 0x10_0000,
        data: mem.slice(0x10_0000, 4096).unwrap(),
        page_type: SnpPageType::Normal,
    };
    let finish = SnpLaunchFinish {
        id_block: None,
        id_auth: None,
        author_key: false,
        vcek_disabled: false,
        host_data: [0; 32],
    };
    let mut l = SnpLauncher::new(SimFirmware::new(&platform), 0x30000, [0; 16]).unwrap();
    refused(l.start(&vm, None), "SNP_LAUNCH_START");
    refused(l.update(&vm, &[region()]), "SNP_LAUNCH_UPDATE");
    refused(l.finish(&vm, &finish, &[vmsa(true)]), "SNP_LAUNCH_FINISH");
    refused(l.enable_req_certs(&kvm, &vm), "SNP_ENABLE_REQ_CERTS");
    l.init(&vm, 0).unwrap();
    refused(l.init(&vm, 0), "INIT2");
    refused(l.update(&vm, &[region()]), "SNP_LAUNCH_UPDATE");
    refused(l.finish(&vm, &finish, &[vmsa(true)]), "SNP_LAUNCH_FINISH");
    l.start(&vm, None).unwrap();
    refused(l.start(&vm, None), "SNP_LAUNCH_START");
    l.update(&vm, &[region()]).unwrap();
    l.finish(&vm, &finish, &[vmsa(true)]).unwrap();
    let calls = l.firmware().stats().snp_launch_update_calls;
    refused(l.update(&vm, &[region()]), "SNP_LAUNCH_UPDATE");
    assert_eq!(
        l.firmware().stats().snp_launch_update_calls,
        calls,
        "no ioctl"
    );
    refused(l.finish(&vm, &finish, &[vmsa(true)]), "SNP_LAUNCH_FINISH");
    refused(l.enable_req_certs(&kvm, &vm), "SNP_ENABLE_REQ_CERTS");
    assert!(
        SnpLauncher::new(SimFirmware::new(&platform), 0x10000, [0; 16]).is_err(),
        "bit 17 must be set"
    );
}

fn errno(e: &Error) -> Option<i32> {
    e.errno()
}

#[test]
fn simulated_firmware_answers_with_real_status_codes() {
    let Some(kvm) = kvm_or_skip("simulated_firmware_answers_with_real_status_codes") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let vm = vm(&kvm);
    let mut buf = Buf::new(4096);

    // Before INIT, KVM answers ENOTTY.
    let mut fw = SimFirmware::new(&platform);
    assert_eq!(
        errno(&fw.launch_measure(&vm).unwrap_err()),
        Some(libc::ENOTTY)
    );

    // SEV: commands in the wrong firmware state.
    fw.init(&vm, &InitParams::Legacy(Flavour::Sev)).unwrap();
    let start = LaunchStart {
        handle: 0,
        policy: 0x1,
        dh_cert: None,
        session: None,
    };
    let e = fw.launch_measure(&vm).unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::INVALID_GUEST), "{e}");
    fw.launch_start(&vm, &start).unwrap();
    let wrong_state = |e: Error| {
        assert_eq!(status_of(&e), Some(SevStatus::INVALID_GUEST_STATE), "{e}");
        assert!(e.to_string().contains("INVALID_GUEST_STATE"));
    };
    wrong_state(fw.launch_start(&vm, &start).unwrap_err());
    wrong_state(fw.launch_finish(&vm).unwrap_err());
    wrong_state(
        fw.launch_secret(&vm, 0, &header(), &[0; 4096], &buf.slice())
            .unwrap_err(),
    );
    wrong_state(fw.attestation_report(&vm, [0; 16]).unwrap_err());
    fw.launch_measure(&vm).unwrap();
    wrong_state(fw.launch_update_data(&vm, 0, &buf.slice()).unwrap_err());
    // SNP commands on an SEV VM, a policy the platform refuses.
    assert_eq!(
        errno(
            &fw.snp_launch_start(
                &vm,
                &SnpLaunchStart {
                    policy: 0x30000,
                    gosvw: [0; 16]
                }
            )
            .unwrap_err()
        ),
        Some(libc::EINVAL)
    );
    let mut es = SimFirmware::new(&platform);
    es.init(&vm, &InitParams::Legacy(Flavour::SevEs)).unwrap();
    let e = es.launch_start(&vm, &start).unwrap_err();
    assert_eq!(
        status_of(&e),
        Some(SevStatus::POLICY_FAILURE),
        "ES guest without ES policy"
    );

    // SNP: legacy commands are EPERM, pages must be private, no page twice, no update after
    // finish.
    let mut snp = SimFirmware::new(&platform);
    let bad_features = InitParams::Init2 {
        flavour: Flavour::SevSnp,
        vmsa_features: 1 << 9,
        ghcb_version: 0,
    };
    assert_eq!(
        errno(&snp.init(&vm, &bad_features).unwrap_err()),
        Some(libc::EINVAL)
    );
    snp.init(
        &vm,
        &InitParams::Init2 {
            flavour: Flavour::SevSnp,
            vmsa_features: 0,
            ghcb_version: 0,
        },
    )
    .unwrap();
    assert_eq!(
        errno(&snp.launch_start(&vm, &start).unwrap_err()),
        Some(libc::EPERM)
    );
    snp.snp_launch_start(
        &vm,
        &SnpLaunchStart {
            policy: 0x30000,
            gosvw: [0; 16],
        },
    )
    .unwrap();
    let mut u = SnpUpdate {
        gfn_start: 0x100,
        source: buf.slice(),
        done: 0,
        page_type: SnpPageType::Normal,
    };
    assert_eq!(
        errno(&snp.snp_launch_update(&vm, &mut u).unwrap_err()),
        Some(libc::EINVAL),
        "not private"
    );
    snp.snp_set_private(&vm, 0x100_000, 4096).unwrap();
    snp.snp_launch_update(&vm, &mut u).unwrap();
    assert_eq!((u.done, u.gfn_start), (4096, 0x101));
    let mut again = SnpUpdate {
        gfn_start: 0x100,
        source: buf.slice(),
        done: 0,
        page_type: SnpPageType::Normal,
    };
    let e = snp.snp_launch_update(&vm, &mut again).unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::INVALID_PAGE_STATE), "{e}");
    let finish = SnpLaunchFinish {
        id_block: None,
        id_auth: None,
        author_key: false,
        vcek_disabled: false,
        host_data: [0; 32],
    };
    let e = snp
        .snp_launch_finish(&vm, &finish, &[vmsa(false)])
        .unwrap_err();
    assert_eq!(
        status_of(&e),
        Some(SevStatus::INVALID_PARAM),
        "VMSA without SNP_ACTIVE"
    );
    snp.snp_launch_finish(&vm, &finish, &[vmsa(true)]).unwrap();
    let e = snp.snp_launch_update(&vm, &mut again).unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::INVALID_GUEST_STATE), "{e}");
    let e = snp
        .snp_launch_finish(&vm, &finish, &[vmsa(true)])
        .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::INVALID_GUEST_STATE), "{e}");
}

#[test]
fn real_firmware_without_sev_is_a_clear_error() {
    let Some(kvm) = kvm_or_skip("real_firmware_without_sev_is_a_clear_error") else {
        return;
    };
    let vm = vm(&kvm);
    if KvmFirmware::probe(&vm).is_ok() {
        eprintln!("SKIP real_firmware_without_sev_is_a_clear_error: this host has SEV");
        return;
    }
    let unsupported = |e: Error| match &e {
        Error::Unsupported { why, .. } => assert!(why.contains("this KVM has no SEV"), "{e}"),
        _ => panic!("expected Unsupported, got {e}"),
    };
    unsupported(KvmFirmware::open(&kvm, "/dev/sev").unwrap_err());
    let mut fw = KvmFirmware::without_device();
    unsupported(fw.init(&vm, &InitParams::Legacy(Flavour::Sev)).unwrap_err());
    unsupported(
        fw.init(
            &vm,
            &InitParams::Init2 {
                flavour: Flavour::SevSnp,
                vmsa_features: 0,
                ghcb_version: 0,
            },
        )
        .unwrap_err(),
    );
    unsupported(fw.launch_measure(&vm).unwrap_err());
    assert!(NO_SEV.contains("ENOTTY"));
    assert!(matches!(
        fw.snp_set_private(&vm, 0, 4096),
        Err(Error::Unsupported { .. })
    ));
    assert!(fw.vmsa_features(&kvm).is_err());
    assert!(matches!(fw.build(), Err(Error::Unsupported { .. })));

    // Through the backend and the lifecycle: SEV (legacy VM type) fails at kvm_init, SNP at
    // create_vm (this KVM lists no SNP VM type).
    let mut sev = Lifecycle::new(
        SevBackend::sev(
            &SevGuestConfig::new("sev0", 1),
            KvmFirmware::without_device(),
        )
        .unwrap(),
    );
    let vm = sev.create_vm(&kvm).unwrap();
    unsupported(sev.kvm_init(&kvm, &vm).unwrap_err());
    let snp = Lifecycle::new(
        SevBackend::snp(
            &SevSnpGuestConfig::new("snp0", 1),
            KvmFirmware::without_device(),
        )
        .unwrap(),
    );
    let e = snp.create_vm(&kvm).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
}
