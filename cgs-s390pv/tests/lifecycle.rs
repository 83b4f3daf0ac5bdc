//! The s390-pv-guest backend through cgs-core's Lifecycle on a real KVM VM, with the Ultravisor
//! simulator behind it (and, on this non-s390x host, the real Ultravisor path reporting
//! Unsupported).

use cgs_core::config::S390PvGuestConfig;
use cgs_core::testing::kvm_or_skip;
use cgs_core::{ConfidentialBackend, Error, Lifecycle, PageType};
use cgs_s390pv::lifecycle::{PvEvent, HOSTKEY_HINT, MIGRATION_BLOCKER};
use cgs_s390pv::uapi;
use cgs_s390pv::uv::sim::{open_dump_blob, Fault, SecurePhase};
use cgs_s390pv::{
    ComponentKind, ImageBuilder, IplError, KvmUltravisor, MachineSpec, Pcf, ResetKind, S390PvGuest,
    SeImage, SimConfig, SimUltravisor,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const HDR: u64 = 0x8_0000;
const MEM: usize = 4 << 20;

struct Guest {
    _kvm: Kvm,
    vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemoryMmap,
    sim: SimUltravisor,
    img: SeImage,
    life: Lifecycle<S390PvGuest<SimUltravisor>>,
}

fn image(host: p521::PublicKey, pcf: Pcf) -> SeImage {
    ImageBuilder::new(vec![host], HDR)
        .pcf(pcf)
        .component(ComponentKind::Kernel, 0x1_0000, vec![0x4b; 6000])
        .component(
            ComponentKind::Cmdline,
            0x3_0000,
            b"console=ttysclp0".to_vec(),
        )
        .component(ComponentKind::Stage3b, 0x4_0000, vec![0x33; 512])
        .build()
        .unwrap()
}

fn guest_with(
    name: &str,
    cfg: SimConfig,
    pcf: Pcf,
    mem_size: usize,
    foreign: bool,
) -> Option<Guest> {
    let kvm = kvm_or_skip(name)?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mem_size)]).unwrap();
    let host = if foreign {
        p521::SecretKey::random(&mut rand_core::OsRng).public_key()
    } else {
        cfg.host_key.public_key()
    };
    let sim = SimUltravisor::new(mem.clone(), cfg);
    let img = image(host, pcf);
    img.load(&mem).unwrap();
    let backend = S390PvGuest::new(
        S390PvGuestConfig::new("pv0"),
        sim.clone(),
        MachineSpec::new(2, mem_size as u64),
    )
    .unwrap();
    let mut life = Lifecycle::new(backend);
    let vm = life.create_vm(&kvm).unwrap();
    life.kvm_init(&kvm, &vm).unwrap();
    let vcpu = life.create_vcpu(&vm, 0).unwrap();
    life.set_vcpu_state(&vm, 0, &vcpu).unwrap();
    life.finalize(&vm).unwrap();
    life.backend_mut()
        .set_pv_iplb(&img.ipib.encode(), &mem)
        .unwrap();
    Some(Guest {
        _kvm: kvm,
        vm,
        vcpu,
        mem,
        sim,
        img,
        life,
    })
}

fn guest(name: &str, pcf: Pcf) -> Option<Guest> {
    guest_with(name, SimConfig::random(), pcf, MEM, false)
}

fn commands(events: &[PvEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            PvEvent::Command { name, .. } => Some(*name),
            _ => None,
        })
        .collect()
}

