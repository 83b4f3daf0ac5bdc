//! Full SEV, SEV-ES and SEV-SNP launches of real KVM VMs over the secure-processor simulator.

use std::sync::Arc;

use cgs_core::config::{OnOffAuto, SevGuestConfig, SevSnpGuestConfig};
use cgs_core::testing::{kvm_or_skip, map_guest_memory, run_to_halt};
use cgs_core::{Error, Lifecycle, PageType};
use cgs_sev::backend::SevBackend;
use cgs_sev::firmware::sim::{
    verify_legacy_report, SimConfig, SimFirmware, SimPlatform, UpdateFaults,
};
use cgs_sev::firmware::{status_of, SevStatus};
use cgs_sev::launch::sev::StartParams;
use cgs_sev::measure::gctx::Gctx;
use cgs_sev::measure::idblock::{IdAuth, IdBlock, SnpSigningKey};
use cgs_sev::report::AttestationReport;
use cgs_sev::session::{FirmwareBuild, GuestOwner};
use cgs_sev::testing::{reset_vector_payload, GmemRegion, RESET_PAGE_GPA};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const MEM_GPA: u64 = 0xFFFF_0000;
const MEM_SIZE: usize = 0x1_0000;
const MSG: &[u8] = b"hello from a confidential guest\n";

fn snp_config(policy: u64) -> SevSnpGuestConfig {
    SevSnpGuestConfig::builder("snp0", 1)
        .policy(policy)
        .host_data([0xAB; 32])
        .build()
        .unwrap()
}

struct SnpGuest {
    guest: Lifecycle<SevBackend<SimFirmware>>,
    vm: VmFd,
    vcpu: VcpuFd,
    mem: GmemRegion,
}

/// Create the VM and memory, kvm_init, one vCPU; the payload page is written, not launched.
fn snp_guest(kvm: &Kvm, platform: &Arc<SimPlatform>, cfg: &SevSnpGuestConfig) -> SnpGuest {
    snp_guest_with(
        kvm,
        SevBackend::snp(cfg, SimFirmware::new(platform)).unwrap(),
    )
}

/// [`snp_guest`] over a backend the test has configured.
fn snp_guest_with(kvm: &Kvm, backend: SevBackend<SimFirmware>) -> SnpGuest {
    let mut guest = Lifecycle::new(backend);
    let vm = guest.create_vm(kvm).unwrap();
    let mem = GmemRegion::new(&vm, 0, MEM_GPA, MEM_SIZE).unwrap();
    mem.write(RESET_PAGE_GPA, &reset_vector_payload(MSG).unwrap())
        .unwrap();
    guest.kvm_init(kvm, &vm).unwrap();
    let vcpu = guest.create_vcpu(&vm, 0).unwrap();
    SnpGuest {
        guest,
        vm,
        vcpu,
        mem,
    }
}

impl SnpGuest {
    /// Launch-updates `len` bytes at `gpa` as `page_type`.
    fn launch(&mut self, gpa: u64, len: usize, page_type: PageType) {
        self.guest
            .launch_update(&self.vm, gpa, self.mem.slice(gpa, len).unwrap(), page_type)
            .unwrap();
    }

    /// Launch-updates the payload page as NORMAL.
    fn launch_reset_page(&mut self) {
        self.launch(RESET_PAGE_GPA, 4096, PageType::Normal);
    }

    /// Sets the vCPU's state and finalizes the launch.
    fn finalize(&mut self) -> Result<(), Error> {
        self.guest.set_vcpu_state(&self.vm, 0, &self.vcpu).unwrap();
        self.guest.finalize(&self.vm)
    }

    /// The firmware's attestation report for `report_data`, parsed and checked against the VCEK.
    fn report(&self, platform: &SimPlatform, report_data: [u8; 64]) -> AttestationReport {
        let raw = self
            .guest
            .backend()
            .firmware()
            .snp_guest_report(report_data, 0)
            .unwrap();
        let report = AttestationReport::parse(&raw).unwrap();
        report.verify(&platform.vcek_public()).unwrap();
        report
    }
}

