//! `cgs-measure`: SEV / SEV-ES / SEV-SNP launch digests, flag-compatible with sev-snp-measure
//! 0.0.13.
//!
//! Prints the digest alone on stdout (hex or base64). Usage errors print `Error: …` on stderr and
//! exit 2 (as argparse does); computation errors print `Error: …` and exit 1.

mod file;

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use base64::Engine;
use cgs_sev::measure::{
    self, digest, CpuSignature, KernelHashes, LaunchInputs, OvmfImage, VcpuRole, VcpuState,
    VcpuType, VmmType,
};
use file::FileBytes;

const USAGE: &str =
    "usage: cgs-measure [-h] [--version] [-v] --mode {sev,seves,snp,snp:ovmf-hash} \
[--vcpus N] [--vcpu-type CPUTYPE] [--vcpu-sig VALUE] [--vcpu-family FAMILY] [--vcpu-model MODEL] \
[--vcpu-stepping STEPPING] [--vmm-type VMMTYPE] --ovmf PATH [--kernel PATH] [--initrd PATH] \
[--append CMDLINE] [--guest-features VALUE] [--output-format {hex,base64}] [--snp-ovmf-hash HASH] \
[--dump-vmsa] [--svsm PATH] [--vars-size SIZE | --vars-file PATH]";

/// A failure: the message and the exit status.
struct Failure {
    msg: String,
    code: u8,
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure {
        msg: msg.into(),
        code: 2,
    }
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure {
        msg: msg.into(),
        code: 1,
    }
}

impl From<measure::MeasureError> for Failure {
    fn from(e: measure::MeasureError) -> Self {
        fail(e.to_string())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sev,
    SevEs,
    Snp,
    SnpOvmfHash,
    SnpSvsm,
}

#[derive(Default)]
struct Args {
    verbose: bool,
    mode: Option<Mode>,
    vcpus: Option<i64>,
    vcpu_type: Option<VcpuType>,
    vcpu_sig: Option<i64>,
    vcpu_family: Option<i64>,
    vcpu_model: Option<i64>,
    vcpu_stepping: Option<i64>,
    vmm_type: Option<String>,
    ovmf: Option<OsString>,
    kernel: Option<OsString>,
    initrd: Option<OsString>,
    append: Option<OsString>,
    guest_features: Option<i64>,
    base64: bool,
    snp_ovmf_hash: Option<String>,
    dump_vmsa: bool,
    svsm: Option<OsString>,
    vars_size: Option<i64>,
    vars_file: Option<OsString>,
}

/// Python's `int(s, 0)`: optional sign, `0x`/`0o`/`0b` prefixes, `_` between digits, no leading
/// zeros in decimal.
fn parse_int_auto(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = t.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.strip_prefix('_').unwrap_or(d))
    } else {
        if lower.len() > 1
            && lower.starts_with('0')
            && lower.bytes().any(|b| b != b'0' && b != b'_')
        {
            return None;
        }
        (10, lower.as_str())
    };
    parse_digits(digits, radix, neg)
}

/// Python's `int(s)` (base 10).
fn parse_int10(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    parse_digits(t, 10, neg)
}

fn parse_digits(d: &str, radix: u32, neg: bool) -> Option<i64> {
    // One sign only (Python refuses `--5`; `from_str_radix` would take a second one, and
    // `-(-2^63)` overflows).
    if d.is_empty() || d.starts_with(['_', '+', '-']) || d.ends_with('_') || d.contains("__") {
        return None;
    }
    let clean: String = d.chars().filter(|&c| c != '_').collect();
    let v = i64::from_str_radix(&clean, radix).ok()?;
    if neg {
        v.checked_neg()
    } else {
        Some(v)
    }
}

fn value_str(flag: &str, v: &OsString) -> Result<String, Failure> {
    v.to_str()
        .map(str::to_owned)
        .ok_or_else(|| usage(format!("argument {flag}: not valid UTF-8")))
}