#[test]
fn protect_dump_reset_reboot_on_the_simulator() {
    let Some(mut g) = guest(
        "protect_dump_reset_reboot",
        Pcf::DEFAULT | Pcf::ALLOW_DUMPING,
    ) else {
        return;
    };
    assert!(g.life.is_ready());
    assert_eq!(
        g.life.migration_blocker(),
        None,
        "no blocker before the guest is protected"
    );
    let req = g.life.device_requirements();
    assert!(req.virtio_access_platform && req.virtio_disable_legacy && !req.disable_ram_discard);

    g.life.backend_mut().protect(&g.vm, &g.mem).unwrap();
    let b = g.life.backend();
    assert!(b.is_protected());
    assert_eq!(
        g.life.migration_blocker().unwrap().reason,
        MIGRATION_BLOCKER
    );
    assert!(g.life.device_requirements().disable_ram_discard);
    assert_eq!(b.events()[0], PvEvent::DiscardDisabled);
    assert_eq!(b.events()[1], PvEvent::BlockerAdded);
    assert_eq!(
        commands(b.events()),
        [
            "KVM_PV_ENABLE",
            "KVM_PV_INFO(VM)",
            "KVM_PV_INFO(DUMP)",
            "KVM_PV_SET_SEC_PARMS",
            "KVM_PV_UNPACK",
            "KVM_PV_UNPACK",
            "KVM_PV_UNPACK",
            "KVM_PV_VERIFY"
        ]
    );
    assert_eq!(b.info_vm().unwrap().max_cpus, 248);
    assert_eq!(g.sim.phase(), Some(SecurePhase::Verified));
    let mut buf = [0u8; 8];
    assert!(g.sim.host_read(0x1_0000, &mut buf).is_err());
    let mut plain = [0u8; 8];
    g.mem
        .read_slice(&mut plain, GuestAddress(0x1_0000))
        .unwrap();
    assert_eq!(
        plain, [0x4b; 8],
        "the UV decrypted the kernel for the guest"
    );
    // The IPL CPU starts: LOAD (the UV loads the header's PSW), then OPERATING.
    g.life.backend_mut().start_ipl_cpu(&g.vcpu).unwrap();
    assert_eq!(g.sim.loaded_cpus(), 1);
    assert_eq!(
        commands(g.life.backend().events())[8..],
        ["KVM_SET_MP_STATE(LOAD)", "KVM_SET_MP_STATE(OPERATING)"]
    );

    // Dump, decrypted by the guest owner.
    let dump = g.life.backend_mut().dump(&g.vm, &[&g.vcpu]).unwrap();
    assert_eq!(dump.cpus.len(), 1);
    assert_eq!(dump.storage_state.len(), 4 * 256);
    assert_eq!(dump.storage_state.iter().filter(|b| **b == 1).count(), 4);
    assert!(open_dump_blob(&g.img.cck, b"cpu", &dump.cpus[0], 24).is_some());
    assert!(open_dump_blob(&g.img.cck, b"complete", &dump.completion, 64).is_some());
    let dump_cmds = commands(g.life.backend().events());
    assert_eq!(
        dump_cmds[dump_cmds.len() - 4..],
        [
            "KVM_PV_DUMP(INIT)",
            "KVM_PV_DUMP(CPU)",
            "KVM_PV_DUMP(CONFIG_STOR_STATE)",
            "KVM_PV_DUMP(COMPLETE)"
        ]
    );

    // Reset load normal while protected: stays protected.
    g.life.backend_mut().take_events();
    g.life
        .backend_mut()
        .machine_reset(&g.vm, ResetKind::LoadNormal)
        .unwrap();
    assert_eq!(
        commands(g.life.backend().events()),
        ["KVM_PV_UNSHARE_ALL", "KVM_PV_PREP_RESET"]
    );
    assert!(g.life.backend().is_protected());

    // Re-IPL through the lifecycle: synchronous DISABLE (RAM ≤ 2 GiB), blocker gone.
    g.life.backend_mut().take_events();
    g.life.reset(&g.vm).unwrap();
    assert_eq!(
        g.life.backend().events(),
        [
            PvEvent::Command {
                name: "KVM_PV_DISABLE",
                cmd: uapi::KVM_PV_DISABLE,
                errno: None,
                rc: 1,
                rrc: 0
            },
            PvEvent::BlockerRemoved,
            PvEvent::DiscardEnabled
        ]
    );
    assert!(!g.life.backend().is_protected());
    assert_eq!(g.life.migration_blocker(), None);
    assert_eq!(g.sim.phase(), None);
    assert!(g.sim.host_read(0x1_0000, &mut buf).is_ok());
    assert_eq!(buf, [0; 8], "destroyed secure memory reads as zero");

    // The guest boots again (the loader reloads the image) and re-enters protected mode.
    g.img.load(&g.mem).unwrap();
    g.life.backend_mut().protect(&g.vm, &g.mem).unwrap();
    assert!(g.life.backend().is_protected());
    assert!(g.life.migration_blocker().is_some());
    // A second protect while protected is refused.
    assert!(g.life.backend_mut().protect(&g.vm, &g.mem).is_err());
}

#[test]
fn dump_refused_when_the_header_forbids_it() {
    let Some(mut g) = guest("dump_refused", Pcf::DEFAULT) else {
        return;
    };
    assert!(
        g.life.backend_mut().dump(&g.vm, &[&g.vcpu]).is_err(),
        "not protected yet"
    );
    g.life.backend_mut().protect(&g.vm, &g.mem).unwrap();
    let e = g.life.backend_mut().dump(&g.vm, &[&g.vcpu]).unwrap_err();
    assert!(e.to_string().contains("did not allow dumping"), "{e}");
    assert!(!g.sim.dumping());
    assert!(
        g.life.backend().is_protected(),
        "a refused dump leaves the guest running"
    );
}