/// The offline digest of "the reset page as NORMAL" plus the backend's VMSAs.
fn expected_snp_digest(backend: &SevBackend<SimFirmware>, page: &[u8]) -> [u8; 48] {
    let mut g = Gctx::new();
    g.update_normal_pages(RESET_PAGE_GPA, page).unwrap();
    let vmsa = backend.vmsa_builder().bsp().unwrap().to_vmsa();
    g.update_vmsa(&vmsa);
    g.ld()
}

#[test]
fn snp_full_launch_runs_and_attests() {
    let Some(kvm) = kvm_or_skip("snp_full_launch_runs_and_attests") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let mut g = snp_guest(&kvm, &platform, &snp_config(0x30000));
    let page = g.mem.read(RESET_PAGE_GPA, 4096).unwrap();
    g.launch_reset_page();
    assert!(
        g.guest.ensure_ready().is_err(),
        "ready guard before finalize"
    );
    g.finalize().unwrap();

    let out = run_to_halt(&g.guest, &mut g.vcpu, 1000).unwrap();
    assert_eq!(out, MSG);

    let report = g.report(&platform, [7; 64]);
    let SnpGuest { mut guest, vm, .. } = g;
    let fw = guest.backend().firmware();
    let host = fw.host_view(RESET_PAGE_GPA, &page).unwrap();
    assert_ne!(host, page, "the host reads ciphertext from a private page");
    assert_eq!(
        report.body.measurement,
        expected_snp_digest(guest.backend(), &page)
    );
    assert_eq!(report.body.host_data, [0xAB; 32]);
    assert_eq!(report.body.report_data, [7; 64]);
    assert_eq!(report.body.policy, 0x30000);
    let handle = fw.handle().unwrap();
    assert!(guest.migration_blocker().is_some());
    assert!(guest.reset(&vm).is_err(), "SNP vCPUs are not resettable");
    let entry = platform.rmp_entry(handle, RESET_PAGE_GPA / 4096).unwrap();
    assert!(entry.assigned && entry.validated);
}

#[test]
fn snp_id_block_checks_the_digest() {
    let Some(kvm) = kvm_or_skip("snp_id_block_checks_the_digest") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let id_key = SnpSigningKey::from_scalar(&[0x11; 48]).unwrap();
    let author = SnpSigningKey::from_scalar(&[0x22; 48]).unwrap();

    // The digest predicted offline (the same builder and payload the launch uses).
    let probe = SevBackend::snp(&snp_config(0x30000), SimFirmware::new(&platform)).unwrap();
    let page = reset_vector_payload(MSG).unwrap();
    let good_ld = expected_snp_digest(&probe, &page);

    for (ld, author_key, want) in [
        ([0x5A; 48], false, Some(SevStatus::BAD_MEASUREMENT)),
        (good_ld, true, None),
    ] {
        let mut block = IdBlock::new(ld);
        block.family_id = [3; 16];
        let auth = IdAuth::sign(&block, &id_key, author_key.then_some(&author));
        let cfg = SevSnpGuestConfig::builder("snp0", 1)
            .id_block(block.to_bytes(), auth.as_bytes().to_vec())
            .author_key_enabled(author_key)
            .build()
            .unwrap();
        let mut g = snp_guest(&kvm, &platform, &cfg);
        g.launch_reset_page();
        let res = g.finalize();
        match want {
            Some(status) => {
                let e = res.unwrap_err();
                assert_eq!(status_of(&e), Some(status), "{e}");
                assert!(e.to_string().contains("BAD_MEASUREMENT"), "{e}");
                assert!(!g.guest.is_ready());
            }
            None => {
                res.unwrap();
                let r = g.report(&platform, [0; 64]);
                assert_eq!(r.body.id_key_digest, id_key.public_key_digest());
                assert_eq!(r.body.author_key_digest, author.public_key_digest());
                assert!(r.body.author_key_en);
                assert_eq!(r.body.family_id, [3; 16]);
            }
        }
    }
}

