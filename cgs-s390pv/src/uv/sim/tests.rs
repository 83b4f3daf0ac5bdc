use super::*;
use crate::image::{ComponentKind, ImageBuilder, SeImage};
use vm_memory::GuestMemoryMmap;

const HDR: u64 = 0x8_0000;
const MEM: usize = 4 << 20;

struct Setup {
    mem: GuestMemoryMmap,
    sim: SimUltravisor,
    img: SeImage,
    plain: Vec<(u64, Vec<u8>)>,
}

fn plaintexts() -> Vec<(ComponentKind, u64, Vec<u8>)> {
    vec![
        (
            ComponentKind::Kernel,
            0x1_0000,
            (0..5000u32).map(|i| i as u8).collect(),
        ),
        (
            ComponentKind::Cmdline,
            0x3_0000,
            b"console=ttysclp0 root=/dev/vda".to_vec(),
        ),
        (ComponentKind::Stage3b, 0x4_0000, vec![0x07; 300]),
    ]
}

fn setup_with(
    config: SimConfig,
    pcf: Pcf,
    mem_size: usize,
    for_host: Option<p521::PublicKey>,
) -> Setup {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mem_size)]).unwrap();
    let host = for_host.unwrap_or_else(|| config.host_key.public_key());
    let sim = SimUltravisor::new(mem.clone(), config);
    let mut b = ImageBuilder::new(vec![host], HDR).pcf(pcf);
    let mut plain = Vec::new();
    for (k, a, d) in plaintexts() {
        plain.push((a, d.clone()));
        b = b.component(k, a, d);
    }
    let img = b.build().unwrap();
    img.load(&mem).unwrap();
    Setup {
        mem,
        sim,
        img,
        plain,
    }
}

fn setup(pcf: Pcf) -> Setup {
    setup_with(SimConfig::random(), pcf, MEM, None)
}

fn unpack_all(s: &Setup) -> Vec<PvOutcome> {
    s.img
        .ipib
        .components
        .iter()
        .map(|c| {
            s.sim.execute(PvCommand::Unpack {
                addr: c.addr,
                size: c.unpack_size(),
                tweak: c.tweak_pref,
            })
        })
        .collect()
}

fn einval(rc: u16, rrc: u16) -> PvOutcome {
    PvOutcome::err(libc::EINVAL, rc, rrc)
}

fn to_verified(s: &Setup) {
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert!(s
        .sim
        .execute(PvCommand::SetSecParms {
            header: &s.img.header
        })
        .is_ok());
    assert!(unpack_all(s).iter().all(PvOutcome::is_ok));
    assert!(s.sim.execute(PvCommand::Verify).is_ok());
}

#[test]
fn every_state_transition_of_a_good_image() {
    let s = setup(Pcf::DEFAULT);
    assert_eq!(s.sim.phase(), None);
    assert_eq!(
        s.sim.execute(PvCommand::Enable),
        PvOutcome::ok(1, 0, PvOutput::None)
    );
    assert_eq!(s.sim.phase(), Some(SecurePhase::Created));
    let h1 = s.sim.handle();
    assert!(s
        .sim
        .execute(PvCommand::SetSecParms {
            header: &s.img.header
        })
        .is_ok());
    assert_eq!(s.sim.phase(), Some(SecurePhase::ParamsSet));
    for o in unpack_all(&s) {
        assert_eq!(o, PvOutcome::ok(1, 0, PvOutput::None));
    }
    assert_eq!(s.sim.secure_pages(), 4);
    assert_eq!(
        s.sim.execute(PvCommand::Verify),
        PvOutcome::ok(1, 0, PvOutput::None)
    );
    assert_eq!(s.sim.phase(), Some(SecurePhase::Verified));
    // The UV decrypted every page in place: the guest sees its plaintext.
    for (addr, data) in &s.plain {
        let mut got = vec![0u8; data.len()];
        s.mem.read_slice(&mut got, GuestAddress(*addr)).unwrap();
        assert_eq!(&got, data);
    }
    assert!(s.sim.execute(PvCommand::UnshareAll).is_ok());
    assert!(s.sim.execute(PvCommand::PrepReset).is_ok());
    assert_eq!(s.sim.phase(), Some(SecurePhase::Verified));
    assert!(s.sim.execute(PvCommand::Disable).is_ok());
    assert_eq!(s.sim.phase(), None);
    assert_eq!(s.sim.secure_pages(), 0);
    // A new configuration gets a new handle.
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert_ne!(s.sim.handle(), h1);
    let names: Vec<_> = s.sim.calls().iter().map(|c| c.name).collect();
    assert_eq!(
        names[..3],
        ["KVM_PV_ENABLE", "KVM_PV_SET_SEC_PARMS", "KVM_PV_UNPACK"]
    );
}

