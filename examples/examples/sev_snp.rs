//! SEV-SNP (and SEV, SEV-ES) launches of real KVM VMs on this machine, over the secure-processor
//! simulator.
//!
//! ```text
//! cargo run -p cgs-examples --example sev_snp                          # SNP, SEV, SEV-ES payload launches
//! cargo run -p cgs-examples --example sev_snp -- --ovmf /usr/share/ovmf/OVMF.fd   # + OVMF launches
//! cargo run -p cgs-examples --example sev_snp -- --firmware kvm        # the real firmware: "this KVM has no SEV"
//! ```
//!
//! SNP: a `KVM_X86_DEFAULT_VM` (the simulator models the SNP VM type) with guest_memfd memory,
//! INIT2 + SNP_LAUNCH_START at `kvm_init`, the payload launch-updated as NORMAL pages, the vCPU
//! programmed from the same VMSA builder the offline measurement uses, SNP_LAUNCH_FINISH, the
//! ready guard, `KVM_RUN` to HLT; then the guest's attestation report (requested over the
//! VMPCK0 guest-message channel from its secrets page), verified with the VCEK,
//! and its MEASUREMENT compared with the offline launch digest of the same inputs.
//!
//! With `--ovmf`, the OVMF image and its SEV metadata sections (ZERO, SECRETS, CPUID pages) are
//! launched one 4 KiB region per page, as a naive VMM would hand them over; the backend coalesces
//! them, and the example prints how many SNP_LAUNCH_UPDATE calls that took (one per coalesced
//! range) and the digest against `cgs_sev::measure`'s OVMF calculation. OVMF is not run: it would
//! need a real SNP environment (GHCB, #VC) to boot.
//!
//! SEV / SEV-ES: the guest owner's ECDH session, LAUNCH_MEASURE verified by the guest owner
//! against the expected digest, a launch secret injected, the legacy attestation report verified
//! with the PEK, LAUNCH_FINISH, run to HLT.

use std::process::ExitCode;
use std::sync::Arc;

use cgs_core::config::{OnOffAuto, SevGuestConfig, SevSnpGuestConfig};
use cgs_core::testing::{map_guest_memory, run_to_halt};
use cgs_core::{Error, LaunchRegion, Lifecycle, PageType, Result};
use cgs_sev::backend::SevBackend;
use cgs_sev::cpuid::CpuidPage;
use cgs_sev::firmware::kvm::KvmFirmware;
use cgs_sev::firmware::sim::{verify_legacy_report, SimConfig, SimFirmware, SimPlatform};
use cgs_sev::guest_msg::GuestChannel;
use cgs_sev::launch::sev::StartParams;
use cgs_sev::launch::snp::ovmf_launch_plan;
use cgs_sev::measure::digest::{sev_launch_digest, snp_launch_digest, LaunchInputs};
use cgs_sev::measure::gctx::Gctx;
use cgs_sev::measure::ovmf::OvmfImage;
use cgs_sev::measure::{hex, CpuSignature};
use cgs_sev::report::AttestationReport;
use cgs_sev::session::GuestOwner;
use cgs_sev::testing::{reset_vector_payload, GmemRegion, RESET_PAGE_GPA};
use kvm_ioctls::Kvm;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const MEM_GPA: u64 = 0xFFFF_0000;
const MEM_SIZE: usize = 0x1_0000;
const MSG: &[u8] = b"Hello from a simulated SEV guest!\n";
/// EPYC-v4, the backend's default vCPU model.
const SIGNATURE: CpuSignature = CpuSignature(0x0080_0F12);

fn invalid(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::invalid_input(what, e.to_string())
}

fn print_report(r: &AttestationReport) {
    let b = &r.body;
    println!("  report version   {}", b.version);
    println!("  policy           {:#x}", b.policy);
    println!("  vmpl             {}", b.vmpl);
    println!("  signing key      {} (0 = VCEK)", b.signing_key);
    println!("  current TCB      {:#018x}", b.current_tcb);
    println!("  measurement      {}", hex(&b.measurement));
    println!("  host data        {}", hex(&b.host_data));
    println!("  report data      {}…", hex(&b.report_data[..16]));
    println!("  chip id          {}…", hex(&b.chip_id[..16]));
}