#[test]
fn snp_partial_progress_and_eagain_are_looped() {
    let Some(kvm) = kvm_or_skip("snp_partial_progress_and_eagain_are_looped") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let mut digests = Vec::new();
    for faults in [
        UpdateFaults::default(),
        UpdateFaults {
            max_pages_per_call: Some(3),
            eagain_calls: 2,
        },
    ] {
        let mut g = snp_guest(&kvm, &platform, &snp_config(0x30000));
        g.guest
            .backend_mut()
            .firmware_mut()
            .set_update_faults(faults);
        g.launch(MEM_GPA, MEM_SIZE, PageType::Normal);
        let totals = g.guest.backend().snp_update_totals().unwrap().clone();
        let stats = g.guest.backend().firmware().stats();
        assert_eq!(stats.snp_pages, 16);
        if faults.eagain_calls > 0 {
            // 2 EAGAIN calls of one page each, then 14 pages in calls of at most 3 pages.
            assert_eq!(totals.eagain, 2);
            assert_eq!(totals.calls, 2 + 5);
        } else {
            assert_eq!(totals.calls, 1);
        }
        g.finalize().unwrap();
        digests.push(g.report(&platform, [0; 64]).body.measurement);
    }
    assert_eq!(
        digests[0], digests[1],
        "progress handling does not change the digest"
    );
}

#[test]
fn snp_batches_are_coalesced() {
    let Some(kvm) = kvm_or_skip("snp_batches_are_coalesced") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let SnpGuest {
        mut guest, vm, mem, ..
    } = snp_guest(&kvm, &platform, &snp_config(0x30000));
    let regions: Vec<_> = (0..16u64)
        .map(|i| cgs_core::LaunchRegion {
            gpa: MEM_GPA + i * 4096,
            data: mem.slice(MEM_GPA + i * 4096, 4096).unwrap(),
            page_type: if i < 8 || i == 15 {
                PageType::Normal
            } else {
                PageType::Zero
            },
        })
        .collect();
    guest
        .backend_mut()
        .launch_update_batch(&vm, &regions)
        .unwrap();
    let t = guest.backend().snp_update_totals().unwrap();
    assert_eq!(
        (t.ranges, t.calls),
        (3, 3),
        "normal 0-7, zero 8-14, normal 15"
    );
}

