//! Intra-host move/mirror of an encryption context on real KVM: this host has no SEV, so KVM
//! refuses both with EINVAL, which must come back as a typed Unsupported error naming the cap.

use cgs_core::testing::kvm_or_skip;
use cgs_core::Error;
use cgs_sev::migration::intrahost::{self, ContextOp};

#[test]
fn host_refusal_is_typed() {
    let Some(kvm) = kvm_or_skip("host_refusal_is_typed") else {
        return;
    };
    let src = kvm.create_vm().unwrap();
    let dst = kvm.create_vm().unwrap();
    for (op, res) in [
        (
            ContextOp::Move,
            intrahost::move_enc_context(&kvm, &dst, &src),
        ),
        (
            ContextOp::Mirror,
            intrahost::mirror_enc_context(&kvm, &dst, &src),
        ),
    ] {
        match res {
            Err(Error::Unsupported { what, why }) => {
                assert_eq!(what, op.name());
                // Either the capability is missing, or KVM refused a source without SEV.
                assert!(
                    why.contains("EINVAL") || why.contains("does not offer"),
                    "{why}"
                );
                if intrahost::supported(&kvm, op) {
                    assert!(why.contains("EINVAL"), "{why}");
                }
            }
            other => panic!("{}: expected Unsupported, got {other:?}", op.name()),
        }
    }
    // Both VMs are still usable after the refusal.
    src.create_vcpu(0).unwrap();
    dst.create_vcpu(0).unwrap();
}