fn snp_payload(kvm: &Kvm, platform: &Arc<SimPlatform>) -> Result<()> {
    println!("== SEV-SNP: payload launch on guest_memfd ==");
    let cfg = SevSnpGuestConfig::builder("snp0", 1)
        .host_data([0xC5; 32])
        .build()?;
    let mut guest = Lifecycle::new(SevBackend::snp(&cfg, SimFirmware::new(platform))?);
    let vm = guest.create_vm(kvm)?;
    let mem = GmemRegion::new(&vm, 0, MEM_GPA, MEM_SIZE)?;
    let page = reset_vector_payload(MSG)?;
    mem.write(RESET_PAGE_GPA, &page)?;
    guest.kvm_init(kvm, &vm)?;
    let mut vcpu = guest.create_vcpu(&vm, 0)?;
    // The secrets page (the firmware fills it with the VMPCKs), then the payload.
    let secrets_gpa = MEM_GPA;
    guest.launch_update(
        &vm,
        secrets_gpa,
        mem.slice(secrets_gpa, 4096)?,
        PageType::Secrets,
    )?;
    guest.launch_update(
        &vm,
        RESET_PAGE_GPA,
        mem.slice(RESET_PAGE_GPA, 4096)?,
        PageType::Normal,
    )?;
    guest.set_vcpu_state(&vm, 0, &vcpu)?;
    guest.finalize(&vm)?;
    let out = run_to_halt(&guest, &mut vcpu, 10_000)?;
    println!("  guest wrote      {:?}", String::from_utf8_lossy(&out));

    // The offline measurement of the same inputs: secrets page, payload page, VMSA.
    let mut g = Gctx::new();
    g.update_contentless_pages(PageType::Secrets, secrets_gpa, 4096)
        .map_err(|e| invalid("measurement", e))?;
    g.update_normal_pages(RESET_PAGE_GPA, &page)
        .map_err(|e| invalid("measurement", e))?;
    let vmsa = guest
        .backend()
        .vmsa_builder()
        .bsp()
        .map_err(|e| invalid("VMSA", e))?;
    g.update_vmsa(&vmsa.to_vmsa());

    // The guest asks for its report: MSG_REPORT_REQ sealed with VMPCK0 from its secrets page.
    let secrets = mem.read(secrets_gpa, 4096)?;
    let mut channel = GuestChannel::from_secrets_page(&secrets, 0)?;
    let request = channel.report_request(&[0x42; 64], 0)?;
    let response = guest.backend().firmware().snp_guest_request(&request)?;
    let raw = channel.open_report_response(&response)?;
    let report = AttestationReport::parse(&raw)?;
    report.verify(&platform.vcek_public())?;
    println!("  report           via SNP_GUEST_REQUEST (AES-256-GCM under VMPCK0)");
    println!("  signature        verified with the simulator's VCEK");
    print_report(&report);
    println!("  offline digest   {}", hex(&g.ld()));
    if g.ld() != report.body.measurement {
        return Err(invalid(
            "measurement",
            "launch digest differs from the offline one",
        ));
    }
    println!("  launch digest == offline measurement");
    if let Some(b) = guest.migration_blocker() {
        println!("  migration        blocked: {b}");
    }
    Ok(())
}

