#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kmm-worker against a real kernel: Debian's kernel booted with QEMU (TCG, no
# network), test modules from tests/vm/modules, an initramfs carrying a
# non-sanitized kmm-worker and the test images. The guest's /init
# (tests/vm/guest/init) judges each scenario from /proc/modules, /sys/module
# and the kernel log, and reports over the serial console; this script turns
# that into TAP. Two guests boot in parallel: the stock kernel, and the same
# with module.sig_enforce=1.
#
# Needs (scripts/packages.txt, "# worker vm" section): qemu-system-x86,
# linux-headers-amd64, busybox-static, kmod, libkmod-dev, cpio, xz-utils.
# Environment: KMM_SOURCE_DIR, KMM_VM_CACHE, KMM_VM_TIMEOUT, KMM_VM_KEEP=1 to
# keep the work directory.
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MAIN_TESTS=(load-unload-dirname dependency-order parameters module-in-use modules-loading-order
	in-tree-removal firmware firmware-hostile wrong-kernel missing-symbol raw-args oci-layout
	standalone sig-verify)
SIG_TESTS=(sig-enforce-unsigned sig-enforce-untrusted-key)
N=$((${#MAIN_TESTS[@]} + ${#SIG_TESTS[@]}))

bail() {
	echo "1..$N"
	local i=1 t
	for t in "${MAIN_TESTS[@]}" "${SIG_TESTS[@]}"; do
		echo "not ok $i - $t # setup failed"
		i=$((i + 1))
	done
	echo "# setup failed: $*"
	exit 1
}

VM_WORK=$(mktemp -d /tmp/kmm-vm.XXXXXX)
[ "${KMM_VM_KEEP:-0}" = 1 ] || trap 'rm -rf "$VM_WORK"' EXIT

t0=$(date +%s.%N)
vm_check_tools || bail "$VM_ERR"
vm_pick_kernel || bail "$VM_ERR"
vm_prepare_kernel || bail "$VM_ERR"
vm_build_worker || bail "$VM_ERR"
vm_build_modules "$VM_WORK/mod" || bail "$VM_ERR"
echo "# kernel $KVER, worker $WORKER_BIN, setup $(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo 0)") s" 

R=$VM_WORK/root
M=$VM_WORK/mod
vm_base_root "$R" || bail "cannot lay out the guest root"
cp "$VM_LIB_DIR/guest/init" "$R/init" && chmod 755 "$R/init" || bail "no guest init"
for k in "$M"/*.ko; do strip --strip-debug "$k"; done

# A module tree (kmod image content) at $R/tmp/$1 holding the named modules.
tree() {
	local d=$R/tmp/$1 k
	shift
	mkdir -p "$d/lib/modules/$KVER/extra"
	for k in "$@"; do cp "$k" "$d/lib/modules/$KVER/extra/"; done
	depmod -b "$d" "$KVER" 2>/dev/null || bail "depmod $d failed"
}

# vmk_wrong: another kernel's release in its vermagic, and no symbol versions,
# so the kernel compares the whole vermagic and refuses it.
FAKE_KVER=$(echo "${KVER%-*}" | tr '0-8' '9')-${KVER##*-}
objcopy --remove-section __versions "$M/vmk_wrong.ko" || bail "objcopy vmk_wrong"
python3 - "$M/vmk_wrong.ko" "$KVER" "$FAKE_KVER" <<'EOF' || bail "cannot patch vmk_wrong's vermagic"
import sys
p, real, fake = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
d = open(p, 'rb').read()
old = b'vermagic=' + real + b' '
if d.count(old) != 1 or len(real) != len(fake):
    sys.exit(1)
open(p, 'wb').write(d.replace(old, b'vermagic=' + fake + b' '))
EOF

tree opt "$M"/vmk_{a,b,fw,o1,o2,wrong}.ko
tree nodeps "$M/vmk_b.ko"
mkdir -p "$R/tmp/firmware" && printf 'VMK firmware blob for kmm tests\n' >"$R/tmp/firmware/vmk-test.bin"

# vmk_a signed with a throw-away key the kernel does not trust.
cat >"$VM_WORK/x509.genkey" <<'EOF'
[ req ]
default_bits = 2048
distinguished_name = req_distinguished_name
prompt = no
x509_extensions = myexts
[ req_distinguished_name ]
CN = kmm vm test key
[ myexts ]
basicConstraints=critical,CA:FALSE
keyUsage=digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
openssl req -new -nodes -utf8 -sha256 -days 3650 -batch -x509 -config "$VM_WORK/x509.genkey" \
	-outform PEM -out "$VM_WORK/key.x509" -keyout "$VM_WORK/key.pem" >/dev/null 2>&1 ||
	bail "openssl could not make a signing key"
cp "$M/vmk_a.ko" "$VM_WORK/vmk_a.ko"
[ -n "$SIGN_FILE" ] && "$SIGN_FILE" sha256 "$VM_WORK/key.pem" "$VM_WORK/key.x509" "$VM_WORK/vmk_a.ko" ||
	bail "sign-file (linux-kbuild) missing or failed"
tree signed "$VM_WORK/vmk_a.ko"
# Another key's certificate: vmk_a does not verify against it.
openssl req -new -nodes -utf8 -sha256 -days 3650 -batch -x509 -config "$VM_WORK/x509.genkey" \
	-subj "/CN=kmm vm other key" -outform PEM -out "$VM_WORK/other.x509" \
	-keyout "$VM_WORK/other.pem" >/dev/null 2>&1 || bail "openssl could not make a second key"

# Hostile firmware trees (kmod images any Module author controls).
mkdir -p "$R/tmp/fwabs" "$R/tmp/fwesc/d" "$R/tmp/fwb/x/sub" "$R/tmp/fwc/deep/er"
echo ok >"$R/tmp/fwabs/ok.bin"
ln -s /outside "$R/tmp/fwabs/x"
ln -s ../../../outside "$R/tmp/fwesc/d/x"
echo evil >"$R/tmp/fwb/x/evil"
echo evil >"$R/tmp/fwb/x/sub/evil"
printf 'VMK firmware blob for kmm tests\n' >"$R/tmp/fwc/vmk-test.bin"
echo deep >"$R/tmp/fwc/deep/er/blob.bin"
ln -s ../../vmk-test.bin "$R/tmp/fwc/deep/er/alias.bin"

# The guest's own tree with an in-tree-like module.
mkdir -p "$R/lib/modules/$KVER/kernel/drivers/misc"
cp "$M/vmk_intree.ko" "$R/lib/modules/$KVER/kernel/drivers/misc/"
depmod -b "$R" "$KVER" 2>/dev/null || bail "depmod of the guest tree failed"

# Worker configs (upstream's ModuleConfig).
mkdir -p "$R/etc/kmm"
echo "$FAKE_KVER" >"$R/etc/kmm/fake-kernel"
cfg() {
	local f=$R/etc/kmm/$1
	shift
	{
		echo "kernelVersion: $KVER"
		echo "containerImage: registry.invalid/kmm/vmk:$KVER"
		echo "imagePullPolicy: IfNotPresent"
		printf '%s\n' "$@"
	} >"$f"
}
cfg a.yaml "modprobe:" "  moduleName: vmk_a" "  dirName: /opt"
cfg b.yaml "modprobe:" "  moduleName: vmk_b" "  dirName: /opt" \
	"  parameters: [answer=42, greeting=hi there]"
cfg order.yaml "modprobe:" "  moduleName: vmk_o1" "  dirName: /opt" \
	"  modulesLoadingOrder: [vmk_o1, vmk_o2]"
cfg intree.yaml "inTreeModulesToRemove: [vmk_intree, vmk_absent]" "modprobe:" \
	"  moduleName: vmk_a" "  dirName: /opt"
cfg fw.yaml "modprobe:" "  moduleName: vmk_fw" "  dirName: /opt" "  firmwarePath: /firmware"
cfg wrong.yaml "modprobe:" "  moduleName: vmk_wrong" "  dirName: /opt"
cfg nodeps.yaml "modprobe:" "  moduleName: vmk_b" "  dirName: /nodeps"
cfg raw.yaml "modprobe:" "  rawArgs:" "    load: [-v, -d, /tmp/opt, vmk_o2]" \
	"    unload: [-r, -v, -d, /tmp/opt, vmk_o2]"
cfg signed.yaml "modprobe:" "  moduleName: vmk_a" "  dirName: /signed"
cp "$VM_WORK/key.x509" "$R/etc/kmm/sign.crt" && cp "$VM_WORK/other.x509" "$R/etc/kmm/other.crt" ||
	bail "cannot copy the certificates"
for fw in fwabs fwesc fwb fwc; do
	cfg $fw.yaml "modprobe:" "  moduleName: vmk_fw" "  dirName: /opt" "  firmwarePath: /$fw"
done
cfg fwdotdot.yaml "modprobe:" "  moduleName: vmk_fw" "  dirName: /opt" \
	"  firmwarePath: /fwc/../../outside"
cfg oci.yaml "modprobe:" "  moduleName: vmk_b" "  dirName: /ocimod" "  parameters: [answer=7]" \
	"  firmwarePath: /ocifw"

# A FROM-scratch kmod image as an OCI image layout: only the worker's pull
# puts these files on the guest (no /tmp/ocimod there).
mkdir -p "$VM_WORK/ociroot/ocimod/lib/modules/$KVER/extra" "$VM_WORK/ociroot/ocifw" "$VM_WORK/ociroot/etc"
cp "$M/vmk_a.ko" "$M/vmk_b.ko" "$VM_WORK/ociroot/ocimod/lib/modules/$KVER/extra/"
depmod -b "$VM_WORK/ociroot/ocimod" "$KVER" 2>/dev/null || bail "depmod of the OCI image tree failed"
printf 'VMK firmware blob from the OCI image\n' >"$VM_WORK/ociroot/ocifw/vmk-test.bin"
echo "not extracted" >"$VM_WORK/ociroot/etc/unrelated"
python3 "$VM_LIB_DIR/mkoci.py" "$VM_WORK/ociroot" "$R/oci" vmk || bail "mkoci.py failed"

# Standalone mode: a Module whose second kernel mapping matches this kernel.
cat >"$R/etc/kmm/module.yaml" <<MODULE
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: vmk, namespace: default}
spec:
  selector: {kubernetes.io/hostname: vm}
  moduleLoader:
    container:
      modprobe:
        moduleName: vmk_b
        dirName: /ocimod
        parameters: [answer=9]
        firmwarePath: /ocifw
      kernelMappings:
      - literal: 0.0.0-not-this-one
        containerImage: oci:/oci:nosuch
      - regexp: '^${KVER%%.*}\.'
        containerImage: oci:/oci:vmk
MODULE

vm_pack "$R" "$VM_WORK/initrd.gz" || bail "cpio failed"
echo "# initramfs $(du -k "$VM_WORK/initrd.gz" | cut -f1) KiB"

# Two guests at once (the machine has two cores).
tb=$(date +%s)
vm_boot "$VM_WORK/initrd.gz" "kmmtest=main" "$VM_WORK/main.log" &
p1=$!
vm_boot "$VM_WORK/initrd.gz" "kmmtest=sig module.sig_enforce=1" "$VM_WORK/sig.log" &
p2=$!
wait $p1
rc1=$?
wait $p2
rc2=$?
echo "# both guests done in $(($(date +%s) - tb)) s (qemu exit $rc1, $rc2)"

echo "1..$N"
i=1
pass=0
fail=0
skip=0
report() { # LOG RC NAMES...
	local log=$1 rc=$2 t line res why
	shift 2
	for t in "$@"; do
		line=$(tr -d '\r' <"$log" | grep -a -m1 "^KMMTEST [a-z-]* $t\( \|$\)")
		res=$(echo "$line" | cut -d' ' -f2)
		why=$(echo "$line" | sed -n 's/^[^:]*: *//p')
		case $res in
		ok) echo "ok $i - $t"; pass=$((pass + 1)) ;;
		skip) echo "ok $i - $t # SKIP $why"; skip=$((skip + 1)) ;;
		not-ok)
			echo "not ok $i - $t"
			echo "#   $why"
			fail=$((fail + 1))
			;;
		*)
			echo "not ok $i - $t"
			echo "#   no result from the guest (qemu exit $rc; timeout is ${KMM_VM_TIMEOUT}s)"
			fail=$((fail + 1))
			;;
		esac
		if [ "$res" != ok ] && [ "$res" != skip ]; then
			tr -d '\r' <"$log" | sed -n "/^KMMBEGIN $t\$/,/^KMMBEGIN /p" |
				grep -a '^KMMDIAG\|^KMMLOG' | head -n 40 | sed 's/^/#   /'
			[ -n "$res" ] || tr -d '\r' <"$log" | tail -n 20 | sed 's/^/#   /'
		fi
		i=$((i + 1))
	done
}
report "$VM_WORK/main.log" "$rc1" "${MAIN_TESTS[@]}"
report "$VM_WORK/sig.log" "$rc2" "${SIG_TESTS[@]}"
echo "# $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
