# SPDX-License-Identifier: Apache-2.0
# Shared by tests/vm/*.t and bench/worker: a Debian kernel booted with QEMU/TCG
# (see /work/shared/reference/vm-kmod-e2e.md for the measured recipe).
#
# Variables read: KMM_SOURCE_DIR (default: the repo holding this file),
# KMM_VM_CACHE (default ~/.cache/kmm/vm), KMM_VM_TIMEOUT (seconds per boot, 150).
# Every vm_* function returns non-zero with a reason in $VM_ERR on failure.

VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KMM_SOURCE_DIR=${KMM_SOURCE_DIR:-$(cd "$VM_LIB_DIR/../.." && pwd)}
KMM_VM_CACHE=${KMM_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kmm/vm}
KMM_VM_TIMEOUT=${KMM_VM_TIMEOUT:-150}
VM_ERR=

vm_fail() {
	VM_ERR=$*
	return 1
}

# Checks the host tools the suite needs; names the missing ones.
vm_check_tools() {
	local missing=() t
	for t in qemu-system-x86_64 cpio gzip xz make gcc depmod objcopy python3 openssl meson ninja timeout; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
	[ -x /bin/kmod ] || missing+=(kmod)
	[ ${#missing[@]} -eq 0 ] || vm_fail "missing tools: ${missing[*]} (scripts/install-deps installs them)"
}

# Sets KVER from the installed Debian headers (never hard-coded: the ABI number moves).
vm_pick_kernel() {
	local h
	h=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
	[ -n "$h" ] || {
		vm_fail "no /usr/src/linux-headers-*-amd64: install linux-headers-amd64"
		return 1
	}
	KVER=${h##*/linux-headers-}
	KBUILD_DIR=$h
	SIGN_FILE=$(ls /usr/lib/linux-kbuild-*/scripts/sign-file 2>/dev/null | sort -V | tail -n 1)
}

# Sets VMLINUX: the uncompressed kernel for a fast PVH boot, cached per KVER.
# The image package is downloaded (not installed) with apt-get download.
vm_prepare_kernel() {
	local dir=$KMM_VM_CACHE/$KVER deb
	VMLINUX=$dir/vmlinux
	[ -s "$VMLINUX" ] && return 0
	mkdir -p "$dir" || return 1
	if [ ! -s "$dir/vmlinuz" ]; then
		if [ -s "/boot/vmlinuz-$KVER" ]; then
			cp "/boot/vmlinuz-$KVER" "$dir/vmlinuz"
		else
			(cd "$dir" && apt-get download "linux-image-$KVER" >/dev/null 2>&1) ||
				{ vm_fail "apt-get download linux-image-$KVER failed"; return 1; }
			deb=$(ls "$dir"/linux-image-"$KVER"_*.deb | head -n 1)
			dpkg-deb --fsys-tarfile "$deb" | tar -x -O "./boot/vmlinuz-$KVER" >"$dir/vmlinuz.tmp" &&
				mv "$dir/vmlinuz.tmp" "$dir/vmlinuz" && rm -f "$deb" ||
				{ vm_fail "cannot extract vmlinuz from $deb"; return 1; }
		fi
	fi
	# The bzImage carries an XZ payload; cut it at the magic and decompress
	# (xz complains about the trailing data but the output is whole).
	python3 - "$dir/vmlinuz" "$dir/vmlinux.xz" <<'EOF' || { vm_fail "no XZ payload in vmlinuz"; return 1; }
import sys
d = open(sys.argv[1], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')
if i < 0:
    sys.exit(1)
open(sys.argv[2], 'wb').write(d[i:])
EOF
	xz -dc "$dir/vmlinux.xz" >"$dir/vmlinux.tmp" 2>/dev/null
	rm -f "$dir/vmlinux.xz"
	[ -s "$dir/vmlinux.tmp" ] && head -c 4 "$dir/vmlinux.tmp" | grep -q ELF ||
		{ vm_fail "decompressing the kernel failed"; return 1; }
	mv "$dir/vmlinux.tmp" "$VMLINUX"
}

# Builds kmm-worker without sanitizers in $KMM_SOURCE_DIR/build/vm; sets WORKER_BIN.
vm_build_worker() {
	local b=$KMM_SOURCE_DIR/build/vm log=${VM_WORK:-/tmp}/build-vm.log
	if [ ! -f "$b/build.ninja" ]; then
		meson setup "$b" "$KMM_SOURCE_DIR" --buildtype=debugoptimized -Db_sanitize=none >"$log" 2>&1 ||
			{ vm_fail "meson setup build/vm failed: $(tail -n 3 "$log" | tr '\n' ' ')"; return 1; }
	fi
	ninja -C "$b" src/worker/kmm-worker $(grep -q 'kmm-worker-pull:' "$b/build.ninja" && echo src/worker/kmm-worker-pull) >"$log" 2>&1 ||
		{ vm_fail "building kmm-worker failed: $(grep -m3 error "$log" | tr '\n' ' ')"; return 1; }
	WORKER_BIN=$b/src/worker/kmm-worker
}

# Builds tests/vm/modules against the headers into $1.
vm_build_modules() {
	local out=$1
	mkdir -p "$out" && cp "$VM_LIB_DIR"/modules/*.c "$VM_LIB_DIR"/modules/Kbuild "$out"/ || return 1
	make -s -C "$KBUILD_DIR" M="$out" modules >"$out/build.log" 2>&1 ||
		{ vm_fail "kbuild failed: $(grep -m3 -i error "$out/build.log" | tr '\n' ' ')"; return 1; }
}

# Copies a dynamically linked binary and the libraries ldd lists into root $1.
vm_copy_with_libs() {
	local root=$1 bin=$2 dest=$3 l
	mkdir -p "$root$(dirname "$dest")" && cp -L "$bin" "$root$dest" || return 1
	for l in $(ldd "$bin" | grep -oE '/[^ ]+'); do
		[ -e "$root$l" ] && continue
		mkdir -p "$root$(dirname "$l")" && cp -L "$l" "$root$l" || return 1
	done
}

# Lays out the base of a guest root in $1: busybox, kmod's tools, kmm-worker.
vm_base_root() {
	local root=$1 a
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/firmware} || return 1
	cp /bin/busybox "$root/bin/busybox" || return 1
	# Busybox's own modprobe/insmod/modinfo would shadow kmod's: no links for them.
	for a in sh ash cat echo grep sed cut tr head tail wc sort mount umount mkdir rm ls \
		dmesg poweroff sleep test [ printf cp mv ln find tee true false expr kill ps env; do
		ln -sf busybox "$root/bin/$a"
	done
	vm_copy_with_libs "$root" /bin/kmod /bin/kmod || return 1
	for a in modprobe insmod rmmod modinfo depmod lsmod; do
		ln -sf ../../bin/kmod "$root/usr/sbin/$a"
	done
	vm_copy_with_libs "$root" "$WORKER_BIN" /bin/kmm-worker || return 1
	strip "$root/bin/kmm-worker" # as shipped: no debug info to map
	if [ -x "${WORKER_BIN%/*}/kmm-worker-pull" ]; then
		vm_copy_with_libs "$root" "${WORKER_BIN%/*}/kmm-worker-pull" /bin/kmm-worker-pull || return 1
	fi
}

# Packs root $1 into the gzip'ed newc cpio $2.
vm_pack() {
	(cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) >"$2"
}

# Boots initrd $1 with extra kernel arguments $2, serial output to $3.
vm_boot() {
	timeout "$KMM_VM_TIMEOUT" qemu-system-x86_64 -accel tcg -m "${KMM_VM_MEM:-512M}" -smp 1 \
		-kernel "$VMLINUX" -initrd "$1" \
		-append "console=ttyS0 panic=-1 quiet $2" \
		-nographic -no-reboot -nic none </dev/null >"$3" 2>&1
}