#[test]
fn snp_cpuid_page_is_corrected_and_retried() {
    let Some(kvm) = kvm_or_skip("snp_cpuid_page_is_corrected_and_retried") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let mut page = cgs_sev::cpuid::CpuidPage::from_supported(&kvm).unwrap();
    page.entries.push(cgs_sev::cpuid::CpuidFunction {
        eax_in: 0x8000_001D,
        ecx_in: 3,
        edx: 0x6,
        ..Default::default()
    });
    let cpuid_gpa = MEM_GPA;
    for retry in [
        cgs_sev::launch::snp::CpuidRetry::UseCorrected,
        cgs_sev::launch::snp::CpuidRetry::Fail,
    ] {
        let backend = SevBackend::snp(&snp_config(0x30000), SimFirmware::new(&platform))
            .unwrap()
            .with_cpuid_retry(retry);
        let SnpGuest {
            mut guest, vm, mem, ..
        } = snp_guest_with(&kvm, backend);
        mem.write(cpuid_gpa, &page.to_bytes().unwrap()).unwrap();
        let res = guest.launch_update(
            &vm,
            cpuid_gpa,
            mem.slice(cpuid_gpa, 4096).unwrap(),
            PageType::Cpuid,
        );
        match retry {
            cgs_sev::launch::snp::CpuidRetry::UseCorrected => {
                res.unwrap();
                let changes = &guest.backend().snp_update_totals().unwrap().cpuid_changes;
                assert_eq!(changes.len(), 1);
                assert_eq!((changes[0].eax_in, changes[0].ecx_in), (0x8000_001D, 3));
                assert_eq!(changes[0].corrected.unwrap()[3], 0x2);
            }
            cgs_sev::launch::snp::CpuidRetry::Fail => {
                let e = res.unwrap_err();
                assert!(
                    e.to_string().contains("function 0x8000001d index 0x3"),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn snp_policy_failures() {
    let Some(kvm) = kvm_or_skip("snp_policy_failures") else {
        return;
    };
    // Host-side: bit 17 clear is refused before any ioctl.
    let platform = SimPlatform::new(SimConfig::default());
    let cfg = snp_config(0x10000);
    assert!(matches!(
        SevBackend::snp(&cfg, SimFirmware::new(&platform)),
        Err(Error::InvalidInput { .. })
    ));
    // Firmware-side: no SMT on an SMT host, single socket on two sockets, ABI 2.0 > 1.55.
    let two_sockets = SimPlatform::new(SimConfig {
        sockets: 2,
        ..SimConfig::default()
    });
    for (platform, policy) in [
        (&platform, 0x20000u64),
        (&two_sockets, 0x130000),
        (&platform, 0x30200),
    ] {
        let backend = SevBackend::snp(&snp_config(policy), SimFirmware::new(platform)).unwrap();
        let mut guest = Lifecycle::new(backend);
        let vm = guest.create_vm(&kvm).unwrap();
        let e = guest.kvm_init(&kvm, &vm).unwrap_err();
        assert_eq!(
            status_of(&e),
            Some(SevStatus::POLICY_FAILURE),
            "{policy:#x}: {e}"
        );
    }
}

#[test]
fn snp_extended_request_certificates() {
    let Some(kvm) = kvm_or_skip("snp_extended_request_certificates") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let mut table = cgs_sev::certs::CertTable::new();
    table
        .push(cgs_sev::certs::VCEK, b"vcek-der".to_vec())
        .unwrap();
    platform.set_certificates(table.clone());
    for enable in [false, true] {
        let backend = SevBackend::snp(&snp_config(0x30000), SimFirmware::new(&platform))
            .unwrap()
            .with_req_certs(enable);
        let mut g = snp_guest_with(&kvm, backend);
        g.launch_reset_page();
        g.finalize().unwrap();
        let mut buf = vec![0u8; 4096];
        let fw = g.guest.backend().firmware();
        fw.snp_ext_guest_report([1; 64], 0, &mut buf).unwrap();
        let got = cgs_sev::certs::CertTable::parse(&buf).unwrap();
        if enable {
            assert_eq!(got, table);
            let mut small = vec![0u8; 16];
            assert!(fw.snp_ext_guest_report([1; 64], 0, &mut small).is_err());
        } else {
            assert!(
                got.entries.is_empty(),
                "no certificates without ENABLE_REQ_CERTS"
            );
        }
    }
}

fn sev_memory() -> GuestMemoryMmap {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(MEM_GPA), MEM_SIZE)]).unwrap();
    mem.write_slice(
        &reset_vector_payload(MSG).unwrap(),
        GuestAddress(RESET_PAGE_GPA),
    )
    .unwrap();
    mem
}

fn run_sev_launch(kvm: &Kvm, policy: u32) {
    let platform = SimPlatform::new(SimConfig::default());
    let owner = GuestOwner::new(policy, &mut OsRng);
    let blobs = owner.start(&platform.pdh_public(), &mut OsRng);
    let mut cfg = SevGuestConfig::new("sev0", 1);
    cfg.policy = policy;
    cfg.legacy_vm_type = OnOffAuto::Off;
    let mut backend = SevBackend::sev(&cfg, SimFirmware::new(&platform))
        .unwrap()
        .with_start_params(StartParams {
            handle: 0,
            dh_cert: Some(blobs.dh_cert.clone()),
            session: Some(blobs.session.to_bytes().to_vec()),
        });
    if policy & 4 != 0 {
        backend = backend.with_vmsa_features(cgs_sev::measure::vmsa::SEV_FEATURE_DEBUG_SWAP);
    }
    let mut guest = Lifecycle::new(backend);
    let vm = guest.create_vm(kvm).unwrap();
    let mem = sev_memory();
    map_guest_memory(&vm, &mem).unwrap();
    guest.kvm_init(kvm, &vm).unwrap();
    let ram = mem.get_slice(GuestAddress(MEM_GPA), MEM_SIZE).unwrap();
    guest.backend_mut().register_memory(&vm, &ram).unwrap();
    assert_eq!(
        guest.backend().firmware().stats().registered_bytes,
        MEM_SIZE as u64
    );
    let mut vcpu = guest.create_vcpu(&vm, 0).unwrap();
    guest
        .launch_update_memory(
            &vm,
            &mem,
            GuestAddress(RESET_PAGE_GPA),
            4096,
            PageType::Normal,
        )
        .unwrap();
    guest.set_vcpu_state(&vm, 0, &vcpu).unwrap();

    // The guest owner's expected digest: the launched page (and, for ES, the VMSA).
    let mut page = vec![0u8; 4096];
    mem.read_slice(&mut page, GuestAddress(RESET_PAGE_GPA))
        .unwrap();
    let mut h = Sha256::new();
    h.update(&page);
    if policy & 4 != 0 {
        for v in guest.backend().vmsas() {
            h.update(v.as_bytes());
        }
    }
    let digest: [u8; 32] = h.finalize().into();

    let m = guest.backend_mut().measure(&vm).unwrap();
    let build: FirmwareBuild = platform.config().build;
    owner.verify_measurement(build, &digest, &m).unwrap();

    // Inject a secret at a 16-byte aligned GPA in guest memory.
    let secret_gpa = MEM_GPA + 0x8000;
    let secret = b"0123456789abcdef0123456789abcdef";
    let (hdr, ct) = owner.seal_secret(&m, [9; 16], secret).unwrap();
    let target = mem
        .get_slice(GuestAddress(secret_gpa), secret.len())
        .unwrap();
    // A tampered packet is refused by name.
    let mut bad = ct.clone();
    bad[0] ^= 1;
    let e = guest
        .backend_mut()
        .inject_secret(&vm, secret_gpa, &hdr, &bad, &target)
        .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::BAD_MEASUREMENT));
    guest
        .backend_mut()
        .inject_secret(&vm, secret_gpa, &hdr, &ct, &target)
        .unwrap();
    let mut seen = vec![0u8; secret.len()];
    mem.read_slice(&mut seen, GuestAddress(secret_gpa)).unwrap();
    assert_eq!(&seen, secret, "the guest sees the decrypted secret");
    let host = guest
        .backend()
        .firmware()
        .host_view(secret_gpa, &seen)
        .unwrap();
    let mut clear = vec![0u8; secret.len()];
    let e = guest
        .backend_mut()
        .dbg_decrypt(&vm, secret_gpa, &target, &mut clear)
        .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::POLICY_FAILURE), "NODBG: {e}");
    assert_ne!(&host[..], &secret[..], "the host sees ciphertext");

    let report = guest
        .backend_mut()
        .attestation_report(&vm, [5; 16])
        .unwrap();
    let (mnonce, ld, pol) = verify_legacy_report(&report, &platform.pek_public()).unwrap();
    assert_eq!((mnonce, ld, pol), ([5; 16], digest, policy));

    guest.finalize(&vm).unwrap();
    assert_eq!(run_to_halt(&guest, &mut vcpu, 1000).unwrap(), MSG);
    assert!(guest.migration_blocker().is_some());
    if policy & 4 != 0 {
        assert!(guest.reset(&vm).is_err());
        assert!(guest.backend_mut().set_migration_blocker(None).is_err());
    } else {
        guest.reset(&vm).unwrap();
        guest.backend_mut().set_migration_blocker(None).unwrap();
        assert!(guest.migration_blocker().is_none(), "SEV can be unblocked");
    }
}

