//! Equality with sev-snp-measure 0.0.13 itself on Debian's full OVMF images, when both are
//! installed (`../shared/tools/oracles.sh ovmf` and `… sev-snp-measure`, which cache them under
//! `$CGS_ORACLE_CACHE` or `~/.cache/cgs-oracles`). Prints SKIP otherwise; never downloads.
//! `scripts/compare-sev-snp-measure.sh` runs the large matrix through the CLI.

use std::path::PathBuf;
use std::process::Command;

use cgs_sev::measure::{self, digest, LaunchInputs, OvmfImage, VcpuType, VmmType};

fn cache() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("CGS_ORACLE_CACHE") {
        return Some(PathBuf::from(c));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("cgs-oracles"))
}

fn oracles() -> Option<(PathBuf, PathBuf)> {
    let c = cache()?;
    let ssm = c.join("venv/bin/sev-snp-measure");
    let ovmf = c.join("ovmf/usr/share/OVMF");
    (ssm.exists() && ovmf.join("OVMF_CODE_4M.fd").exists()).then_some((ssm, ovmf))
}

fn oracle(ssm: &PathBuf, args: &[String]) -> String {
    let out = Command::new(ssm).args(args).output().unwrap();
    assert!(out.status.success(), "sev-snp-measure {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn library_equals_sev_snp_measure_on_debian_ovmf() {
    let Some((ssm, dir)) = oracles() else {
        println!("SKIP: sev-snp-measure 0.0.13 or Debian OVMF not installed (run ../shared/tools/oracles.sh)");
        return;
    };
    let mut n = 0;
    for file in ["OVMF_CODE.fd", "OVMF_CODE_4M.fd"] {
        let path = dir.join(file);
        let data = std::fs::read(&path).unwrap();
        let ovmf = OvmfImage::parse(&data).unwrap();
        let p = path.to_string_lossy().into_owned();
        let args = |extra: &str| -> Vec<String> {
            let mut v: Vec<String> = extra.split_whitespace().map(str::to_owned).collect();
            v.extend(["--ovmf".to_owned(), p.clone()]);
            v
        };
        // The OVMF pages are hashed once (debug builds hash slowly); the other SNP digests start
        // from that seed, an equivalence tests/measure_golden.rs checks, while the oracle always
        // hashes the whole image.
        let seed = digest::snp_ovmf_hash(&ovmf).unwrap();
        assert_eq!(
            measure::hex(&seed),
            oracle(&ssm, &args("--mode snp:ovmf-hash"))
        );
        assert_eq!(
            measure::hex(&digest::sev_launch_digest(&ovmf, None).unwrap()),
            oracle(&ssm, &args("--mode sev"))
        );
        n += 2;
        for vcpus in [1u32, 16] {
            for name in ["EPYC-v4", "EPYC-Genoa"] {
                let sig = VcpuType::by_name(name).unwrap().signature();
                for features in [0x1u64, 0x21] {
                    let mut i = LaunchInputs::qemu(vcpus, sig);
                    i.sev_features = features;
                    i.ovmf_hash = Some(seed);
                    assert_eq!(
                        measure::hex(&digest::snp_launch_digest(&ovmf, &i).unwrap()),
                        oracle(
                            &ssm,
                            &args(&format!(
                                "--mode snp --vcpus {vcpus} --vcpu-type {name} --guest-features {features:#x}"
                            ))
                        ),
                        "{file} snp {vcpus} {name} {features:#x}"
                    );
                    n += 1;
                }
                let mut es = LaunchInputs::qemu(vcpus, sig);
                es.sev_features = 0;
                assert_eq!(
                    measure::hex(&digest::seves_launch_digest(&ovmf, &es).unwrap()),
                    oracle(
                        &ssm,
                        &args(&format!("--mode seves --vcpus {vcpus} --vcpu-type {name}"))
                    )
                );
                n += 1;
            }
            for vmm in [VmmType::Ec2, VmmType::Gce] {
                let i = LaunchInputs {
                    vmm: vmm.preset(),
                    signature: None,
                    ovmf_hash: Some(seed),
                    ..LaunchInputs::qemu(vcpus, measure::CpuSignature(0))
                };
                assert_eq!(
                    measure::hex(&digest::snp_launch_digest(&ovmf, &i).unwrap()),
                    oracle(
                        &ssm,
                        &args(&format!("--mode snp --vcpus {vcpus} --vmm-type {vmm}"))
                    ),
                    "{file} {vmm} {vcpus}"
                );
                n += 1;
            }
        }
    }
    println!("{n} digests equal sev-snp-measure 0.0.13's");
}

#[test]
fn id_auth_from_snp_create_id_block_verifies() {
    use base64::Engine;
    use cgs_sev::measure::idblock::{IdAuth, IdBlock, SnpSigningKey};
    let Some(tool) = cache()
        .map(|c| c.join("venv/bin/snp-create-id-block"))
        .filter(|p| p.exists())
    else {
        println!("SKIP: snp-create-id-block (sev-snp-measure 0.0.13) not installed");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/measure");
    let b64 = base64::engine::general_purpose::STANDARD;
    let ld = [0x5Au8; 48];
    let out = Command::new(tool)
        .args(["--measurement", &b64.encode(ld)])
        .args([
            "--idkey",
            "id_key_test.pem",
            "--authorkey",
            "author_key_test.pem",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    let (block, auth) = first.split_once(",id-auth=").unwrap();
    let block = b64.decode(block.trim_start_matches("id-block=")).unwrap();
    let auth = IdAuth::from_bytes(&b64.decode(auth).unwrap()).unwrap();
    assert_eq!(IdBlock::parse(&block).unwrap(), IdBlock::new(ld));
    // sev-snp-measure's randomized signatures verify with our verifier...
    let v = auth.verify(&block, true).unwrap();
    let key =
        |n: &str| SnpSigningKey::from_pem(&std::fs::read_to_string(dir.join(n)).unwrap()).unwrap();
    assert_eq!(v.id_key_digest, key("id_key_test.pem").public_key_digest());
    assert_eq!(
        v.author_key_digest,
        Some(key("author_key_test.pem").public_key_digest())
    );
    // ...and our encoding of the two public keys is byte-identical to theirs.
    let ours = IdAuth::sign(
        &IdBlock::new(ld),
        &key("id_key_test.pem"),
        Some(&key("author_key_test.pem")),
    );
    assert_eq!(ours.id_key(), auth.id_key());
    assert_eq!(ours.author_key(), auth.author_key());
    assert_eq!(ours.as_bytes()[..8], auth.as_bytes()[..8]);
}
