//! `cgs-probe`: print what this host offers confidential guests.
//!
//! ```text
//! cgs-probe                 # a readable table
//! cgs-probe --json          # the same as JSON
//! cgs-probe --check OBJECT  # what OBJECT (QEMU -object syntax) would miss here; exit 1 if any
//! ```

use std::process::ExitCode;

use cgs_core::config::CgsConfig;
use cgs_core::probe::HostCapabilities;
use cgs_core::uapi::{
    GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEMORY_ATTRIBUTE_PRIVATE,
};

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn flags(value: u64, names: &[(u64, &str)]) -> String {
    if value == 0 {
        return "none".into();
    }
    let mut parts: Vec<String> = names
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    let known: u64 = names.iter().map(|(b, _)| b).fold(0, |a, b| a | b);
    if value & !known != 0 {
        parts.push(format!("{:#x}", value & !known));
    }
    parts.join("|")
}

fn table(c: &HostCapabilities) -> String {
    let mut rows: Vec<(&str, String)> = vec![("architecture", c.arch.to_string())];
    if let Some(e) = &c.kvm_error {
        rows.push(("KVM", e.clone()));
    } else {
        rows.push(("KVM API version", c.kvm_api_version.to_string()));
        rows.push(("VM types", c.vm_type_names().join(", ")));
        rows.push(("guest_memfd", yes(c.guest_memfd).into()));
        rows.push((
            "guest_memfd flags",
            flags(
                c.guest_memfd_flags,
                &[
                    (GUEST_MEMFD_FLAG_MMAP, "MMAP"),
                    (GUEST_MEMFD_FLAG_INIT_SHARED, "INIT_SHARED"),
                ],
            ),
        ));
        rows.push((
            "memory attributes",
            flags(
                c.memory_attributes,
                &[(KVM_MEMORY_ATTRIBUTE_PRIVATE, "PRIVATE")],
            ),
        ));
        rows.push(("KVM_SET_USER_MEMORY_REGION2", yes(c.user_memory2).into()));
        rows.push((
            "exit hypercalls",
            if c.exit_hypercall == 0 {
                "none".into()
            } else {
                format!(
                    "{:#x}{}",
                    c.exit_hypercall,
                    if c.exit_hypercall & (1 << 12) != 0 {
                        " (MAP_GPA_RANGE)"
                    } else {
                        ""
                    }
                )
            },
        ));
        rows.push(("memory fault info", yes(c.memory_fault_info).into()));
        rows.push(("pre-fault memory", yes(c.pre_fault_memory).into()));
        rows.push(("system attributes", yes(c.sys_attributes).into()));
        rows.push((
            "copy/move encryption context",
            format!("{}/{}", yes(c.copy_enc_context), yes(c.move_enc_context)),
        ));
    }
    if c.arch == "x86_64" {
        let sev = if c.sev.encrypt_op {
            "KVM_MEMORY_ENCRYPT_OP present"
        } else {
            "no (KVM_MEMORY_ENCRYPT_OP: ENOTTY)"
        };
        rows.push(("SEV in KVM", sev.into()));
        rows.push(("/dev/sev", yes(c.sev.sev_device).into()));
        rows.push((
            "SEV VMSA features",
            c.sev
                .vmsa_features
                .map_or("not exposed".into(), |v| format!("{v:#x}")),
        ));
        rows.push((
            "CPUID 0x8000001F",
            match c.sev.cpuid {
                None => "not an AMD CPU with the leaf".into(),
                Some(s) => format!(
                    "SEV {} SEV-ES {} SEV-SNP {} cbitpos {} reduced-phys-bits {}",
                    yes(s.sev),
                    yes(s.sev_es),
                    yes(s.sev_snp),
                    s.cbitpos,
                    s.reduced_phys_bits
                ),
            },
        ));
    }
    if c.arch == "s390x" {
        rows.push((
            "s390 protected virtualization",
            yes(c.s390_protected).into(),
        ));
        rows.push((
            "s390 PV dump / async disable",
            format!(
                "{}/{}",
                yes(c.s390_protected_dump),
                yes(c.s390_protected_async_disable)
            ),
        ));
    }
    if c.arch == "powerpc64" {
        rows.push(("PPC secure guest (PEF)", yes(c.ppc_secure_guest).into()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let caps = HostCapabilities::probe();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {
            print!("{}", table(&caps));
            ExitCode::SUCCESS
        }
        ["--json"] => match serde_json::to_string_pretty(&caps) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::FAILURE
            }
        },
        ["--check", object] => match object.parse::<CgsConfig>() {
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(2)
            }
            Ok(cfg) => {
                let missing = caps.check(&cfg);
                if missing.is_empty() {
                    println!("{}: this host has everything it needs", cfg.object_type());
                    return ExitCode::SUCCESS;
                }
                println!("{} cannot run on this host:", cfg.object_type());
                for m in missing {
                    println!("  - {}: {}", m.feature, m.why);
                }
                ExitCode::FAILURE
            }
        },
        ["-h" | "--help"] => {
            println!("usage: cgs-probe [--json | --check '<qemu -object string>']");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("Error: usage: cgs-probe [--json | --check '<qemu -object string>']");
            ExitCode::from(2)
        }
    }
}