#[test]
fn sev_full_launch_with_session_secret_and_report() {
    let Some(kvm) = kvm_or_skip("sev_full_launch_with_session_secret_and_report") else {
        return;
    };
    run_sev_launch(&kvm, 0x1);
}

#[test]
fn sev_es_full_launch_measures_the_vmsa() {
    let Some(kvm) = kvm_or_skip("sev_es_full_launch_measures_the_vmsa") else {
        return;
    };
    run_sev_launch(&kvm, 0x5);
}

#[test]
fn two_guests_encrypt_the_same_page_differently() {
    let Some(kvm) = kvm_or_skip("two_guests_encrypt_the_same_page_differently") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let mut views = Vec::new();
    for _ in 0..2 {
        let mut g = snp_guest(&kvm, &platform, &snp_config(0x30000));
        g.launch_reset_page();
        let SnpGuest { guest, mem, .. } = g;
        let page = mem.read(RESET_PAGE_GPA, 4096).unwrap();
        let fw = guest.backend().firmware();
        let whole = fw.host_view(RESET_PAGE_GPA, &page).unwrap();
        let part = fw.host_view(RESET_PAGE_GPA + 100, &page[100..300]).unwrap();
        assert_eq!(
            &whole[100..300],
            &part[..],
            "the view does not depend on the read's start"
        );
        views.push(
            guest
                .backend()
                .firmware()
                .host_view(RESET_PAGE_GPA, &page)
                .unwrap(),
        );
        let shared = mem.read(MEM_GPA, 4096).unwrap();
        assert_eq!(
            guest
                .backend()
                .firmware()
                .host_view(MEM_GPA, &shared)
                .unwrap(),
            shared,
            "shared pages read as they are"
        );
    }
    assert_ne!(views[0], views[1]);
}