#[test]
fn wrong_host_key_fails_with_the_hint_and_unprotects() {
    let Some(mut g) = guest_with(
        "wrong_host_key",
        SimConfig::random(),
        Pcf::DEFAULT,
        MEM,
        true,
    ) else {
        return;
    };
    let e = g.life.backend_mut().protect(&g.vm, &g.mem).unwrap_err();
    let text = e.error.to_string();
    assert!(text.contains(HOSTKEY_HINT), "{text}");
    assert!(
        text.contains("UV_RC_SSC_INVAL_HOSTKEY") && text.contains("rrc 0x5"),
        "{text}"
    );
    assert!(matches!(
        e.error,
        Error::Firmware {
            op: "KVM_PV_SET_SEC_PARMS",
            ..
        }
    ));
    assert_eq!(e.response.pv_cmd, 2);
    assert_eq!(
        (e.response.rc, e.response.rrc, e.response.diag_rc),
        (0x108, 5, 0x0a02)
    );
    assert_eq!(e.response.to_u64(), 0x0002_0005_0108_0a02);
    assert!(!g.life.backend().is_protected());
    assert_eq!(g.life.migration_blocker(), None);
    assert_eq!(g.sim.phase(), None);
    assert_eq!(
        commands(g.life.backend().events()).last(),
        Some(&"KVM_PV_DISABLE")
    );
}

#[test]
fn tampered_component_fails_verify_with_named_codes() {
    let Some(mut g) = guest("tampered_verify", Pcf::DEFAULT) else {
        return;
    };
    g.mem.write_slice(&[0xff], GuestAddress(0x3_0010)).unwrap();
    let e = g.life.backend_mut().protect(&g.vm, &g.mem).unwrap_err();
    let text = e.error.to_string();
    assert!(text.contains("VERIFY_IMG_MISMATCH"), "{text}");
    assert!(text.contains("page list digest mismatch"), "{text}");
    assert_eq!(e.response.to_u64(), 0x0004_001b_0102_0a02);
    assert!(!g.life.backend().is_protected());
    assert_eq!(g.sim.secure_pages(), 0);
    let e = g.life.backend_mut().start_ipl_cpu(&g.vcpu).unwrap_err();
    assert!(e.to_string().contains("not protected"), "{e}");
}

#[test]
fn eintr_is_retried_and_enable_failure_only_drops_the_blocker() {
    let Some(mut g) = guest("eintr_retry", Pcf::DEFAULT) else {
        return;
    };
    g.sim.inject(uapi::KVM_PV_UNPACK, Fault::Eintr);
    g.sim.inject(uapi::KVM_PV_UNPACK, Fault::Eintr);
    g.sim.inject(uapi::KVM_PV_SET_SEC_PARMS, Fault::Eintr);
    g.life.backend_mut().protect(&g.vm, &g.mem).unwrap();
    let interrupted: Vec<_> = g
        .life
        .backend()
        .events()
        .iter()
        .filter(|e| matches!(e, PvEvent::Interrupted(_)))
        .collect();
    assert_eq!(interrupted.len(), 3);
    g.life.reset(&g.vm).unwrap();

    g.sim.inject(
        uapi::KVM_PV_ENABLE,
        Fault::Fail {
            errno: libc::EIO,
            rc: 0x8101,
            rrc: 0,
        },
    );
    g.img.load(&g.mem).unwrap();
    g.life.backend_mut().take_events();
    let e = g.life.backend_mut().protect(&g.vm, &g.mem).unwrap_err();
    assert_eq!(e.response.pv_cmd, 0);
    assert_eq!(e.response.rc, 0x8101);
    assert!(
        e.error.to_string().contains("UVC_RC_NEED_DESTROY"),
        "{}",
        e.error
    );
    assert_eq!(
        commands(g.life.backend().events()),
        ["KVM_PV_ENABLE"],
        "no DISABLE without a configuration"
    );
    assert_eq!(g.life.migration_blocker(), None);

    // A KVM-level failure without a UV call is an Error::Kvm with the errno.
    g.sim.inject(
        uapi::KVM_PV_ENABLE,
        Fault::Fail {
            errno: libc::ENOMEM,
            rc: 0,
            rrc: 0,
        },
    );
    let e = g.life.backend_mut().protect(&g.vm, &g.mem).unwrap_err();
    assert_eq!(e.error.errno(), Some(libc::ENOMEM));
}

