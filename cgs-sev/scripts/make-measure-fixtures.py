#!/usr/bin/env python3
"""Regenerates cgs-sev/tests/fixtures/measure/ (small inputs for the measurement golden tests).

usage: make-measure-fixtures.py OVMF_DIR SEV_SNP_MEASURE

- ovmf_debian_code_suffix.bin / ovmf_debian_code4m_suffix.bin: the last 4 KiB of Debian's
  OVMF_CODE.fd / OVMF_CODE_4M.fd (footer table, SEV-ES reset block, SEV metadata).
- ovmf_synthetic_kernel_hashes.bin: a 4 KiB image written here with the AmdSevX64 layout
  (hashes table at 0x810C00, SNP_KERNEL_HASHES section, SVSM_CAA), which Debian does not ship.
- svsm_synthetic.bin: an 8 KiB image with a Coconut-SVSM style table (SVSM_INFO, SEV metadata).
- kernel.bin, initrd.bin: deterministic bytes.
- golden.txt: `<expected stdout>\t<exit status>\t<arg>\t<arg>...` lines, computed by
  sev-snp-measure 0.0.13 over those fixtures (paths relative to the fixture directory).
"""
import hashlib
import os
import struct
import subprocess
import sys
import uuid

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "measure")


def guid(s):
    return uuid.UUID(s).bytes_le


def synthetic():
    img = bytearray(4096)
    sections = [(0x800000, 0x9000, 1), (0x80A000, 0x3000, 1), (0x80D000, 0x1000, 2),
                (0x80E000, 0x1000, 3), (0x80F000, 0x1000, 4), (0x810000, 0x1000, 0x10),
                (0x811000, 0xF000, 1)]
    meta_off = 0x200
    meta = b"ASEV" + struct.pack("<III", 16 + 12 * len(sections), 1, len(sections))
    for s in sections:
        meta += struct.pack("<III", *s)
    img[meta_off:meta_off + len(meta)] = meta
    entries = [
        ("4c2eb361-7d9b-4cc3-8081-127c90d3d294", struct.pack("<II", 0x810000, 0xC00)),
        ("7255371f-3a3b-4b04-927b-1da6efa8d454", struct.pack("<II", 0x810C00, 0x400)),
        ("00f771de-1a7e-4fcb-890e-68c77e2fb44e", struct.pack("<I", 0x80B004)),
        ("dc886566-984a-4798-a75e-5585a7bf67cc", struct.pack("<I", 4096 - meta_off)),
    ]
    table = b""
    for g, data in entries:
        table += data + struct.pack("<H", len(data) + 18) + guid(g)
    footer = 4096 - 32 - 18
    img[footer - len(table):footer] = table
    img[footer:footer + 18] = struct.pack("<H", len(table) + 18) + guid("96b582de-1fb2-45f7-baea-a366c55a082d")
    # Recognizable code bytes so NORMAL page hashes are not of zeros.
    img[0:64] = hashlib.sha512(b"cgs synthetic ovmf").digest()
    return bytes(img)


def synthetic_svsm():
    """An 8 KiB image with a Coconut-SVSM style footer table: SVSM_INFO and SEV metadata."""
    img = bytearray(8192)
    sections = [(0x806000, 0x2000, 1), (0x808000, 0x1000, 2), (0x809000, 0x1000, 3),
                (0x80A000, 0x1000, 4), (0x80B000, 0x1000, 0x10)]
    meta_off = 0x1100
    meta = b"ASEV" + struct.pack("<III", 16 + 12 * len(sections), 1, len(sections))
    for s in sections:
        meta += struct.pack("<III", *s)
    img[meta_off:meta_off + len(meta)] = meta
    entries = [
        ("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd", struct.pack("<I", 0x120)),
        ("dc886566-984a-4798-a75e-5585a7bf67cc", struct.pack("<I", 8192 - meta_off)),
    ]
    table = b""
    for g, data in entries:
        table += data + struct.pack("<H", len(data) + 18) + guid(g)
    footer = 8192 - 32 - 18
    img[footer - len(table):footer] = table
    img[footer:footer + 18] = struct.pack("<H", len(table) + 18) + guid("96b582de-1fb2-45f7-baea-a366c55a082d")
    img[0:64] = hashlib.sha512(b"cgs synthetic svsm").digest()
    return bytes(img)