#[test]
fn illegal_orders_fail_like_kvm_and_the_uv() {
    let s = setup(Pcf::DEFAULT);
    let c = s.img.ipib.components[0];
    let unpack = || PvCommand::Unpack {
        addr: c.addr,
        size: c.unpack_size(),
        tweak: c.tweak_pref,
    };
    // Not protected: KVM refuses before any UV call.
    assert_eq!(s.sim.execute(unpack()), einval(0, 0));
    assert_eq!(
        s.sim.execute(PvCommand::SetSecParms {
            header: &s.img.header
        }),
        einval(0, 0)
    );
    assert_eq!(s.sim.execute(PvCommand::Verify), einval(0, 0));
    assert_eq!(s.sim.execute(PvCommand::Disable), einval(0, 0));
    assert_eq!(s.sim.execute(PvCommand::PrepReset), einval(0, 0));
    assert_eq!(s.sim.execute(PvCommand::DumpInit), einval(0, 0));
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert_eq!(s.sim.execute(PvCommand::Enable), einval(0, 0));
    // Protected, but no parameters yet: the UV answers INV_STATE.
    assert_eq!(s.sim.execute(unpack()), einval(UVC_RC_INV_STATE, 0));
    assert_eq!(
        s.sim.execute(PvCommand::Verify),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert_eq!(
        s.sim.execute(PvCommand::UnshareAll),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert!(s
        .sim
        .execute(PvCommand::SetSecParms {
            header: &s.img.header
        })
        .is_ok());
    assert_eq!(
        s.sim.execute(PvCommand::SetSecParms {
            header: &s.img.header
        }),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert_eq!(
        s.sim.execute(PvCommand::DumpInit),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert!(unpack_all(&s).iter().all(PvOutcome::is_ok));
    assert!(s.sim.execute(PvCommand::Verify).is_ok());
    assert_eq!(s.sim.execute(unpack()), einval(UVC_RC_INV_STATE, 0));
    assert_eq!(
        s.sim.execute(PvCommand::Verify),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert_eq!(s.sim.execute(PvCommand::AsyncCleanupPerform), einval(0, 0));
}

#[test]
fn unpack_bounds_and_alignment() {
    let s = setup(Pcf::DEFAULT);
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert!(s
        .sim
        .execute(PvCommand::SetSecParms {
            header: &s.img.header
        })
        .is_ok());
    let u = |addr, size| {
        s.sim.execute(PvCommand::Unpack {
            addr,
            size,
            tweak: 1,
        })
    };
    assert_eq!(u(0x1_0800, 0x1000), einval(0, 0));
    assert_eq!(u(0x1_0000, 0), einval(0, 0));
    assert_eq!(u(0x1_0000, 0x800), einval(0, 0));
    assert_eq!(u(0xFFFF_FFFF_FFFF_F000, 0x2000), einval(0, 0));
    // Beyond guest memory: KVM cannot find the frame.
    assert_eq!(u(MEM as u64, 0x1000), PvOutcome::err(libc::EFAULT, 0, 0));
    // Crossing the end: the pages inside were unpacked, the first outside faults.
    assert_eq!(
        u(MEM as u64 - 0x1000, 0x2000),
        PvOutcome::err(libc::EFAULT, UVC_RC_EXECUTED, 0)
    );
    assert_eq!(s.sim.secure_pages(), 1);
}

#[test]
fn verify_fails_with_the_real_codes_on_tampered_content() {
    // Tampered ciphertext: page list digest.
    let s = setup(Pcf::DEFAULT);
    let c = &s.img.components[0];
    let mut b = [0u8; 1];
    s.mem.read_slice(&mut b, GuestAddress(c.addr + 17)).unwrap();
    s.mem
        .write_slice(&[b[0] ^ 1], GuestAddress(c.addr + 17))
        .unwrap();
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert!(s
        .sim
        .execute(PvCommand::SetSecParms {
            header: &s.img.header
        })
        .is_ok());
    assert!(unpack_all(&s).iter().all(PvOutcome::is_ok));
    assert_eq!(
        s.sim.execute(PvCommand::Verify),
        einval(UV_RC_VERIFY_MISMATCH, RRC_PLD_MISMATCH)
    );
    assert_eq!(s.sim.phase(), Some(SecurePhase::ParamsSet));

    // A wrong tweak: tweak list digest (addresses and ciphertext as in the header).
    let s = setup(Pcf::DEFAULT);
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert!(s
        .sim
        .execute(PvCommand::SetSecParms {
            header: &s.img.header
        })
        .is_ok());
    for (i, c) in s.img.ipib.components.iter().enumerate() {
        let tweak = if i == 1 {
            c.tweak_pref + 1
        } else {
            c.tweak_pref
        };
        assert!(s
            .sim
            .execute(PvCommand::Unpack {
                addr: c.addr,
                size: c.unpack_size(),
                tweak
            })
            .is_ok());
    }
    assert_eq!(
        s.sim.execute(PvCommand::Verify),
        einval(UV_RC_VERIFY_MISMATCH, RRC_TLD_MISMATCH)
    );

    // A missing component: address list digest (checked first).
    let s = setup(Pcf::DEFAULT);
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert!(s
        .sim
        .execute(PvCommand::SetSecParms {
            header: &s.img.header
        })
        .is_ok());
    let c = s.img.ipib.components[0];
    assert!(s
        .sim
        .execute(PvCommand::Unpack {
            addr: c.addr,
            size: c.unpack_size(),
            tweak: c.tweak_pref
        })
        .is_ok());
    assert_eq!(
        s.sim.execute(PvCommand::Verify),
        einval(UV_RC_VERIFY_MISMATCH, RRC_ALD_MISMATCH)
    );
}

#[test]
fn set_sec_parms_checks_header_and_host_key() {
    let ssc = |s: &Setup, h: &[u8]| {
        assert!(s.sim.execute(PvCommand::Enable).is_ok());
        let o = s.sim.execute(PvCommand::SetSecParms { header: h });
        assert!(s.sim.execute(PvCommand::Disable).is_ok());
        o
    };
    // Encrypted for another host.
    let other = SecretKey::random(&mut OsRng).public_key();
    let s = setup_with(SimConfig::random(), Pcf::DEFAULT, MEM, Some(other));
    assert_eq!(
        ssc(&s, &s.img.header),
        einval(UV_RC_SSC_INVAL_HOSTKEY, 0x0005)
    );

    let s = setup(Pcf::DEFAULT);
    let hdr = s.img.header.clone();
    // Tampered AAD (the page list digest): the GCM tag no longer matches.
    let mut t = hdr.clone();
    t[0xE0] ^= 1;
    assert_eq!(ssc(&s, &t), einval(UV_RC_SSC_HDR_INVALID, 0));
    // Tampered ciphertext of the encrypted area.
    let mut t = hdr.clone();
    t[0x1A0 + 0x50 + 3] ^= 1;
    assert_eq!(ssc(&s, &t), einval(UV_RC_SSC_HDR_INVALID, 0));
    // Customer key not a valid point (its padding is not zero).
    let mut t = hdr.clone();
    t[0x40] = 1;
    assert_eq!(ssc(&s, &t), einval(UV_RC_SSC_INVAL_HOSTKEY, 0x000B));
    // Size / version / magic.
    assert_eq!(
        ssc(&s, &hdr[..hdr.len() - 16]),
        einval(UV_RC_SSC_HDR_INVALID, 0x0031)
    );
    assert_eq!(ssc(&s, &hdr[..0x100]), einval(UV_RC_SSC_HDR_ACCESS, 0));
    let mut t = hdr.clone();
    t[0x0A] = 2;
    assert_eq!(ssc(&s, &t), einval(UV_RC_SSC_HDR_VERSION, 1));
    // Larger than KVM copies in: refused before the UV.
    assert_eq!(ssc(&s, &vec![0u8; 3 * 4096]), einval(0, 0));
    // The untampered header still works.
    assert!(ssc(&s, &hdr).is_ok());

    // A PCF bit this UV does not support.
    let mut cfg = SimConfig::random();
    cfg.supported_pcf = Pcf::DEFAULT.bits();
    let s = setup_with(cfg, Pcf::DEFAULT | Pcf::ALLOW_DUMPING, MEM, None);
    assert_eq!(ssc(&s, &s.img.header), einval(UV_RC_SSC_PCF, 0x0030));
    // An unsupported header version per the UV's query data.
    let mut cfg = SimConfig::random();
    cfg.supported_versions = 0;
    let s = setup_with(cfg, Pcf::DEFAULT, MEM, None);
    assert_eq!(ssc(&s, &s.img.header), einval(UV_RC_SSC_HDR_VERSION, 1));
}

#[test]
fn two_key_slots_one_for_this_host() {
    let cfg = SimConfig::random();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let other = SecretKey::random(&mut OsRng).public_key();
    let img = ImageBuilder::new(vec![other, cfg.host_key.public_key()], HDR)
        .component(ComponentKind::Kernel, 0x1_0000, vec![1; 100])
        .build()
        .unwrap();
    img.load(&mem).unwrap();
    let sim = SimUltravisor::new(mem, cfg);
    assert!(sim.execute(PvCommand::Enable).is_ok());
    assert!(sim
        .execute(PvCommand::SetSecParms {
            header: &img.header
        })
        .is_ok());
}

#[test]
fn host_reads_of_secure_pages_are_refused_and_destroy_clears() {
    let s = setup(Pcf::DEFAULT);
    let mut buf = [0u8; 16];
    assert!(s.sim.host_read(0x1_0000, &mut buf).is_ok());
    to_verified(&s);
    assert_eq!(
        s.sim.host_read(0x1_0000, &mut buf),
        Err(HostAccessError::SecureStorage(0x1_0000))
    );
    // A range that only touches a secure page at its end.
    assert_eq!(
        s.sim.host_read(0xFFF8, &mut buf),
        Err(HostAccessError::SecureStorage(0x1_0000))
    );
    // The SE header itself stays in non-secure memory.
    assert!(s.sim.host_read(HDR, &mut buf).is_ok());
    assert_eq!(&buf[..8], b"IBMSecEx");
    assert_eq!(
        s.sim.host_read(MEM as u64, &mut buf),
        Err(HostAccessError::NotGuestMemory(MEM as u64))
    );
    assert!(s.sim.execute(PvCommand::Disable).is_ok());
    assert!(s.sim.host_read(0x1_0000, &mut buf).is_ok());
    assert_eq!(
        buf, [0u8; 16],
        "destroying the configuration clears secure memory"
    );
}

#[test]
fn dump_only_when_the_header_allows_it() {
    let s = setup(Pcf::DEFAULT);
    to_verified(&s);
    assert_eq!(
        s.sim.execute(PvCommand::DumpInit),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert!(!s.sim.dumping());

    let s = setup(Pcf::DEFAULT | Pcf::ALLOW_DUMPING);
    to_verified(&s);
    // Not dumping yet: the other subcommands are refused by KVM.
    assert_eq!(s.sim.execute_dump_cpu(&mut [0u8; 0x1000]), einval(0, 0));
    assert!(s.sim.execute(PvCommand::DumpInit).is_ok());
    assert_eq!(s.sim.execute(PvCommand::DumpInit), einval(0, 0));
    assert_eq!(s.sim.execute_dump_cpu(&mut [0u8; 0x800]), einval(0, 0));
    let mut cpu = vec![0u8; 0x1000];
    assert!(s.sim.execute_dump_cpu(&mut cpu).is_ok());
    let mut bad = vec![0u8; 100];
    assert_eq!(
        s.sim.execute(PvCommand::DumpStorState {
            gaddr: 0,
            buf: &mut bad
        }),
        einval(0, 0)
    );
    let mut state = vec![0u8; 4 * 256];
    assert_eq!(
        s.sim.execute(PvCommand::DumpStorState {
            gaddr: 0x1000,
            buf: &mut state
        }),
        einval(0, 0)
    );
    assert_eq!(
        s.sim.execute(PvCommand::DumpStorState {
            gaddr: 0,
            buf: &mut state
        }),
        PvOutcome::ok(1, 0, PvOutput::NextGaddr(4 << 20))
    );
    // Pages 0x10, 0x11 (kernel), 0x30 (cmdline), 0x40 (stage3b) are secure.
    let secure: Vec<usize> = state
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == 1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(secure, [0x10, 0x11, 0x30, 0x40]);
    let mut short = vec![0u8; 0x80];
    assert_eq!(
        s.sim.execute(PvCommand::DumpComplete { buf: &mut short }),
        einval(0, 0)
    );
    let mut done = vec![0u8; 0x100];
    assert!(s
        .sim
        .execute(PvCommand::DumpComplete { buf: &mut done })
        .is_ok());
    assert!(!s.sim.dumping());

    // The guest owner opens the dump with the customer communication key.
    let cpu_plain = open_dump_blob(&s.img.cck, b"cpu", &cpu, 24).unwrap();
    assert_eq!(
        cpu_plain[8..16],
        crate::se_header::DEFAULT_PSW_MASK.to_be_bytes()
    );
    assert_eq!(cpu_plain[16..24], s.img.psw_addr.to_be_bytes());
    let digest = open_dump_blob(&s.img.cck, b"complete", &done, 64).unwrap();
    let mut h = Sha512::new();
    h.update(&cpu);
    h.update(&state);
    assert_eq!(digest, h.finalize().to_vec());
    assert_eq!(open_dump_blob(&[0u8; 32], b"complete", &done, 64), None);
    // Regression: a plaintext length near usize::MAX once overflowed `12 + plain_len + 16`.
    for len in [usize::MAX, usize::MAX - 12, usize::MAX - 27] {
        assert_eq!(open_dump_blob(&s.img.cck, b"complete", &done, len), None);
    }
}

#[test]
fn no_component_encryption_keeps_plaintext_and_still_verifies() {
    let s = setup(Pcf::DEFAULT | Pcf::NO_COMPONENT_ENCRYPTION);
    let (addr, data) = &s.plain[0];
    let mut got = vec![0u8; data.len()];
    s.mem.read_slice(&mut got, GuestAddress(*addr)).unwrap();
    assert_eq!(&got, data, "the builder left the component in plaintext");
    to_verified(&s);
    s.mem.read_slice(&mut got, GuestAddress(*addr)).unwrap();
    assert_eq!(&got, data);
}

#[test]
fn async_cleanup_needs_more_than_two_gib() {
    let s = setup(Pcf::DEFAULT);
    to_verified(&s);
    assert_eq!(s.sim.execute(PvCommand::AsyncCleanupPrepare), einval(0, 0));
    assert_eq!(s.sim.phase(), Some(SecurePhase::Verified));

    let big = (2usize << 30) + (4 << 20);
    let s = setup_with(SimConfig::random(), Pcf::DEFAULT, big, None);
    to_verified(&s);
    assert_eq!(
        s.sim.execute(PvCommand::AsyncCleanupPrepare),
        PvOutcome::ok(1, 42, PvOutput::None)
    );
    assert_eq!(s.sim.phase(), None);
    assert!(s.sim.has_set_aside());
    let mut buf = [0u8; 8];
    assert!(
        s.sim.host_read(0x1_0000, &mut buf).is_err(),
        "set-aside pages stay secure"
    );
    // Only one configuration can be set aside; a new one may be created meanwhile.
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert_eq!(s.sim.execute(PvCommand::AsyncCleanupPrepare), einval(0, 0));
    assert!(s.sim.execute(PvCommand::Disable).is_ok());
    assert!(s.sim.execute(PvCommand::AsyncCleanupPerform).is_ok());
    assert!(!s.sim.has_set_aside());
    assert!(s.sim.host_read(0x1_0000, &mut buf).is_ok());
    assert_eq!(buf, [0u8; 8]);
}

#[test]
fn injected_faults_and_info() {
    let mut cfg = SimConfig::random();
    cfg.support.dump = false;
    let s = setup_with(cfg, Pcf::DEFAULT, MEM, None);
    s.sim.inject(crate::uapi::KVM_PV_ENABLE, Fault::Eintr);
    s.sim.inject(
        crate::uapi::KVM_PV_ENABLE,
        Fault::Fail {
            errno: libc::EIO,
            rc: 0x8101,
            rrc: 0,
        },
    );
    assert_eq!(
        s.sim.execute(PvCommand::Enable),
        PvOutcome::err(libc::EINTR, 0, 0)
    );
    assert_eq!(
        s.sim.execute(PvCommand::Enable),
        PvOutcome::err(libc::EIO, 0x8101, 0)
    );
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    match s.sim.execute(PvCommand::InfoVm).output {
        PvOutput::InfoVm(v) => assert_eq!(v.max_cpus, 248),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.sim.execute(PvCommand::InfoDump), einval(0, 0));

    let mut cfg = SimConfig::random();
    cfg.support.protected = false;
    let s = setup_with(cfg, Pcf::DEFAULT, MEM, None);
    assert_eq!(s.sim.execute(PvCommand::Enable), einval(0, 0));
    assert!(format!("{:?}", SimConfig::random()).contains("redacted"));
}

#[test]
fn cpu_load_only_after_verify() {
    let s = setup(Pcf::DEFAULT);
    assert_eq!(
        s.sim.execute_set_cpu_state(CpuState::Load),
        PvOutcome::err(libc::ENXIO, 0, 0),
        "a non-protected vCPU cannot be loaded"
    );
    assert!(s.sim.execute_set_cpu_state(CpuState::Operating).is_ok());
    assert!(s.sim.execute(PvCommand::Enable).is_ok());
    assert!(s
        .sim
        .execute(PvCommand::SetSecParms {
            header: &s.img.header
        })
        .is_ok());
    assert_eq!(
        s.sim.execute_set_cpu_state(CpuState::Load),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert_eq!(
        s.sim.execute_set_cpu_state(CpuState::Operating),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert!(unpack_all(&s).iter().all(PvOutcome::is_ok));
    assert!(s.sim.execute(PvCommand::Verify).is_ok());
    assert_eq!(
        s.sim.execute_set_cpu_state(CpuState::Operating),
        einval(UVC_RC_INV_STATE, 0)
    );
    assert!(s.sim.execute_set_cpu_state(CpuState::Load).is_ok());
    assert!(s.sim.execute_set_cpu_state(CpuState::Operating).is_ok());
    assert_eq!(s.sim.loaded_cpus(), 1);
}