#[test]
fn async_cleanup_on_a_separate_thread_above_two_gib() {
    let big = (2usize << 30) + (4 << 20);
    let Some(mut g) = guest_with(
        "async_cleanup",
        SimConfig::random(),
        Pcf::DEFAULT,
        big,
        false,
    ) else {
        return;
    };
    g.life.backend_mut().protect(&g.vm, &g.mem).unwrap();
    g.life.backend_mut().take_events();
    g.life.reset(&g.vm).unwrap();
    let ev = g.life.backend().events().to_vec();
    assert_eq!(commands(&ev), ["KVM_PV_ASYNC_CLEANUP_PREPARE"]);
    assert!(ev.contains(&PvEvent::AsyncCleanupStarted));
    assert!(ev.contains(&PvEvent::BlockerRemoved));
    assert!(!g.life.backend().is_protected());
    g.life.backend_mut().wait_async_cleanup().unwrap().unwrap();
    assert!(!g.sim.has_set_aside());
    assert_eq!(g.sim.secure_pages(), 0);
    assert!(!g.sim.calls().iter().any(|c| c.name == "KVM_PV_DISABLE"));

    // Without the async capability the same machine disables synchronously.
    let mut cfg = SimConfig::random();
    cfg.support.async_disable = false;
    let Some(mut g) = guest_with("async_cleanup_nocap", cfg, Pcf::DEFAULT, big, false) else {
        return;
    };
    g.life.backend_mut().protect(&g.vm, &g.mem).unwrap();
    g.life.reset(&g.vm).unwrap();
    assert_eq!(
        commands(g.life.backend().events()).last(),
        Some(&"KVM_PV_DISABLE")
    );
}

#[test]
fn kvm_init_checks_like_qemu() {
    let Some(kvm) = kvm_or_skip("kvm_init_checks") else {
        return;
    };
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let init = |cfg: SimConfig, machine: MachineSpec| {
        let sim = SimUltravisor::new(mem.clone(), cfg);
        let mut life =
            Lifecycle::new(S390PvGuest::new(S390PvGuestConfig::new("pv0"), sim, machine).unwrap());
        let vm = life.create_vm(&kvm).unwrap();
        life.kvm_init(&kvm, &vm).map(|_| ())
    };
    let m = MachineSpec::new(4, MEM as u64);
    let mut cfg = SimConfig::random();
    cfg.support.protected = false;
    let e = init(cfg, m).unwrap_err();
    assert!(e.to_string().contains("KVM_CAP_S390_PROTECTED"), "{e}");
    let mut cfg = SimConfig::random();
    cfg.support.unpack_facility = false;
    let e = init(cfg, m).unwrap_err();
    assert!(
        e.to_string()
            .contains("CPU model does not support Protected Virtualization"),
        "{e}"
    );
    let e = init(SimConfig::random(), MachineSpec::new(300, MEM as u64)).unwrap_err();
    assert!(
        e.to_string()
            .contains("Protected VMs support a maximum of 247 CPUs"),
        "{e}"
    );
    let mut m2 = m;
    m2.only_migratable = true;
    let e = init(SimConfig::random(), m2).unwrap_err();
    assert!(e.to_string().contains("--only-migratable"), "{e}");
    assert!(init(SimConfig::random(), MachineSpec::new(247, MEM as u64)).is_ok());

    // The real Ultravisor path on this host.
    if !cgs_s390pv::uv::kvm::HOST_HAS_PV_IOCTLS {
        let mut life = Lifecycle::new(
            S390PvGuest::new(S390PvGuestConfig::new("pv0"), KvmUltravisor::new(), m).unwrap(),
        );
        let vm = life.create_vm(&kvm).unwrap();
        let e = life.kvm_init(&kvm, &vm).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        assert!(
            e.to_string().contains("requires KVM on an s390x host"),
            "{e}"
        );
        assert!(!life.is_ready());
    }
}

