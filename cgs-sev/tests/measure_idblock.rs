//! The ID block vector of sev-snp-measure's tests/test_id_block.py, with its public test keys.

use base64::Engine;
use cgs_sev::measure::idblock::{qemu_options, IdAuth, IdBlock, SnpSigningKey};

fn key(name: &str) -> SnpSigningKey {
    let path = format!(
        "{}/tests/fixtures/measure/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    SnpSigningKey::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn sev_snp_measure_id_block_vector() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let ld: [u8; 48] = b64
        .decode("B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t")
        .unwrap()
        .try_into()
        .unwrap();
    let block = IdBlock::new(ld);
    let (id, author) = (key("id_key_test.pem"), key("author_key_test.pem"));
    let auth = IdAuth::sign(&block, &id, Some(&author));
    let opts = qemu_options(&block, &auth);
    assert!(opts.starts_with(
        "id-block=B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7tAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA,id-auth="
    ));
    assert_eq!(
        b64.encode(id.public_key_digest()),
        "hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU"
    );
    assert_eq!(
        b64.encode(author.public_key_digest()),
        "YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX"
    );
    // The id-auth we emit verifies, and decodes back from the QEMU option.
    let auth_b64 = opts.split("id-auth=").nth(1).unwrap();
    let parsed = IdAuth::from_bytes(&b64.decode(auth_b64).unwrap()).unwrap();
    let v = parsed.verify(&block.to_bytes(), true).unwrap();
    assert_eq!(v.id_key_digest, id.public_key_digest());
    assert_eq!(v.author_key_digest, Some(author.public_key_digest()));
}

#[test]
fn cgs_id_block_cli_prints_the_vector() {
    let dir = format!("{}/tests/fixtures/measure", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cgs-id-block"))
        .args([
            "--measurement",
            "B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t",
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
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("id-block=B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7tAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA,id-auth="));
    assert_eq!(
        lines[1],
        "id_key_hash: hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU"
    );
    assert_eq!(
        lines[2],
        "author_key: YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX"
    );
    // Missing keys is a usage error, a bad measurement an input error.
    let status = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cgs-id-block"))
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(status(&["--measurement", "AAAA"]), Some(2));
    assert_eq!(
        status(&[
            "--measurement",
            "AAAA",
            "--idkey",
            "id_key_test.pem",
            "--authorkey",
            "author_key_test.pem"
        ]),
        Some(1)
    );
    assert_eq!(
        status(&[
            "--measurement",
            "B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t",
            "--idkey",
            "kernel.bin",
            "--authorkey",
            "author_key_test.pem"
        ]),
        Some(1)
    );
}

/// Regression: `std::env::args` panicked (exit 101) on an argument that is not UTF-8.
#[test]
fn cgs_id_block_refuses_non_utf8_arguments() {
    use std::os::unix::ffi::OsStrExt;
    for args in [
        vec![
            std::ffi::OsStr::from_bytes(b"--idkey"),
            std::ffi::OsStr::from_bytes(b"\xff.pem"),
        ],
        vec![std::ffi::OsStr::from_bytes(b"--\xff")],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cgs-id-block"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("not valid UTF-8"), "{args:?}: {stderr}");
    }
}