fn parse_args(argv: Vec<OsString>) -> Result<Option<Args>, Failure> {
    let mut a = Args::default();
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        let (flag, inline): (String, Option<OsString>) = match bytes.iter().position(|&b| b == b'=')
        {
            Some(p) if bytes.starts_with(b"--") => (
                String::from_utf8_lossy(&bytes[..p]).into_owned(),
                Some(OsString::from(std::ffi::OsStr::from_bytes(&bytes[p + 1..]))),
            ),
            _ => (String::from_utf8_lossy(bytes).into_owned(), None),
        };
        let takes_value = !matches!(
            flag.as_str(),
            "-h" | "--help" | "--version" | "-v" | "--verbose" | "--dump-vmsa"
        );
        let value = if takes_value {
            match inline {
                Some(v) => Some(v),
                None => Some(
                    it.next()
                        .ok_or_else(|| usage(format!("argument {flag}: expected one argument")))?,
                ),
            }
        } else if inline.is_some() {
            return Err(usage(format!("argument {flag}: ignored explicit argument")));
        } else {
            None
        };
        let v = value.unwrap_or_default();
        let int = |parse: fn(&str) -> Option<i64>| -> Result<i64, Failure> {
            let s = value_str(&flag, &v)?;
            parse(&s).ok_or_else(|| usage(format!("argument {flag}: invalid int value: '{s}'")))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--version" => {
                println!("cgs-measure {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-v" | "--verbose" => a.verbose = true,
            "--dump-vmsa" => a.dump_vmsa = true,
            "--mode" => {
                a.mode = Some(match value_str(&flag, &v)?.as_str() {
                    "sev" => Mode::Sev,
                    "seves" => Mode::SevEs,
                    "snp" => Mode::Snp,
                    "snp:ovmf-hash" => Mode::SnpOvmfHash,
                    "snp:svsm" => Mode::SnpSvsm,
                    other => {
                        return Err(usage(format!(
                            "argument --mode: invalid choice: '{other}' (choose from 'sev', \
                             'seves', 'snp', 'snp:ovmf-hash', 'snp:svsm')"
                        )))
                    }
                })
            }
            "--vcpus" => a.vcpus = Some(int(parse_int10)?),
            "--vcpu-type" => {
                let s = value_str(&flag, &v)?;
                a.vcpu_type = Some(VcpuType::by_name(&s).ok_or_else(|| {
                    usage(format!("argument --vcpu-type: invalid choice: '{s}'"))
                })?);
            }
            "--vcpu-sig" => a.vcpu_sig = Some(int(parse_int_auto)?),
            "--vcpu-family" => a.vcpu_family = Some(int(parse_int10)?),
            "--vcpu-model" => a.vcpu_model = Some(int(parse_int10)?),
            "--vcpu-stepping" => a.vcpu_stepping = Some(int(parse_int10)?),
            "--vmm-type" => a.vmm_type = Some(value_str(&flag, &v)?),
            "--ovmf" => a.ovmf = Some(v),
            "--kernel" => a.kernel = Some(v),
            "--initrd" => a.initrd = Some(v),
            "--append" => a.append = Some(v),
            "--guest-features" => a.guest_features = Some(int(parse_int_auto)?),
            "--output-format" => {
                a.base64 = match value_str(&flag, &v)?.as_str() {
                    "hex" => false,
                    "base64" => true,
                    other => {
                        return Err(usage(format!(
                            "argument --output-format: invalid choice: '{other}' (choose from \
                             'hex', 'base64')"
                        )))
                    }
                }
            }
            "--snp-ovmf-hash" => a.snp_ovmf_hash = Some(value_str(&flag, &v)?),
            "--svsm" => a.svsm = Some(v),
            "--vars-size" => a.vars_size = Some(int(parse_int10)?),
            "--vars-file" => a.vars_file = Some(v),
            other => return Err(usage(format!("unrecognized arguments: {other}"))),
        }
    }
    Ok(Some(a))
}

fn read_file(what: &str, path: &OsString) -> Result<FileBytes, Failure> {
    FileBytes::open(path).map_err(|e| {
        fail(format!(
            "cannot read {what} '{}': {e}",
            path.to_string_lossy()
        ))
    })
}

fn hash_file(what: &str, path: &OsString) -> Result<[u8; 32], Failure> {
    let err = |e: std::io::Error| {
        fail(format!(
            "cannot read {what} '{}': {e}",
            path.to_string_lossy()
        ))
    };
    KernelHashes::hash_reader(File::open(path).map_err(err)?).map_err(err)
}