#[test]
fn snp_ovmf_fixture_launch_matches_offline_digest() {
    use cgs_sev::launch::snp::ovmf_launch_plan;
    use cgs_sev::measure::digest::{snp_launch_digest, LaunchInputs};
    use cgs_sev::measure::ovmf::OvmfImage;
    let Some(kvm) = kvm_or_skip("snp_ovmf_fixture_launch_matches_offline_digest") else {
        return;
    };
    let image = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/measure/ovmf_debian_code_suffix.bin"
    ))
    .unwrap();
    let ovmf = OvmfImage::parse(&image).unwrap();
    let inputs = LaunchInputs::qemu(2, cgs_sev::measure::CpuSignature(0x0080_0F12));
    let platform = SimPlatform::new(SimConfig::default());
    let backend = SevBackend::snp(&snp_config(0x30000), SimFirmware::new(&platform))
        .unwrap()
        .with_vmsa_builder(inputs.vmsa_builder(&ovmf).unwrap());
    let mut guest = Lifecycle::new(backend);
    let vm = guest.create_vm(&kvm).unwrap();
    let plan = ovmf_launch_plan(&ovmf).unwrap();
    let flash = GmemRegion::new(&vm, 0, ovmf.gpa(), image.len()).unwrap();
    flash.write(ovmf.gpa(), &image).unwrap();
    let lo = plan[1..].iter().map(|r| r.gpa).min().unwrap();
    let hi = plan[1..].iter().map(|r| r.gpa + r.len).max().unwrap();
    let low = GmemRegion::new(&vm, 1, lo, (hi - lo) as usize).unwrap();
    guest.kvm_init(&kvm, &vm).unwrap();
    let vcpus: Vec<_> = (0..2).map(|i| guest.create_vcpu(&vm, i).unwrap()).collect();
    let mut regions = Vec::new();
    for r in &plan {
        let mem = if r.gpa >= ovmf.gpa() { &flash } else { &low };
        if r.page_type == PageType::Cpuid {
            let page = cgs_sev::cpuid::CpuidPage::from_supported(&kvm).unwrap();
            mem.write(r.gpa, &page.to_bytes().unwrap()).unwrap();
        }
        for p in (0..r.len).step_by(4096) {
            regions.push(cgs_core::LaunchRegion {
                gpa: r.gpa + p,
                data: mem.slice(r.gpa + p, 4096).unwrap(),
                page_type: r.page_type,
            });
        }
    }
    guest
        .backend_mut()
        .launch_update_batch(&vm, &regions)
        .unwrap();
    let totals = guest.backend().snp_update_totals().unwrap().clone();
    assert_eq!(
        totals.calls as usize, totals.ranges,
        "one call per coalesced range"
    );
    assert!(totals.ranges < regions.len());
    for (i, v) in vcpus.iter().enumerate() {
        guest.set_vcpu_state(&vm, i, v).unwrap();
    }
    guest.finalize(&vm).unwrap();
    let raw = guest
        .backend()
        .firmware()
        .snp_guest_report([0; 64], 0)
        .unwrap();
    let report = AttestationReport::parse(&raw).unwrap();
    report.verify(&platform.vcek_public()).unwrap();
    assert_eq!(
        report.body.measurement,
        snp_launch_digest(&ovmf, &inputs).unwrap()
    );
}