#[test]
fn ipl_block_and_launch_update_rules() {
    let Some(mut g) = guest("ipl_rules", Pcf::DEFAULT) else {
        return;
    };
    let b = g.life.backend_mut();
    assert!(matches!(
        b.set_pv_iplb(&[0u8; 10], &g.mem),
        Err(IplError::Truncated { .. })
    ));
    let mut far = g.img.ipib.clone();
    far.pv_header_addr = MEM as u64 - 0x100;
    assert!(matches!(
        b.set_pv_iplb(&far.encode(), &g.mem),
        Err(IplError::HeaderNotInMemory { .. })
    ));
    assert_eq!(
        b.pv_iplb(),
        Some(&g.img.ipib),
        "a refused block keeps the previous one"
    );

    // PV start without a PV IPL block: 0x0902.
    let mem = g.mem.clone();
    let sim = SimUltravisor::new(mem.clone(), SimConfig::random());
    let kvm = Kvm::new().unwrap();
    let mut life = Lifecycle::new(
        S390PvGuest::new(
            S390PvGuestConfig::new("pv1"),
            sim,
            MachineSpec::new(1, MEM as u64),
        )
        .unwrap(),
    );
    let vm = life.create_vm(&kvm).unwrap();
    life.kvm_init(&kvm, &vm).unwrap();
    let e = life.backend_mut().protect(&vm, &mem).unwrap_err();
    assert_eq!(e.response.diag_rc, 0x0902);

    // No host-driven launch update on s390 PV: Normal is a no-op, other types are refused.
    let slice = mem.get_slice(GuestAddress(0), 4096).unwrap();
    life.launch_update(&vm, 0, slice, PageType::Normal).unwrap();
    let slice = mem.get_slice(GuestAddress(0), 4096).unwrap();
    assert!(life.launch_update(&vm, 0, slice, PageType::Zero).is_err());
    assert_eq!(life.backend().object_type(), "s390-pv-guest");
}

#[test]
fn without_the_dump_capability_info_is_skipped_and_dump_unsupported() {
    let mut cfg = SimConfig::random();
    cfg.support.dump = false;
    let Some(mut g) = guest_with(
        "no_dump_cap",
        cfg,
        Pcf::DEFAULT | Pcf::ALLOW_DUMPING,
        MEM,
        false,
    ) else {
        return;
    };
    g.life.backend_mut().protect(&g.vm, &g.mem).unwrap();
    let cmds = commands(g.life.backend().events());
    assert!(
        !cmds.iter().any(|c| c.starts_with("KVM_PV_INFO")),
        "{cmds:?}"
    );
    assert_eq!(g.life.backend().info_dump(), None);
    let e = g.life.backend_mut().dump(&g.vm, &[&g.vcpu]).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("KVM_CAP_S390_PROTECTED_DUMP"), "{e}");
}

/// Regression: dump sizes from KVM_PV_INFO_DUMP were allocated unchecked (`u64::MAX` aborted the
/// process); now they are refused before DUMP_INIT.
#[test]
fn absurd_dump_sizes_are_refused_before_dump_init() {
    for (cpu, per, fin) in [
        (u64::MAX, 256, 0x100),
        (0x1000, u64::MAX, 0x100),
        (0x1000, 256, 1 << 40),
    ] {
        let mut cfg = SimConfig::random();
        cfg.info_dump.cpu_buffer_len = cpu;
        cfg.info_dump.config_mem_buffer_per_1m = per;
        cfg.info_dump.config_finalize_len = fin;
        let Some(mut g) = guest_with(
            "absurd_dump_sizes",
            cfg,
            Pcf::DEFAULT | Pcf::ALLOW_DUMPING,
            MEM,
            false,
        ) else {
            return;
        };
        g.life.backend_mut().protect(&g.vm, &g.mem).unwrap();
        let e = g.life.backend_mut().dump(&g.vm, &[&g.vcpu]).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(
            !g.sim.dumping(),
            "DUMP_INIT ran before the sizes were checked"
        );
    }
}

#[test]
fn protect_before_kvm_init_is_refused_without_touching_the_uv() {
    let Some(kvm) = kvm_or_skip("protect_before_kvm_init") else {
        return;
    };
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let sim = SimUltravisor::new(mem.clone(), SimConfig::random());
    let img = image(sim.host_public_key(), Pcf::DEFAULT);
    img.load(&mem).unwrap();
    let mut life = Lifecycle::new(
        S390PvGuest::new(
            S390PvGuestConfig::new("pv0"),
            sim.clone(),
            MachineSpec::new(1, MEM as u64),
        )
        .unwrap(),
    );
    let vm = life.create_vm(&kvm).unwrap();
    life.backend_mut()
        .set_pv_iplb(&img.ipib.encode(), &mem)
        .unwrap();
    let e = life.backend_mut().protect(&vm, &mem).unwrap_err();
    assert_eq!(e.response.diag_rc, 0x0a02);
    assert!(sim.calls().is_empty());
    assert_eq!(life.migration_blocker(), None);
    assert!(life.ensure_ready().is_err());
}
