//! Fuzz-target bodies for cgs-core's untrusted inputs.
//!
//! Each function takes arbitrary bytes, runs the parser and checks its invariants; it panics only
//! when an invariant breaks (which is what a fuzzer should report). The cargo-fuzz targets in
//! `fuzz/` call these, and a stable test runs them over the checked-in corpus.

use std::fmt::Debug;

use crate::config::{keyval, CgsConfig};
use crate::error::Error;
use crate::platform::PageType;

/// A page type chosen by a fuzz input byte for the lifecycle targets: every variant (those a
/// VMM may not pass included), NORMAL twice as likely as each other one.
pub fn page_type_from_byte(byte: u8) -> PageType {
    match byte % 7 {
        0 | 1 => PageType::Normal,
        2 => PageType::Zero,
        3 => PageType::Unmeasured,
        4 => PageType::Vmsa,
        5 => PageType::Secrets,
        _ => PageType::Cpuid,
    }
}

/// One step's check in the lifecycle targets: the outcome class `got` must be the model's
/// `want` (a panic — the fuzzer's finding — otherwise), and an error's message must render.
#[allow(clippy::panic)]
pub fn expect_outcome<W: PartialEq + Debug>(
    step: usize,
    what: &str,
    got: W,
    want: W,
    err: Option<&Error>,
) {
    if got != want {
        panic!("step {step}: {what}: got {got:?} ({err:?}), the model wants {want:?}");
    }
    if let Some(e) = err {
        // Messages are part of the contract: they must render.
        let _ = e.to_string();
    }
}

/// QEMU `-object` strings: parse → display → parse must give the same configuration, and serde
/// (JSON) must round-trip too. Errors are fine; panics are not.
#[allow(clippy::panic)]
pub fn fuzz_config(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // The tokenizer alone must never panic.
    let _ = keyval::parse(s);
    let Ok(cfg) = s.parse::<CgsConfig>() else {
        return;
    };
    let text = cfg.to_string();
    match text.parse::<CgsConfig>() {
        Ok(again) if again == cfg => {}
        other => panic!("display round-trip failed: {s:?} -> {text:?} -> {other:?}"),
    }
    if let Err(e) = cfg.validate() {
        panic!("parsed configuration does not validate: {e}");
    }
    let json = match serde_json::to_string(&cfg) {
        Ok(j) => j,
        Err(e) => panic!("serialize failed: {e}"),
    };
    match serde_json::from_str::<CgsConfig>(&json) {
        Ok(again) if again == cfg => {}
        other => panic!("serde round-trip failed: {json} -> {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_config_over_generated_inputs() {
        let seeds: [&[u8]; 4] = [
            b"sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000",
            b"sev-guest,id=s,reduced-phys-bits=1,policy=5,legacy-vm-type=on",
            b"pef-guest,id=p",
            b"s390-pv-guest,id=pv0",
        ];
        let mut x = 0x1234_5678_9abc_def0u64;
        for i in 0..4000 {
            let mut input = seeds[i % seeds.len()].to_vec();
            for _ in 0..(i % 5) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pos = (x as usize) % (input.len() + 1);
                match x % 3 {
                    0 if pos < input.len() => {
                        input.remove(pos);
                    }
                    1 => input.insert(pos, b",=x01"[(x >> 8) as usize % 5]),
                    _ if pos < input.len() => input[pos] = (x >> 16) as u8,
                    _ => {}
                }
            }
            fuzz_config(&input);
        }
    }
}