#[test]
fn sev_debug_policy_allows_dbg_decrypt() {
    use cgs_sev::firmware::{Flavour, InitParams, LaunchStart, SevFirmware};
    let Some(kvm) = kvm_or_skip("sev_debug_policy_allows_dbg_decrypt") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let vm = kvm.create_vm().unwrap();
    let mut buf = vec![0x5Au8; 4096];
    let plain = buf.clone();
    let src = vm_memory::VolatileSlice::from(&mut buf[..]);
    let mut fw = SimFirmware::new(&platform);
    fw.init(&vm, &InitParams::Legacy(Flavour::Sev)).unwrap();
    fw.launch_start(
        &vm,
        &LaunchStart {
            handle: 0,
            policy: 0,
            dh_cert: None,
            session: None,
        },
    )
    .unwrap();
    fw.launch_update_data(&vm, 0x1000, &src).unwrap();
    assert_ne!(fw.host_view(0x1000, &plain).unwrap(), plain);
    let mut clear = vec![0u8; 4096];
    fw.dbg_decrypt(&vm, 0x1000, &src, &mut clear).unwrap();
    assert_eq!(
        clear, plain,
        "debugging allowed: the host reads the guest's view"
    );
    assert!(fw.dbg_decrypt(&vm, 0x1001, &src, &mut clear).is_err());
}

#[test]
fn snp_guest_requests_its_report_over_the_vmpck_channel() {
    use cgs_sev::guest_msg::GuestChannel;
    let Some(kvm) = kvm_or_skip("snp_guest_requests_its_report_over_the_vmpck_channel") else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let mut g = snp_guest(&kvm, &platform, &snp_config(0x30000));
    let secrets_gpa = MEM_GPA;
    g.launch(secrets_gpa, 4096, PageType::Secrets);
    g.launch_reset_page();
    g.finalize().unwrap();
    let SnpGuest { guest, mem, .. } = g;

    // The guest reads VMPCK0 from its secrets page (filled by the firmware at launch).
    let secrets = mem.read(secrets_gpa, 4096).unwrap();
    let mut channel = GuestChannel::from_secrets_page(&secrets, 0).unwrap();
    let fw = guest.backend().firmware();
    let req = channel.report_request(&[0x33; 64], 0).unwrap();
    let rsp = fw.snp_guest_request(&req).unwrap();
    let raw = channel.open_report_response(&rsp).unwrap();
    let report = AttestationReport::parse(&raw).unwrap();
    report.verify(&platform.vcek_public()).unwrap();
    assert_eq!(report.body.report_data, [0x33; 64]);

    // A replayed request and a tampered one are refused.
    let e = fw.snp_guest_request(&req).unwrap_err();
    assert!(e.to_string().contains("sequence number"), "{e}");
    let mut bad = channel.report_request(&[0; 64], 0).unwrap();
    bad[100] ^= 1;
    assert!(fw.snp_guest_request(&bad).is_err());
    // The next well-formed request still works.
    let req = channel.report_request(&[0x44; 64], 0).unwrap();
    let rsp = fw.snp_guest_request(&req).unwrap();
    assert!(channel.open_report_response(&rsp).is_ok());
}
