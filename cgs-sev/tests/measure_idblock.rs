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
