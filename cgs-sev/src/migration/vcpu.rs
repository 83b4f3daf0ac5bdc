//! vCPU register state carried by the migration stream.
//!
//! Legacy SEV does not protect vCPU registers (SEV-ES does, and has no KVM migration path), so
//! the source reads them with `KVM_GET_REGS`/`KVM_GET_SREGS` and the destination writes them back.
//! Before reading, [`VcpuState::capture`] completes an exit the VMM has not finished yet (a port
//! write the vCPU stopped on) with one `KVM_RUN` under `immediate_exit`, as the KVM API requires
//! before saving state.

use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;

use cgs_core::{Error, Result};

use super::stream::StreamError;
use super::wire::{Reader, Writer};

/// Encoded length of a [`VcpuState`] (without the vCPU index).
pub const VCPU_STATE_LEN: usize = 18 * 8 + 8 * SEGMENT_LEN + 2 * DTABLE_LEN + 7 * 8 + 4 * 8;
const SEGMENT_LEN: usize = 8 + 4 + 2 + 9;
const DTABLE_LEN: usize = 8 + 2;

/// One vCPU's architectural register state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VcpuState {
    /// General-purpose registers, RIP and RFLAGS.
    pub regs: kvm_regs,
    /// Segment, descriptor-table and control registers, EFER, APIC base, pending interrupts.
    pub sregs: kvm_sregs,
}

impl VcpuState {
    /// Read the state of a stopped vCPU. A pending exit (the VMM returned from `KVM_RUN` and will
    /// not re-enter) is completed first, so RIP points after the instruction that exited.
    pub fn capture(vcpu: &mut VcpuFd) -> Result<Self> {
        vcpu.set_kvm_immediate_exit(1);
        let ran = vcpu.run().map(|_| ());
        vcpu.set_kvm_immediate_exit(0);
        match ran {
            Err(e) if e.errno() == libc::EINTR => {}
            Err(e) => return Err(Error::kvm("KVM_RUN (complete pending exit)", e)),
            Ok(()) => {
                return Err(Error::invalid_input(
                    "vCPU",
                    "KVM_RUN with immediate_exit entered the guest",
                ))
            }
        }
        let regs = vcpu.get_regs().map_err(|e| Error::kvm("KVM_GET_REGS", e))?;
        let sregs = vcpu
            .get_sregs()
            .map_err(|e| Error::kvm("KVM_GET_SREGS", e))?;
        Ok(VcpuState { regs, sregs })
    }

    /// Write this state into a (not yet running) vCPU.
    pub fn restore(&self, vcpu: &VcpuFd) -> Result<()> {
        vcpu.set_sregs(&self.sregs)
            .map_err(|e| Error::kvm("KVM_SET_SREGS", e))?;
        vcpu.set_regs(&self.regs)
            .map_err(|e| Error::kvm("KVM_SET_REGS", e))
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        let r = &self.regs;
        for v in [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags,
        ] {
            w.u64(v);
        }
        let s = &self.sregs;
        for seg in [&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt] {
            w.u64(seg.base).u32(seg.limit).u16(seg.selector).bytes(&[
                seg.type_,
                seg.present,
                seg.dpl,
                seg.db,
                seg.s,
                seg.l,
                seg.g,
                seg.avl,
                seg.unusable,
            ]);
        }
        for dt in [&s.gdt, &s.idt] {
            w.u64(dt.base).u16(dt.limit);
        }
        for v in [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base] {
            w.u64(v);
        }
        for v in s.interrupt_bitmap {
            w.u64(v);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, StreamError> {
        let mut g = [0u64; 18];
        for v in &mut g {
            *v = r.u64()?;
        }
        let regs = kvm_regs {
            rax: g[0],
            rbx: g[1],
            rcx: g[2],
            rdx: g[3],
            rsi: g[4],
            rdi: g[5],
            rsp: g[6],
            rbp: g[7],
            r8: g[8],
            r9: g[9],
            r10: g[10],
            r11: g[11],
            r12: g[12],
            r13: g[13],
            r14: g[14],
            r15: g[15],
            rip: g[16],
            rflags: g[17],
        };
        let mut segs = [kvm_segment::default(); 8];
        for seg in &mut segs {
            seg.base = r.u64()?;
            seg.limit = r.u32()?;
            seg.selector = r.u16()?;
            let [type_, present, dpl, db, s, l, g, avl, unusable] = r.array::<9>()?;
            *seg = kvm_segment {
                type_,
                present,
                dpl,
                db,
                s,
                l,
                g,
                avl,
                unusable,
                ..*seg
            };
        }
        let mut dts = [kvm_dtable::default(); 2];
        for dt in &mut dts {
            dt.base = r.u64()?;
            dt.limit = r.u16()?;
        }
        let mut c = [0u64; 7];
        for v in &mut c {
            *v = r.u64()?;
        }
        let mut interrupt_bitmap = [0u64; 4];
        for v in &mut interrupt_bitmap {
            *v = r.u64()?;
        }
        let [cs, ds, es, fs, gs, ss, tr, ldt] = segs;
        let [gdt, idt] = dts;
        let sregs = kvm_sregs {
            cs,
            ds,
            es,
            fs,
            gs,
            ss,
            tr,
            ldt,
            gdt,
            idt,
            cr0: c[0],
            cr2: c[1],
            cr3: c[2],
            cr4: c[3],
            cr8: c[4],
            efer: c[5],
            apic_base: c[6],
            interrupt_bitmap,
        };
        Ok(VcpuState { regs, sregs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_every_field() {
        let mut st = VcpuState::default();
        st.regs.rax = 1;
        st.regs.rip = 0x1234;
        st.regs.rflags = 2;
        st.regs.r15 = u64::MAX;
        st.sregs.cs.base = 0xffff_0000;
        st.sregs.cs.selector = 0xf000;
        st.sregs.cs.unusable = 1;
        st.sregs.ldt.avl = 1;
        st.sregs.idt.limit = 0x3ff;
        st.sregs.efer = 0x500;
        st.sregs.apic_base = 0xfee0_0900;
        st.sregs.interrupt_bitmap[3] = 1 << 63;
        let mut w = Writer::default();
        st.encode(&mut w);
        assert_eq!(w.buf.len(), VCPU_STATE_LEN);
        let mut r = Reader::new(&w.buf, "vcpu");
        assert_eq!(VcpuState::decode(&mut r).unwrap(), st);
        r.finish().unwrap();
        let mut short = Reader::new(&w.buf[..VCPU_STATE_LEN - 1], "vcpu");
        assert!(VcpuState::decode(&mut short).is_err());
    }
}