def main():
    ovmf_dir, ssm = sys.argv[1], sys.argv[2]
    os.makedirs(here, exist_ok=True)
    for name, src in [("ovmf_debian_code_suffix.bin", "OVMF_CODE.fd"),
                      ("ovmf_debian_code4m_suffix.bin", "OVMF_CODE_4M.fd")]:
        with open(os.path.join(ovmf_dir, src), "rb") as f:
            data = f.read()
        with open(os.path.join(here, name), "wb") as f:
            f.write(data[-4096:])
    with open(os.path.join(here, "ovmf_synthetic_kernel_hashes.bin"), "wb") as f:
        f.write(synthetic())
    with open(os.path.join(here, "svsm_synthetic.bin"), "wb") as f:
        f.write(synthetic_svsm())
    with open(os.path.join(here, "kernel.bin"), "wb") as f:
        f.write(b"".join(hashlib.sha256(bytes([i])).digest() for i in range(100)))
    with open(os.path.join(here, "initrd.bin"), "wb") as f:
        f.write(b"".join(hashlib.sha256(bytes([i, 1])).digest() for i in range(40)))

    cases = []
    fixtures = ["ovmf_debian_code_suffix.bin", "ovmf_debian_code4m_suffix.bin",
                "ovmf_synthetic_kernel_hashes.bin"]
    kernels = [[], ["--kernel", "kernel.bin"], ["--kernel", "kernel.bin", "--initrd", "initrd.bin",
                                                "--append", "console=ttyS0 loglevel=7"]]
    for fx in fixtures:
        cases.append(["--mode", "snp:ovmf-hash", "--ovmf", fx])
        for k in kernels:
            cases.append(["--mode", "sev", "--ovmf", fx] + k)
            for vcpus in ["1", "4"]:
                cases.append(["--mode", "seves", "--vcpus", vcpus, "--vcpu-type", "EPYC-Milan", "--ovmf", fx] + k)
                cases.append(["--mode", "snp", "--vcpus", vcpus, "--vcpu-type", "EPYC-v4", "--ovmf", fx] + k)
                cases.append(["--mode", "snp", "--vcpus", vcpus, "--vcpu-sig", "0xA10F10", "--guest-features", "0x21", "--ovmf", fx] + k)
                cases.append(["--mode", "snp", "--vcpus", vcpus, "--vmm-type", "ec2", "--ovmf", fx] + k)
                cases.append(["--mode", "snp", "--vcpus", vcpus, "--vmm-type", "gce", "--output-format", "base64", "--ovmf", fx] + k)
        cases.append(["--mode", "snp", "--vcpus", "2", "--vcpu-family", "25", "--vcpu-model", "17", "--vcpu-stepping", "0", "-v", "--ovmf", fx])
    for vcpus in ["1", "3"]:
        cases.append(["--mode", "snp:svsm", "--vcpus", vcpus, "--vcpu-type", "EPYC-v4", "--svsm",
                      "svsm_synthetic.bin", "--vars-size", "540672", "--ovmf", "ovmf_debian_code_suffix.bin"])
    cases.append(["--mode", "snp:svsm", "--vcpus", "2", "--vcpu-sig", "0xB00F00", "--svsm", "svsm_synthetic.bin",
                  "--vars-file", "ovmf_debian_code_suffix.bin", "--output-format", "base64", "--ovmf", "ovmf_debian_code4m_suffix.bin"])
    cases.append(["--mode", "snp:svsm", "--vcpus", "2", "--vcpu-type", "EPYC", "--svsm", "svsm_synthetic.bin",
                  "--ovmf", "ovmf_debian_code_suffix.bin"])
    cases.append(["--mode", "snp:svsm", "--vcpus", "2", "--vmm-type", "ec2", "--svsm", "svsm_synthetic.bin",
                  "--vars-size", "4096", "--ovmf", "ovmf_debian_code_suffix.bin"])
    with open(os.path.join(here, "golden.txt"), "w") as out:
        for args in cases:
            p = subprocess.run([ssm] + args, cwd=here, capture_output=True, text=True)
            out.write("%s\t%d\t%s\n" % (p.stdout.strip(), p.returncode, "\t".join(args)))
    print("wrote %d golden cases to %s" % (len(cases), here))


if __name__ == "__main__":
    main()
