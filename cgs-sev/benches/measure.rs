//! Measurement speed, side by side in one run (`cargo bench -p cgs-sev --bench measure`):
//!
//! 1. whole-process time of `cgs-measure` and of `sev-snp-measure` 0.0.13 for
//!    `--mode snp --vcpus 64 --vcpu-type EPYC-v4` on Debian's `OVMF_CODE_4M.fd` (goal ≥ 20×);
//! 2. the SNP digest core (`snp_ovmf_hash`: per page SHA-384 + PAGE_INFO SHA-384) against plain
//!    SHA-384 over the same bytes (goal ≥ 0.8×).
//!
//! The oracles come from `../shared/tools/oracles.sh`'s cache ($CGS_ORACLE_CACHE or
//! ~/.cache/cgs-oracles); without them part 1 is skipped and part 2 runs on a synthetic image.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cgs_sev::measure::sha384x::{self, Tier};
use cgs_sev::measure::{digest, OvmfImage};
use sha2::{Digest, Sha384};

fn cache() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("CGS_ORACLE_CACHE") {
        return Some(PathBuf::from(c));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cgs-oracles"))
}

/// CPU time (user + system) used so far by this process's waited-for children.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`; RUSAGE_CHILDREN is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall-clock and CPU time of one call of `f` (which runs one child process to its end).
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let cpu = children_cpu();
    let start = Instant::now();
    f();
    (start.elapsed(), children_cpu() - cpu)
}

fn median_of(mut t: Vec<Duration>) -> Duration {
    t.sort();
    t[t.len() / 2]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The median of `runs` wall-clock times of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn main() {
    let cache = cache();
    let ssm = cache
        .as_ref()
        .map(|c| c.join("venv/bin/sev-snp-measure"))
        .filter(|p| p.exists());
    let ovmf = cache
        .as_ref()
        .map(|c| c.join("ovmf/usr/share/OVMF/OVMF_CODE_4M.fd"))
        .filter(|p| p.exists());

    match (&ssm, &ovmf) {
        (Some(ssm), Some(ovmf)) => {
            let args = [
                "--mode", "snp", "--vcpus", "64", "--vcpu-type", "EPYC-v4", "--ovmf",
            ];
            let run = |bin: &PathBuf| {
                let out = Command::new(bin).args(args).arg(ovmf).output().unwrap();
                assert!(out.status.success());
                String::from_utf8(out.stdout).unwrap()
            };
            let cgs = PathBuf::from(env!("CARGO_BIN_EXE_cgs-measure"));
            assert_eq!(run(&cgs), run(ssm), "the two tools disagree");
            // Alternate the two tools so that load changes on this shared machine hit both.
            let load_before = loadavg();
            let runs = 15;
            let (mut w_cgs, mut c_cgs, mut w_ssm, mut c_ssm) = (vec![], vec![], vec![], vec![]);
            for _ in 0..runs {
                let (w, c) = timed(|| {
                    run(&cgs);
                });
                w_cgs.push(w);
                c_cgs.push(c);
                let (w, c) = timed(|| {
                    run(ssm);
                });
                w_ssm.push(w);
                c_ssm.push(c);
            }
            let fastest_cgs = *w_cgs.iter().min().unwrap();
            let fastest_ssm = *w_ssm.iter().min().unwrap();
            let (t_cgs, t_ssm) = (median_of(w_cgs), median_of(w_ssm));
            let (c_cgs, c_ssm) = (median_of(c_cgs), median_of(c_ssm));
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
            println!(
                "whole process, --mode snp --vcpus 64, OVMF_CODE_4M.fd, {runs} alternating runs each \
                 (goal >= 20x):\n  \
                 wall-clock median: cgs-measure {:.1} ms, sev-snp-measure {:.1} ms, ratio {:.1}x\n  \
                 wall-clock best:   cgs-measure {:.1} ms, sev-snp-measure {:.1} ms, ratio {:.1}x\n  \
                 CPU time median:   cgs-measure {:.1} ms, sev-snp-measure {:.1} ms, ratio {:.1}x",
                ms(t_cgs),
                ms(t_ssm),
                ratio(t_ssm, t_cgs),
                ms(fastest_cgs),
                ms(fastest_ssm),
                ratio(fastest_ssm, fastest_cgs),
                ms(c_cgs),
                ms(c_ssm),
                ratio(c_ssm, c_cgs),
            );
            println!("  (load average before: {load_before}, after: {})", loadavg());
        }
        _ => println!("SKIP whole-process comparison: run ../shared/tools/oracles.sh ovmf and sev-snp-measure"),
    }

    // Distinct pages (no repeated page for the core to skip): the core's worst case.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let distinct: Vec<u8> = (0..3_653_632 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let data = match &ovmf {
        Some(p) => std::fs::read(p).unwrap(),
        None => distinct.clone(),
    };
    let reps = 9;
    let mb = data.len() as f64 / 1e6;
    for (name, bytes) in [
        ("OVMF_CODE_4M.fd", &data),
        ("synthetic image of distinct pages", &distinct),
    ] {
        let image = OvmfImage::parse(bytes).unwrap();
        let t_core = median(reps, || {
            std::hint::black_box(digest::snp_ovmf_hash(&image).unwrap());
        });
        let t_sha = median(reps, || {
            std::hint::black_box(Sha384::digest(bytes));
        });
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "digest core over {mb:.1} MB ({name}): snp_ovmf_hash {:.0} MB/s, plain SHA-384 \
             {:.0} MB/s, ratio {:.2}x (goal >= 0.8x)",
            mb / t_core.as_secs_f64(),
            mb / t_sha.as_secs_f64(),
            t_sha.as_secs_f64() / t_core.as_secs_f64()
        );
    }

    let pages: Vec<&[u8]> = data[..data.len() / 4096 * 4096]
        .chunks_exact(4096)
        .collect();
    let t_one = median(reps, || {
        for p in &pages {
            std::hint::black_box(Sha384::digest(p));
        }
    });
    let mut line = format!(
        "SHA-384 of the {} pages, one thread: sha2 one page at a time {:.0} MB/s",
        pages.len(),
        mb / t_one.as_secs_f64()
    );
    for tier in Tier::ALL.into_iter().filter(|t| t.is_available()) {
        let t = median(reps, || {
            std::hint::black_box(sha384x::sha384_each_with(tier, &pages));
        });
        line += &format!(
            ", {tier:?} {:.0} MB/s ({:.2}x)",
            mb / t.as_secs_f64(),
            t_one.as_secs_f64() / t.as_secs_f64()
        );
    }
    println!("{line}");
}
