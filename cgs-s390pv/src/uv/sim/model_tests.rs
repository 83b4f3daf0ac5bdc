//! A differential test of the simulator: command sequences checked against a reference model.

use std::sync::OnceLock;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::image::{ComponentKind, ImageBuilder, SeImage};
use crate::se_header::Pcf;
use crate::uv::sim::{SimConfig, SimUltravisor};
use crate::uv::{CpuState, PvCommand, PvOutcome};

struct Fixture {
    config: SimConfig,
    image: SeImage,
    foreign: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let config = SimConfig::random();
        let build = |key: p521::PublicKey| {
            ImageBuilder::new(vec![key], 0x8_0000)
                .pcf(Pcf::DEFAULT | Pcf::ALLOW_DUMPING)
                .component(ComponentKind::Kernel, 0x1_0000, vec![0x11; 5000])
                .component(ComponentKind::Cmdline, 0x3_0000, vec![0x22; 100])
                .component(ComponentKind::Stage3b, 0x4_0000, vec![0x33; 100])
                .build()
        };
        let image = match build(config.host_key.public_key()) {
            Ok(i) => i,
            Err(e) => panic!("fixture image: {e}"),
        };
        let foreign = match build(SimConfig::random().host_key.public_key()) {
            Ok(i) => i.header,
            Err(e) => panic!("fixture image: {e}"),
        };
        Fixture {
            config,
            image,
            foreign,
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Created,
    Params,
    Verified,
}

/// The expected behaviour, as a reference model: which commands succeed in which state.
#[derive(Debug, Default)]
struct Model {
    phase: Option<Phase>,
    /// Components unpacked since SET_SEC_PARMS, with whether their pages still held the
    /// image's ciphertext at the time.
    unpacked: Vec<(usize, bool)>,
    /// Components whose memory no longer holds the ciphertext (unpacked once: decrypted,
    /// then possibly cleared by a destroy).
    touched: [bool; 3],
    /// Components whose pages are secure in the current configuration.
    secure: [bool; 3],
    dumping: bool,
}

/// Run a sequence of PV commands (one per byte) against the simulator and check every step
/// against a reference model of the configuration's life cycle; secure pages must be exactly
/// the unpacked ones of the current configuration, and host reads of them refused.
fn run_sequence(data: &[u8]) {
    let f = fixture();
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]) else {
        return;
    };
    if f.image.load(&mem).is_err() {
        return;
    }
    let sim = SimUltravisor::new(mem, f.config.clone());
    let comps = &f.image.ipib.components;
    let mut m = Model::default();
    for (step, &b) in data.iter().take(64).enumerate() {
        let op = b % 12;
        let arg = usize::from(b / 12) % comps.len();
        let protected = m.phase.is_some();
        let (name, outcome, expect_ok): (&str, PvOutcome, bool) = match op {
            0 => {
                let ok = !protected;
                if ok {
                    m.phase = Some(Phase::Created);
                    m.unpacked.clear();
                    m.secure = [false; 3];
                    m.dumping = false;
                }
                ("enable", sim.execute(PvCommand::Enable), ok)
            }
            1 => {
                if protected {
                    m.phase = None;
                    for (i, s) in m.secure.iter_mut().enumerate() {
                        if *s {
                            m.touched[i] = true;
                        }
                        *s = false;
                    }
                }
                ("disable", sim.execute(PvCommand::Disable), protected)
            }
            2 => {
                let ok = m.phase == Some(Phase::Created);
                if ok {
                    m.phase = Some(Phase::Params);
                    m.unpacked.clear();
                }
                let header = &f.image.header;
                ("ssc", sim.execute(PvCommand::SetSecParms { header }), ok)
            }
            3 => (
                "ssc foreign",
                sim.execute(PvCommand::SetSecParms { header: &f.foreign }),
                false,
            ),
            4 | 5 => {
                let ok = m.phase == Some(Phase::Params);
                if ok {
                    m.unpacked.push((arg, !m.touched[arg]));
                    m.touched[arg] = true;
                    m.secure[arg] = true;
                }
                let c = comps[arg];
                let cmd = PvCommand::Unpack {
                    addr: c.addr,
                    size: c.unpack_size(),
                    tweak: c.tweak_pref,
                };
                ("unpack", sim.execute(cmd), ok)
            }
            6 => {
                let ok = m.phase == Some(Phase::Params)
                    && m.unpacked == [(0, true), (1, true), (2, true)];
                if m.phase == Some(Phase::Params) {
                    m.unpacked.clear();
                }
                if ok {
                    m.phase = Some(Phase::Verified);
                }
                ("verify", sim.execute(PvCommand::Verify), ok)
            }
            7 => {
                let ok = m.phase == Some(Phase::Verified);
                let cmd = if arg == 0 {
                    PvCommand::PrepReset
                } else {
                    PvCommand::UnshareAll
                };
                ("reset", sim.execute(cmd), ok)
            }
            8 => {
                let ok = m.phase == Some(Phase::Verified) && !m.dumping;
                if ok {
                    m.dumping = true;
                }
                ("dump init", sim.execute(PvCommand::DumpInit), ok)
            }
            9 => {
                let ok = protected && m.dumping;
                let mut buf = vec![0u8; 0x1000];
                ("dump cpu", sim.execute_dump_cpu(&mut buf), ok)
            }
            10 => {
                let ok = protected && m.dumping;
                if ok {
                    m.dumping = false;
                }
                let mut buf = vec![0u8; 0x100];
                (
                    "dump complete",
                    sim.execute(PvCommand::DumpComplete { buf: &mut buf }),
                    ok,
                )
            }
            _ => (
                "cpu load",
                sim.execute_set_cpu_state(CpuState::Load),
                m.phase == Some(Phase::Verified),
            ),
        };
        if outcome.is_ok() != expect_ok {
            panic!("step {step} ({name}): simulator {outcome:?}, model expected ok = {expect_ok}");
        }
        for (i, c) in comps.iter().enumerate() {
            let mut byte = [0u8; 1];
            let refused = sim.host_read(c.addr, &mut byte).is_err();
            if refused != m.secure[i] {
                panic!(
                    "step {step} ({name}): component {i} secure = {refused}, model {}",
                    m.secure[i]
                );
            }
        }
    }
}

#[test]
fn uv_sequences_follow_the_model() {
    // The full good path, a dump, a reset and a re-protect attempt.
    run_sequence(&[
        0,
        2,
        4,
        4 + 12,
        4 + 24,
        6,
        11,
        8,
        9,
        10,
        7,
        7 + 12,
        1,
        0,
        2,
        6,
    ]);
    // Wrong orders, a foreign header, a repeated page.
    run_sequence(&[6, 4, 2, 0, 0, 3, 4, 2, 4, 4, 16, 28, 6, 8, 1, 1]);
    let mut x = 0x0123_4567_89ab_cdefu64;
    for _ in 0..40 {
        let seq: Vec<u8> = (0..24)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        run_sequence(&seq);
    }
}
