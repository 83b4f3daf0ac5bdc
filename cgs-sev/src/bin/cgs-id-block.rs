//! `cgs-id-block`: an SNP ID block and ID auth for QEMU's `sev-snp-guest` object, flag-compatible
//! with sev-snp-measure 0.0.13's `snp-create-id-block`.
//!
//! `cgs-id-block --measurement <base64 LD> --idkey ID.pem --authorkey AUTHOR.pem [--policy P]
//! [--guest-svn N]` prints `id-block=<b64>,id-auth=<b64>`, then `id_key_hash: <b64>` and
//! `author_key: <b64>` (the report's ID_KEY_DIGEST and AUTHOR_KEY_DIGEST). Usage errors exit 2,
//! other errors 1, both as `Error: …` on stderr.

use std::process::ExitCode;

use base64::Engine;
use cgs_sev::measure::idblock::{qemu_options, IdAuth, IdBlock, SnpSigningKey, DEFAULT_POLICY};

struct Failure(String, u8);

fn parse_u64(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

fn load_key(path: &str) -> Result<SnpSigningKey, Failure> {
    // The key file holds the secret: wipe our copy when done.
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| Failure(format!("cannot read key '{path}': {e}"), 1))?,
    );
    let key = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => SnpSigningKey::from_pem(text),
        _ => SnpSigningKey::from_der(&bytes),
    };
    key.map_err(|e| Failure(format!("{path}: {e}"), 1))
}

fn run() -> Result<(), Failure> {
    let (mut ld, mut idkey, mut authorkey) = (None, None, None);
    let (mut policy, mut svn) = (DEFAULT_POLICY, 0u32);
    // `std::env::args` panics on an argument that is not UTF-8: convert each one ourselves.
    let mut args = std::env::args_os().skip(1).map(|a| {
        a.into_string().map_err(|a| {
            Failure(
                format!("argument {}: not valid UTF-8", a.to_string_lossy()),
                2,
            )
        })
    });
    while let Some(a) = args.next() {
        let a = a?;
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            println!("usage: cgs-id-block [-h] [--measurement VALUE] [--idkey PATH] [--authorkey PATH] [--policy VALUE] [--guest-svn N]");
            return Ok(());
        }
        let mut value = || match inline.clone() {
            Some(v) => Ok(v),
            None => args.next().unwrap_or_else(|| {
                Err(Failure(
                    format!("argument {flag}: expected one argument"),
                    2,
                ))
            }),
        };
        match flag.as_str() {
            "--measurement" => ld = Some(value()?),
            "--idkey" => idkey = Some(value()?),
            "--authorkey" => authorkey = Some(value()?),
            "--policy" => {
                let v = value()?;
                policy = parse_u64(&v)
                    .ok_or_else(|| Failure(format!("argument --policy: invalid value '{v}'"), 2))?;
            }
            "--guest-svn" => {
                let v = value()?;
                svn = parse_u64(&v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Failure(format!("argument --guest-svn: invalid value '{v}'"), 2)
                    })?;
            }
            other => return Err(Failure(format!("unrecognized arguments: {other}"), 2)),
        }
    }
    let (Some(idkey), Some(authorkey)) = (idkey, authorkey) else {
        return Err(Failure("missing key files for id block".into(), 2));
    };
    let ld = ld.ok_or_else(|| Failure("missing --measurement".into(), 2))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ld: [u8; 48] = b64
        .decode(ld.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Failure("--measurement must be 48 bytes in base64".into(), 1))?;
    let (id, author) = (load_key(&idkey)?, load_key(&authorkey)?);
    let mut block = IdBlock::new(ld);
    block.policy = policy;
    block.guest_svn = svn;
    let auth = IdAuth::sign(&block, &id, Some(&author));
    println!("{}", qemu_options(&block, &auth));
    println!("id_key_hash: {}", b64.encode(id.public_key_digest()));
    println!("author_key: {}", b64.encode(author.public_key_digest()));
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            eprintln!("Error: {msg}");
            ExitCode::from(code)
        }
    }
}
