#!/usr/bin/env bash
# cgs-measure against sev-snp-measure 0.0.13 on Debian's OVMF images (and the synthetic
# kernel-hashes fixture): every mode, several vCPU counts and types, each VMM type, both
# guest-feature defaults, with and without kernel/initrd/append, hex/base64/-v output, and the
# --dump-vmsa pages, and snp:svsm. Fails on any difference in stdout, exit status or dumped VMSA bytes.
#
# Environment: CGS_MEASURE_BIN (use this binary instead of building one), CGS_ORACLE_CACHE
# (passed to oracles.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
oracles=$repo/../shared/tools/oracles.sh
[ -x "$oracles" ] || { echo "compare: $oracles not found" >&2; exit 1; }
ovmf_dir=$("$oracles" ovmf)
ssm=$("$oracles" sev-snp-measure)

if [ -n "${CGS_MEASURE_BIN:-}" ]; then
    cgs=$CGS_MEASURE_BIN
else
    (cd "$repo" && cargo build -q --release -p cgs-sev --bin cgs-measure)
    target=$(cd "$repo" && cargo metadata -q --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    cgs=$target/release/cgs-measure
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fixtures=$repo/cgs-sev/tests/fixtures/measure
kernel=$fixtures/kernel.bin
initrd=$fixtures/initrd.bin
pass=0
fail=0

# compare ARGS...: run both tools in fresh directories, compare stdout, status and vmsa*.bin.
compare() {
    rm -rf "$work/a" "$work/b"; mkdir "$work/a" "$work/b"
    local sa=0 sb=0
    (cd "$work/a" && "$ssm" "$@" >out 2>err) || sa=$?
    (cd "$work/b" && "$cgs" "$@" >out 2>err) || sb=$?
    local why=""
    [ "$sa" = "$sb" ] || why="exit status $sa vs $sb"
    cmp -s "$work/a/out" "$work/b/out" || why="$why stdout '$(head -c 200 "$work/a/out")' vs '$(head -c 200 "$work/b/out")'"
    for f in "$work"/a/vmsa*.bin "$work"/b/vmsa*.bin; do
        [ -e "$f" ] || continue
        n=$(basename "$f")
        cmp -s "$work/a/$n" "$work/b/$n" 2>/dev/null || why="$why $n differs"
    done
    if [ "$sa" != 0 ] && [ "$sb" != 0 ] && [ "$sa" = "$sb" ]; then
        # Both failed: the message texts may differ, cgs-measure must say "Error: ...".
        grep -q '^Error: ' "$work/b/err" || why="$why cgs-measure stderr lacks 'Error: '"
    fi
    if [ -z "$why" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "DIFF: $* :$why" >&2
    fi
}

images=("$ovmf_dir/OVMF_CODE.fd" "$ovmf_dir/OVMF_CODE_4M.fd" "$fixtures/ovmf_synthetic_kernel_hashes.bin")
kernels=("" "--kernel $kernel" "--kernel $kernel --initrd $initrd --append console=ttyS0")
for img in "${images[@]}"; do
    compare --mode snp:ovmf-hash --ovmf "$img"
    seed=$("$ssm" --mode snp:ovmf-hash --ovmf "$img")
    for k in "${kernels[@]}"; do
        # shellcheck disable=SC2086
        compare --mode sev --ovmf "$img" $k
        # shellcheck disable=SC2086
        compare --mode sev --output-format base64 -v --ovmf "$img" $k
        # Every vCPU identity without a kernel; two with one.
        if [ -z "$k" ]; then
            cpus=("--vcpu-type EPYC-v4" "--vcpu-type EPYC-Rome-v2" "--vcpu-type EPYC-Milan"
                  "--vcpu-type EPYC-Genoa-v1" "--vcpu-type EPYC-Turin" "--vcpu-sig 0x00A00F11"
                  "--vcpu-family 26 --vcpu-model 17 --vcpu-stepping 2")
            cpu_vcpus=4; vmm_vcpus="1 64"
        else
            cpus=("--vcpu-type EPYC-v4" "--vcpu-family 25 --vcpu-model 1 --vcpu-stepping 1")
            cpu_vcpus=1; vmm_vcpus="2"
        fi
        for cpu in "${cpus[@]}"; do
            # shellcheck disable=SC2086
            compare --mode snp --vcpus $cpu_vcpus $cpu --ovmf "$img" $k
            # shellcheck disable=SC2086
            compare --mode seves --vcpus $cpu_vcpus $cpu --ovmf "$img" $k
        done
        for vcpus in $vmm_vcpus; do
            for vmm in QEMU ec2 gce; do
                cpu=""; [ "$vmm" = QEMU ] && cpu="--vcpu-type EPYC-Milan-v2"
                for feat in "" "--guest-features 0x21"; do
                    # shellcheck disable=SC2086
                    compare --mode snp --vcpus $vcpus --vmm-type $vmm $cpu $feat --ovmf "$img" $k
                done
                # shellcheck disable=SC2086
                compare --mode seves --vcpus $vcpus --vmm-type $vmm $cpu --ovmf "$img" $k
                # shellcheck disable=SC2086
                compare --mode snp --vcpus $vcpus --vmm-type $vmm $cpu --snp-ovmf-hash "$seed" --ovmf "$img" $k
            done
        done
        # shellcheck disable=SC2086
        compare --mode snp --vcpus 3 --vcpu-type EPYC --dump-vmsa --output-format base64 --ovmf "$img" $k
        # shellcheck disable=SC2086
        compare --mode seves --vcpus 3 --vmm-type ec2 --dump-vmsa -v --ovmf "$img" $k
        # shellcheck disable=SC2086
        compare --mode snp --vcpus 2 --vmm-type gce --dump-vmsa --ovmf "$img" $k
    done
done
# snp:svsm (Coconut-SVSM below OVMF and its variable store), on the synthetic SVSM image.
svsm=$fixtures/svsm_synthetic.bin
for img in "$ovmf_dir/OVMF_CODE.fd" "$ovmf_dir/OVMF_CODE_4M.fd"; do
    for vcpus in 1 4 64; do
        compare --mode snp:svsm --vcpus $vcpus --vcpu-type EPYC-Milan --svsm "$svsm" --vars-size 540672 --ovmf "$img"
    done
    compare --mode snp:svsm --vcpus 3 --vcpu-sig 0xA10F10 --svsm "$svsm" --vars-file "$ovmf_dir/OVMF_VARS_4M.fd" --dump-vmsa --ovmf "$img"
    compare --mode snp:svsm --vcpus 2 --vcpu-type EPYC --svsm "$svsm" --vars-size 131072 --output-format base64 -v --ovmf "$img"
done
compare --mode snp:svsm --vcpus 2 --vcpu-type EPYC --svsm "$svsm" --ovmf "$img"
compare --mode snp:svsm --vcpus 2 --vmm-type gce --svsm "$svsm" --vars-size 4096 --ovmf "$img"
compare --mode snp:svsm --vcpus 2 --vcpu-type EPYC --svsm "$svsm" --vars-size 4096 --vars-file "$kernel" --ovmf "$img"

# Usage errors (argparse exits 2) and input errors (exit 1).
img=${images[0]}
compare --mode snp --ovmf "$img"
compare --mode snp --vcpus 1 --ovmf "$img"
compare --mode seves --vcpus 1 --ovmf "$img"
compare --mode bogus --ovmf "$img"
compare --mode sev --initrd "$initrd" --ovmf "$img"
compare --mode sev --append foo --ovmf "$img"
compare --mode sev --dump-vmsa --ovmf "$img"
compare --mode snp --vcpus 1 --vmm-type qemu --vcpu-type EPYC --ovmf "$img"
compare --mode snp --vcpus 1 --vcpu-type EPYC-v9 --ovmf "$img"
compare --mode snp --vcpus one --vcpu-type EPYC --ovmf "$img"
compare --mode snp --vcpus 1 --vcpu-type EPYC --output-format raw --ovmf "$img"
compare --mode sev --snp-ovmf-hash 00 --ovmf "$img"
compare --mode snp --vcpus 1 --vcpu-type EPYC --ovmf "$kernel"
compare --mode snp --vcpus 1 --vcpu-type EPYC --ovmf "$work/missing.fd"
compare --mode sev

echo "cgs-measure vs sev-snp-measure 0.0.13: $pass cases identical, $fail differ"
[ "$fail" = 0 ]
