//! Runs every cargo-fuzz target's body on stable: over its checked-in corpus (`fuzz/corpus/<t>`)
//! and a few thousand generated inputs derived from it. The list of targets here must match
//! `fuzz/fuzz_targets/`, so a new target cannot be forgotten.

use std::path::{Path, PathBuf};

type Body = fn(&[u8]);

/// Every fuzz target and the library function its body calls.
const TARGETS: &[(&str, Body)] = &[
    ("config", cgs_core::fuzzing::fuzz_config),
    ("gmem_hypercall", cgs_gmem::fuzzing::fuzz_hypercall_exit),
    (
        "gmem_memory_fault",
        cgs_gmem::fuzzing::fuzz_memory_fault_exit,
    ),
    ("gmem_psc", cgs_gmem::fuzzing::fuzz_psc),
    ("gmem_tracker", cgs_gmem::fuzzing::fuzz_tracker),
    ("s390pv_se_header", cgs_s390pv::fuzzing::fuzz_se_header),
    ("s390pv_ipl_block", cgs_s390pv::fuzzing::fuzz_pv_ipl_block),
    ("s390pv_lifecycle", cgs_s390pv::fuzzing::fuzz_lifecycle),
    ("pef_esm_blob", cgs_pef::fuzzing::fuzz_esm_blob),
    ("pef_ultracalls", cgs_pef::fuzzing::fuzz_ultracalls),
    ("pef_lifecycle", cgs_pef::fuzzing::fuzz_lifecycle),
    ("sev_cert_table", cgs_sev::fuzzing::fuzz_cert_table),
    (
        "sev_attestation_report",
        cgs_sev::fuzzing::fuzz_attestation_report,
    ),
    ("sev_cpuid_page", cgs_sev::fuzzing::fuzz_cpuid_page),
    ("sev_guest_message", cgs_sev::fuzzing::fuzz_guest_message),
    (
        "sev_migration_stream",
        cgs_sev::fuzzing::fuzz_migration_stream,
    ),
    ("sev_packet_header", cgs_sev::fuzzing::fuzz_packet_header),
    ("sev_lifecycle", cgs_sev::fuzzing::fuzz_lifecycle),
    ("measure_ovmf", cgs_sev::measure::fuzzing::fuzz_ovmf),
    (
        "measure_kernel_hashes",
        cgs_sev::measure::fuzzing::fuzz_kernel_hashes,
    ),
    ("measure_vmsa", cgs_sev::measure::fuzzing::fuzz_vmsa),
    ("measure_idblock", cgs_sev::measure::fuzzing::fuzz_idblock),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Deterministic mutations of the seeds: bit flips, truncations, insertions, splices.
fn mutations(seeds: &[Vec<u8>], count: usize) -> Vec<Vec<u8>> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut input = if seeds.is_empty() {
            Vec::new()
        } else {
            seeds[i % seeds.len()].clone()
        };
        for _ in 0..=(next() % 4) {
            let r = next();
            let pos = if input.is_empty() {
                0
            } else {
                (r as usize >> 8) % input.len()
            };
            match r % 5 {
                0 if !input.is_empty() => input[pos] ^= 1 << ((r >> 32) % 8),
                1 => input.truncate(pos),
                2 => input.insert(pos, (r >> 40) as u8),
                3 if !input.is_empty() => {
                    input[pos] = [0, 0xff, b',', b'='][(r >> 20) as usize % 4]
                }
                _ => {
                    let other = &seeds
                        .get((r as usize >> 3) % seeds.len().max(1))
                        .cloned()
                        .unwrap_or_default();
                    let cut = if other.is_empty() {
                        0
                    } else {
                        (r as usize >> 12) % other.len()
                    };
                    input.extend_from_slice(&other[cut..]);
                }
            }
        }
        out.push(input);
    }
    out
}

#[test]
fn every_fuzz_target_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(listed, on_disk, "TARGETS must match fuzz/fuzz_targets");
}

/// `cargo fuzz list` (and so `.ci/run`'s fuzz step) only knows targets with a `[[bin]]` in
/// fuzz/Cargo.toml: every file in fuzz/fuzz_targets must have one, with the matching path.
#[test]
fn every_fuzz_target_has_a_bin() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut bins: Vec<String> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|section| {
            let field = |key: &str| {
                section.lines().find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
                })
            };
            let name = field("name")?;
            assert_eq!(
                field("path").as_deref(),
                Some(format!("fuzz_targets/{name}.rs").as_str()),
                "[[bin]] {name}"
            );
            Some(name)
        })
        .collect();
    bins.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        bins, listed,
        "fuzz/Cargo.toml [[bin]] entries must match TARGETS"
    );
}

#[test]
fn corpus_and_generated_inputs_never_panic() {
    for (name, body) in TARGETS {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        for input in &seeds {
            body(input);
        }
        for input in mutations(&seeds, 3000) {
            body(&input);
        }
    }
}