fn nonempty(v: &Option<OsString>) -> Option<&OsString> {
    v.as_ref().filter(|s| !s.is_empty())
}

fn to_u32(what: &str, v: i64) -> Result<u32, Failure> {
    u32::try_from(v).map_err(|_| fail(format!("{what} {v} is out of range")))
}

fn signature(a: &Args) -> Result<Option<CpuSignature>, Failure> {
    if let Some(f) = a.vcpu_family.filter(|&f| f != 0) {
        let (Some(m), Some(s)) = (a.vcpu_model, a.vcpu_stepping) else {
            return Err(usage(
                "--vcpu-family requires --vcpu-model and --vcpu-stepping",
            ));
        };
        return Ok(Some(CpuSignature::from_fms(
            to_u32("vCPU family", f)?,
            to_u32("vCPU model", m)?,
            to_u32("vCPU stepping", s)?,
        )?));
    }
    if let Some(sig) = a.vcpu_sig {
        return Ok(Some(CpuSignature(to_u32("vCPU signature", sig)?)));
    }
    Ok(a.vcpu_type.map(|t| t.signature()))
}

fn run(argv: Vec<OsString>) -> Result<(), Failure> {
    let Some(a) = parse_args(argv)? else {
        return Ok(());
    };
    let mode = a
        .mode
        .ok_or_else(|| usage("the following arguments are required: --mode"))?;
    let ovmf_path = a
        .ovmf
        .as_ref()
        .ok_or_else(|| usage("the following arguments are required: --ovmf"))?;
    if mode == Mode::SnpOvmfHash {
        let data = read_file("OVMF", ovmf_path)?;
        let ovmf = OvmfImage::parse(&data)?;
        println!("{}", measure::hex(&digest::snp_ovmf_hash(&ovmf)?));
        return Ok(());
    }
    // snp:svsm ignores measured direct boot, as sev-snp-measure does.
    let kernel = nonempty(&a.kernel).filter(|_| mode != Mode::SnpSvsm);
    if nonempty(&a.initrd).is_some() && a.kernel.is_none() {
        return Err(usage("--kernel required when using --initrd"));
    }
    if nonempty(&a.append).is_some() && a.kernel.is_none() {
        return Err(usage("--kernel required when using --append"));
    }
    let mode_name = match mode {
        Mode::Sev => "sev",
        Mode::SevEs => "seves",
        Mode::SnpSvsm => "snp:svsm",
        _ => "snp",
    };
    if a.vars_size.is_some() && a.vars_file.is_some() {
        return Err(usage(
            "argument --vars-file: not allowed with argument --vars-size",
        ));
    }
    if mode != Mode::Sev && a.vcpus.is_none() {
        return Err(usage(format!(
            "missing --vcpus N in guest mode '{mode_name}'"
        )));
    }
    let vmm_name = a.vmm_type.as_deref().unwrap_or("QEMU");
    let vmm: VmmType = vmm_name
        .parse()
        .map_err(|_| usage(format!("unknown VMM type '{vmm_name}'")))?;
    let sig = if mode == Mode::Sev {
        None
    } else {
        signature(&a)?
    };
    if mode != Mode::Sev && sig.is_none() && vmm.preset().needs_signature() {
        return Err(usage(format!(
            "missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode '{mode_name}'"
        )));
    }
    let vars_size = if mode == Mode::SnpSvsm {
        match (&a.vars_file, a.vars_size) {
            (Some(f), _) => Some(
                std::fs::metadata(f)
                    .map_err(|e| fail(format!("cannot read '{}': {e}", f.to_string_lossy())))?
                    .len(),
            ),
            (None, Some(n)) if n != 0 => {
                Some(u64::try_from(n).map_err(|_| fail(format!("--vars-size {n} is negative")))?)
            }
            _ => return Err(usage("snp:svsm mode requires --vars-size or --vars-file")),
        }
    } else {
        None
    };
    if a.dump_vmsa && mode == Mode::Sev {
        return Err(usage("--dump-vmsa is not availibe in the selected mode"));
    }
    if mode == Mode::SnpSvsm && vmm != VmmType::Qemu {
        return Err(fail("SVSM mode is only implemented for Qemu."));
    }
    if a.snp_ovmf_hash.is_some() && mode != Mode::Snp {
        return Err(fail("SNP OVMF hash only works with SNP"));
    }

    let svsm_path = match (mode, &a.svsm) {
        (Mode::SnpSvsm, None) => return Err(fail("snp:svsm mode requires --svsm PATH")),
        (_, Some(p)) => p.clone(),
        (_, None) => OsString::new(),
    };
    let mut svsm_entry: Option<u32> = None;
    let data = read_file("OVMF", ovmf_path)?;
    let ovmf = OvmfImage::parse(&data)?;
    let kernel_hashes = match kernel {
        None => None,
        Some(k) => {
            let kernel = hash_file("kernel", k)?;
            let initrd = match nonempty(&a.initrd) {
                Some(p) => hash_file("initrd", p)?,
                None => KernelHashes::from_contents(&[], None, None).initrd,
            };
            let cmdline =
                KernelHashes::cmdline_hash(a.append.as_ref().map_or(&[][..], |s| s.as_bytes()));
            Some(KernelHashes::from_hashes(kernel, initrd, cmdline))
        }
    };
    let ovmf_hash = match &a.snp_ovmf_hash {
        None => None,
        Some(h) => {
            let bytes = measure::parse_hex(h.trim())?;
            Some(<[u8; 48]>::try_from(bytes.as_slice()).map_err(|_| {
                fail(format!(
                    "--snp-ovmf-hash must be 48 bytes (96 hex digits), got {}",
                    bytes.len()
                ))
            })?)
        }
    };
    let vcpus = match a.vcpus {
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| fail(format!("--vcpus must be a positive number, got {n}")))?,
        None => 1,
    };
    let inputs = LaunchInputs {
        vcpus,
        vmm: vmm.preset(),
        signature: sig,
        sev_features: match mode {
            Mode::Snp => a
                .guest_features
                .map(|f| {
                    u64::try_from(f).map_err(|_| fail(format!("guest features {f} are negative")))
                })
                .transpose()?
                .unwrap_or(0x1),
            _ => 0,
        },
        kernel_hashes,
        ovmf_hash,
    };
    let (ld, label): (Vec<u8>, &str) = match mode {
        Mode::Sev => (
            digest::sev_launch_digest(&ovmf, inputs.kernel_hashes.as_ref())?.to_vec(),
            "SEV",
        ),
        Mode::SevEs => (
            digest::seves_launch_digest(&ovmf, &inputs)?.to_vec(),
            "SEV_ES",
        ),
        Mode::SnpSvsm => {
            let svsm_data = read_file("SVSM", &svsm_path)?;
            let end = digest::svsm_end(&ovmf, vars_size.unwrap_or(0))?;
            let svsm = OvmfImage::parse_at(&svsm_data, end)?;
            let entry = u32::try_from(svsm.svsm_entry()?)
                .map_err(|_| fail("the SVSM entry point is above 4 GiB"))?;
            svsm_entry = Some(entry);
            (
                digest::snp_svsm_launch_digest(&ovmf, &svsm, &inputs)?.to_vec(),
                "SEV_SNP_SVSM",
            )
        }
        _ => (
            digest::snp_launch_digest(&ovmf, &inputs)?.to_vec(),
            "SEV_SNP",
        ),
    };
    if a.dump_vmsa {
        for i in 0..vcpus {
            let role = if i == 0 { VcpuRole::Bsp } else { VcpuRole::Ap };
            let state = match (svsm_entry, sig) {
                (Some(entry), Some(sig)) => VcpuState::svsm(role, entry, sig),
                _ => inputs.vmsa_builder(&ovmf)?.vcpu(i)?,
            };
            let page = state.to_vmsa();
            let name = format!("vmsa{i}.bin");
            std::fs::write(&name, page.as_bytes())
                .map_err(|e| fail(format!("cannot write {name}: {e}")))?;
        }
    }
    let text = if a.base64 {
        base64::engine::general_purpose::STANDARD.encode(&ld)
    } else {
        measure::hex(&ld)
    };
    let mut out = std::io::stdout().lock();
    let written = if a.verbose {
        writeln!(out, "Calculated {label} guest measurement: {text}")
    } else {
        writeln!(out, "{text}")
    };
    written.map_err(|e| fail(format!("cannot write the result: {e}")))
}

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("Error: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
