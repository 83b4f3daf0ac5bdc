//! Golden vectors: cgs-measure against the outputs sev-snp-measure 0.0.13 gave over the fixtures
//! in tests/fixtures/measure (see its README), and library-level checks of the same digests.

use std::path::PathBuf;
use std::process::Command;

use cgs_sev::measure::{self, digest, KernelHashes, LaunchInputs, OvmfImage, VcpuType, VmmType};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/measure")
}

fn golden() -> Vec<(String, i32, Vec<String>)> {
    let text = std::fs::read_to_string(fixtures().join("golden.txt")).unwrap();
    text.lines()
        .map(|l| {
            let mut f = l.split('\t');
            let out = f.next().unwrap().to_owned();
            let code = f.next().unwrap().parse().unwrap();
            let args = f.map(str::to_owned).collect();
            (out, code, args)
        })
        .collect()
}

#[test]
fn cli_matches_every_golden_case() {
    let cases = golden();
    assert!(cases.len() >= 100, "golden.txt has {} cases", cases.len());
    let mut ok = 0;
    for (want, code, args) in &cases {
        let out = Command::new(env!("CARGO_BIN_EXE_cgs-measure"))
            .args(args)
            .current_dir(fixtures())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.trim(), want, "stdout of {args:?}");
        assert_eq!(out.status.code(), Some(*code), "exit status of {args:?}");
        if *code != 0 {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.starts_with("Error: "),
                "stderr of {args:?}: {stderr}"
            );
        }
        ok += 1;
    }
    println!("{ok} golden cases match sev-snp-measure 0.0.13");
}

fn want(args: &str) -> String {
    golden()
        .into_iter()
        .find(|(_, _, a)| a.join(" ") == args)
        .map(|(o, _, _)| o)
        .unwrap_or_else(|| panic!("no golden case {args}"))
}

#[test]
fn library_reproduces_golden_digests() {
    let img = std::fs::read(fixtures().join("ovmf_synthetic_kernel_hashes.bin")).unwrap();
    let kernel = std::fs::read(fixtures().join("kernel.bin")).unwrap();
    let initrd = std::fs::read(fixtures().join("initrd.bin")).unwrap();
    let ovmf = OvmfImage::parse(&img).unwrap();
    let epyc = VcpuType::by_name("EPYC-v4").unwrap().signature();
    let k = KernelHashes::from_contents(&kernel, Some(&initrd), Some(b"console=ttyS0 loglevel=7"));
    let kargs = "--kernel kernel.bin --initrd initrd.bin --append console=ttyS0 loglevel=7";
    let fx = "--ovmf ovmf_synthetic_kernel_hashes.bin";

    let mut snp = LaunchInputs::qemu(4, epyc);
    snp.kernel_hashes = Some(k);
    let ld = digest::snp_launch_digest(&ovmf, &snp).unwrap();
    assert_eq!(
        measure::hex(&ld),
        want(&format!(
            "--mode snp --vcpus 4 --vcpu-type EPYC-v4 {fx} {kargs}"
        ))
    );
    // Starting from the precomputed OVMF hash gives the same digest.
    snp.ovmf_hash = Some(digest::snp_ovmf_hash(&ovmf).unwrap());
    assert_eq!(digest::snp_launch_digest(&ovmf, &snp).unwrap(), ld);
    assert_eq!(
        measure::hex(&snp.ovmf_hash.unwrap()),
        want(&format!("--mode snp:ovmf-hash {fx}"))
    );
    // Precomputed kernel hashes give the same digest as contents.
    snp.kernel_hashes = Some(KernelHashes::from_hashes(k.kernel, k.initrd, k.cmdline));
    assert_eq!(digest::snp_launch_digest(&ovmf, &snp).unwrap(), ld);

    let mut ec2 = LaunchInputs::qemu(1, epyc);
    ec2.vmm = VmmType::Ec2.preset();
    ec2.signature = None;
    assert_eq!(
        measure::hex(&digest::snp_launch_digest(&ovmf, &ec2).unwrap()),
        want(&format!("--mode snp --vcpus 1 --vmm-type ec2 {fx}"))
    );

    let mut es = LaunchInputs::qemu(4, VcpuType::by_name("EPYC-Milan").unwrap().signature());
    es.sev_features = 0;
    assert_eq!(
        measure::hex(&digest::seves_launch_digest(&ovmf, &es).unwrap()),
        want(&format!(
            "--mode seves --vcpus 4 --vcpu-type EPYC-Milan {fx}"
        ))
    );
    assert_eq!(
        measure::hex(&digest::sev_launch_digest(&ovmf, Some(&k)).unwrap()),
        want(&format!("--mode sev {fx} {kargs}"))
    );
}