fn snp_ovmf(kvm: &Kvm, platform: &Arc<SimPlatform>, image: &[u8], vcpus: u32) -> Result<()> {
    println!(
        "== SEV-SNP: OVMF launch ({} KiB, {vcpus} vCPUs) ==",
        image.len() / 1024
    );
    let ovmf = OvmfImage::parse(image).map_err(|e| invalid("OVMF", e))?;
    let inputs = LaunchInputs::qemu(vcpus, SIGNATURE);
    let builder = inputs
        .vmsa_builder(&ovmf)
        .map_err(|e| invalid("VMSA builder", e))?;
    let cfg = SevSnpGuestConfig::builder("snp1", 1).build()?;
    let backend = SevBackend::snp(&cfg, SimFirmware::new(platform))?.with_vmsa_builder(builder);
    let mut guest = Lifecycle::new(backend);
    let vm = guest.create_vm(kvm)?;

    let plan = ovmf_launch_plan(&ovmf)?;
    let flash = GmemRegion::new(&vm, 0, ovmf.gpa(), image.len())?;
    flash.write(ovmf.gpa(), image)?;
    let sections = &plan[1..];
    let lo = sections.iter().map(|r| r.gpa).min().unwrap_or(0);
    let hi = sections
        .iter()
        .map(|r| r.gpa + r.len)
        .max()
        .unwrap_or(lo + 4096);
    let low = GmemRegion::new(&vm, 1, lo, (hi - lo).max(4096) as usize)?;
    guest.kvm_init(kvm, &vm)?;
    let vcpu_fds = (0..vcpus)
        .map(|i| guest.create_vcpu(&vm, u64::from(i)))
        .collect::<Result<Vec<_>>>()?;

    // One region per page, as a naive VMM hands them over.
    let mut regions = Vec::new();
    for r in &plan {
        let mem = if r.gpa >= ovmf.gpa() { &flash } else { &low };
        if r.page_type == PageType::Cpuid {
            mem.write(r.gpa, &CpuidPage::from_supported(kvm)?.to_bytes()?)?;
        }
        for p in (0..r.len).step_by(4096) {
            regions.push(LaunchRegion {
                gpa: r.gpa + p,
                data: mem.slice(r.gpa + p, 4096)?,
                page_type: r.page_type,
            });
        }
    }
    let pages = regions.len();
    guest.backend_mut().launch_update_batch(&vm, &regions)?;
    let totals = guest
        .backend()
        .snp_update_totals()
        .cloned()
        .unwrap_or_default();
    println!(
        "  {pages} page regions -> {} coalesced ranges -> {} SNP_LAUNCH_UPDATE calls",
        totals.ranges, totals.calls
    );
    for c in &totals.cpuid_changes {
        println!("  CPUID corrected by the firmware: {c}");
    }
    for (i, v) in vcpu_fds.iter().enumerate() {
        guest.set_vcpu_state(&vm, i, v)?;
    }
    guest.finalize(&vm)?;

    let raw = guest.backend().firmware().snp_guest_report([0; 64], 0)?;
    let report = AttestationReport::parse(&raw)?;
    report.verify(&platform.vcek_public())?;
    let offline = snp_launch_digest(&ovmf, &inputs).map_err(|e| invalid("measurement", e))?;
    println!("  launch digest    {}", hex(&report.body.measurement));
    println!("  offline digest   {}", hex(&offline));
    if offline != report.body.measurement {
        return Err(invalid(
            "measurement",
            "OVMF launch digest differs from the offline one",
        ));
    }
    println!(
        "  launch digest == offline measurement (cgs_sev::measure, sev-snp-measure's algorithm)"
    );
    Ok(())
}