#[test]
fn missing_kernel_support_is_a_typed_error() {
    let img = std::fs::read(fixtures().join("ovmf_debian_code_suffix.bin")).unwrap();
    let ovmf = OvmfImage::parse(&img).unwrap();
    let k = KernelHashes::from_contents(b"", None, None);
    let mut snp = LaunchInputs::qemu(1, measure::CpuSignature(0x800F12));
    snp.kernel_hashes = Some(k);
    assert_eq!(
        digest::snp_launch_digest(&ovmf, &snp),
        Err(measure::MeasureError::NoKernelHashesSection)
    );
    assert_eq!(
        digest::sev_launch_digest(&ovmf, Some(&k)),
        Err(measure::MeasureError::KernelHashesUnsupported)
    );
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cgs-measure"))
            .args(args)
            .current_dir(fixtures())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(stderr.starts_with("Error: "), "{args:?}: {stderr}");
        out.status.code()
    };
    let fx = "ovmf_debian_code_suffix.bin";
    assert_eq!(run(&["--mode", "snp", "--ovmf", fx]), Some(2)); // no --vcpus
    assert_eq!(
        run(&["--mode", "snp", "--vcpus", "1", "--ovmf", fx]),
        Some(2)
    ); // no vCPU type
    assert_eq!(
        run(&["--mode", "snp", "--vcpus", "x", "--ovmf", fx]),
        Some(2)
    );
    assert_eq!(run(&["--mode", "bogus", "--ovmf", fx]), Some(2));
    assert_eq!(
        run(&["--mode", "sev", "--initrd", "initrd.bin", "--ovmf", fx]),
        Some(2)
    );
    assert_eq!(
        run(&["--mode", "sev", "--dump-vmsa", "--ovmf", fx]),
        Some(2)
    );
    assert_eq!(
        run(&[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vmm-type",
            "kvm",
            "--ovmf",
            fx
        ]),
        Some(2)
    );
    assert_eq!(
        run(&["--mode", "sev", "--ovmf", "does-not-exist.fd"]),
        Some(1)
    );
    assert_eq!(
        run(&["--mode", "sev", "--snp-ovmf-hash", "00", "--ovmf", fx]),
        Some(1)
    );
    assert_eq!(
        run(&[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--snp-ovmf-hash",
            "zz",
            "--ovmf",
            fx
        ]),
        Some(1)
    );
    // A truncated image is an error, not a panic.
    assert_eq!(
        run(&[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--ovmf",
            "initrd.bin"
        ]),
        Some(1)
    );
}

/// Regression: `--9223372036854775808` passed the sign check twice and `-(-2^63)` overflowed
/// (a panic in debug builds); a doubled sign is an invalid int, as Python says.
#[test]
fn doubled_signs_are_invalid_ints_not_panics() {
    for arg in [
        "--vcpu-sig=--9223372036854775808",
        "--vcpu-sig=-+5",
        "--vcpus=--5",
        "--vcpus=+-5",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cgs-measure"))
            .args([
                "--mode",
                "snp",
                arg,
                "--ovmf",
                "ovmf_debian_code_suffix.bin",
            ])
            .current_dir(fixtures())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg}: {stderr}");
        assert!(stderr.contains("invalid int value"), "{arg}: {stderr}");
    }
}