fn sev_launch(
    kvm: &Kvm,
    platform: &Arc<SimPlatform>,
    policy: u32,
    ovmf: Option<&[u8]>,
) -> Result<()> {
    let es = policy & 4 != 0;
    println!(
        "== {}: {} launch, policy {policy:#x} ==",
        if es { "SEV-ES" } else { "SEV" },
        if ovmf.is_some() { "OVMF" } else { "payload" }
    );
    let owner = GuestOwner::new(policy, &mut OsRng);
    let blobs = owner.start(&platform.pdh_public(), &mut OsRng);
    let mut cfg = SevGuestConfig::new("sev0", 1);
    cfg.policy = policy;
    cfg.legacy_vm_type = OnOffAuto::Off;
    let backend =
        SevBackend::sev(&cfg, SimFirmware::new(platform))?.with_start_params(StartParams {
            handle: 0,
            dh_cert: Some(blobs.dh_cert),
            session: Some(blobs.session.to_bytes().to_vec()),
        });
    let mut guest = Lifecycle::new(backend);
    let vm = guest.create_vm(kvm)?;
    let (gpa, data) = match ovmf {
        Some(img) => (0x1_0000_0000 - img.len() as u64, img.to_vec()),
        None => (RESET_PAGE_GPA, reset_vector_payload(MSG)?),
    };
    let base = gpa.min(MEM_GPA);
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(base), (0x1_0000_0000 - base) as usize)])
            .map_err(|e| invalid("guest memory", e))?;
    mem.write_slice(&data, GuestAddress(gpa))
        .map_err(|e| invalid("guest memory", e))?;
    map_guest_memory(&vm, &mem)?;
    guest.kvm_init(kvm, &vm)?;
    // Pin guest RAM (KVM_MEMORY_ENCRYPT_REG_REGION), as QEMU does for every RAM block.
    let ram = mem
        .get_slice(GuestAddress(base), (0x1_0000_0000 - base) as usize)
        .map_err(|e| invalid("guest memory", e))?;
    guest.backend_mut().register_memory(&vm, &ram)?;
    let mut vcpu = guest.create_vcpu(&vm, 0)?;
    guest.launch_update_memory(&vm, &mem, GuestAddress(gpa), data.len(), PageType::Normal)?;
    guest.set_vcpu_state(&vm, 0, &vcpu)?;

    // What the guest owner expects.
    let digest: [u8; 32] = match (ovmf, es) {
        (Some(img), false) => {
            let o = OvmfImage::parse(img).map_err(|e| invalid("OVMF", e))?;
            sev_launch_digest(&o, None).map_err(|e| invalid("measurement", e))?
        }
        _ => {
            let mut h = Sha256::new();
            h.update(&data);
            for v in guest.backend().vmsas().iter().filter(|_| es) {
                h.update(v.as_bytes());
            }
            h.finalize().into()
        }
    };
    let m = guest.backend_mut().measure(&vm)?;
    let build = platform.config().build;
    owner.verify_measurement(build, &digest, &m)?;
    println!(
        "  LAUNCH_MEASURE   {} (verified by the guest owner)",
        hex(&m.measure)
    );
    println!("  launch digest    {}", hex(&digest));

    let secret_gpa = MEM_GPA + 0x8000;
    let secret = b"guest owner secret: 0123456789ab";
    let mut iv = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut iv);
    let (hdr, ct) = owner.seal_secret(&m, iv, secret)?;
    let target = mem
        .get_slice(GuestAddress(secret_gpa), secret.len())
        .map_err(|e| invalid("guest memory", e))?;
    guest
        .backend_mut()
        .inject_secret(&vm, secret_gpa, &hdr, &ct, &target)?;
    println!(
        "  LAUNCH_SECRET    {} bytes injected at {secret_gpa:#x}",
        secret.len()
    );

    let report = guest.backend_mut().attestation_report(&vm, [7; 16])?;
    let (_, ld, pol) = verify_legacy_report(&report, &platform.pek_public())?;
    println!(
        "  attestation      PEK signature verified, digest {}, policy {pol:#x}",
        hex(&ld[..8])
    );
    guest.finalize(&vm)?;
    if ovmf.is_none() {
        let out = run_to_halt(&guest, &mut vcpu, 10_000)?;
        println!("  guest wrote      {:?}", String::from_utf8_lossy(&out));
    }
    if let Some(b) = guest.migration_blocker() {
        println!("  migration        blocked: {b}");
    }
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    let mut firmware = "sim".to_string();
    let mut ovmf_path = None;
    let mut vcpus = 1u32;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--firmware" => firmware = it.next().cloned().unwrap_or_default(),
            "--ovmf" => ovmf_path = it.next().cloned(),
            "--vcpus" => {
                vcpus = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| invalid("--vcpus", "expects a number >= 1"))?
            }
            other => return Err(invalid("argument", format!("unknown argument {other}"))),
        }
    }
    let kvm = Kvm::new().map_err(|e| Error::kvm("open /dev/kvm", e))?;
    match firmware.as_str() {
        "sim" => {}
        "kvm" => {
            // The real secure processor: probe KVM, open /dev/sev, then the same flow.
            let fw = KvmFirmware::open(&kvm, "/dev/sev")?;
            let cfg = SevSnpGuestConfig::builder("snp0", 1).build()?;
            let guest = Lifecycle::new(SevBackend::snp(&cfg, fw)?);
            let _vm = guest.create_vm(&kvm)?;
            return Err(Error::unsupported(
                "--firmware kvm on an SEV host",
                "this example's attestation step plays the guest through the simulator; \
                 on SEV hardware the guest requests its report itself",
            ));
        }
        other => {
            return Err(invalid(
                "--firmware",
                format!("'{other}': expected sim or kvm"),
            ))
        }
    }
    let platform = SimPlatform::new(SimConfig::default());
    snp_payload(&kvm, &platform)?;
    sev_launch(&kvm, &platform, 0x1, None)?;
    sev_launch(&kvm, &platform, 0x5, None)?;
    if let Some(p) = ovmf_path {
        let image = std::fs::read(&p).map_err(|e| invalid("--ovmf", format!("{p}: {e}")))?;
        snp_ovmf(&kvm, &platform, &image, vcpus)?;
        sev_launch(&kvm, &platform, 0x1, Some(&image))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
