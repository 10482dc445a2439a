#!/usr/bin/env bash
# Benchmark: imgport validate on 20 GiB (virtual) sparse images holding real filesystems.
#
# Sources: test images from scripts/build-test-images.sh (Ubuntu GPT/UEFI ext4, Rocky MBR XFS v5, Debian hybrid with a
# separate /boot, Ubuntu's guided LVM layout, Rocky's default LVM layout with XFS, Fedora's and openSUSE's btrfs
# layouts with subvolumes and zstd), grown to 20 GiB (the GPT backup moved to the new end with sgdisk -e, as a real
# resize does) and converted to qcow2 by qemu-img. Each is validated RUNS times (median wall time, warm cache); reported with the
# bytes validate read from the virtual disk (its bytes_read) and from the image file (the process's rchar).
# Targets: under 1 s and under 64 MiB read.
#
# usage: scripts/bench-validate.sh [WORKDIR]   (env RUNS=3, IMGPORT=target/release/imgport)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
WORK=${1:-$(mktemp -d /var/tmp/imgport-bench-validate.XXXXXX)}
mkdir -p "$WORK"
if [ -z "${IMGPORT:-}" ]; then
    cargo build --release --quiet
    IMGPORT=$PWD/target/release/imgport
fi
for tool in qemu-img sgdisk python3; do
    command -v "$tool" >/dev/null || { echo "bench-validate: missing '$tool' (scripts/install-peers.sh)" >&2; exit 1; }
done

IMAGES=(gpt-uefi-ext4 mbr-xfs5 gpt-hybrid-ext4 gpt-ubuntu-lvm mbr-rhel-lvm gpt-fedora-btrfs gpt-opensuse-btrfs)
if [ ! -f "$WORK/images/${IMAGES[-1]}.raw" ]; then
    scripts/build-test-images.sh "$WORK/images" >/dev/null 2>&1
fi
for name in "${IMAGES[@]}"; do
    [ -f "$WORK/$name-20g.qcow2" ] && continue
    cp --sparse=always "$WORK/images/$name.raw" "$WORK/$name-20g.raw"
    truncate -s 20G "$WORK/$name-20g.raw"
    case $name in gpt-*) sgdisk -e "$WORK/$name-20g.raw" >/dev/null ;; esac
    qemu-img convert -f raw -O qcow2 "$WORK/$name-20g.raw" "$WORK/$name-20g.qcow2"
    rm -f "$WORK/$name-20g.raw"
done

# Run one validation; print "seconds rchar bytes_read exit_code".
measure() {
    python3 - "$@" <<'PY'
import json, os, subprocess, sys, time
t = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
out = p.stdout.read()
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
rchar = 0
with open(f"/proc/{p.pid}/io") as f:
    for line in f:
        if line.startswith("rchar:"):
            rchar = int(line.split()[1])
rc = p.wait()
el = time.monotonic() - t
if rc == 2:
    sys.exit(f"validate could not read the image: {' '.join(sys.argv[1:])}")
print(f"{el:.3f} {rchar} {json.loads(out)['bytes_read']} {rc}")
PY
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "runs per image: $RUNS (median wall time), warm cache; target: < 1 s and < 64 MiB read"
echo
printf '| %-24s | %9s | %10s | %16s | %14s |\n' image "virtual" "seconds" "disk read (KiB)" "file read (KiB)"
printf '|%s|%s|%s|%s|%s|\n' "--------------------------" "-----------" "------------" "------------------" "-----------------"
for name in "${IMAGES[@]}"; do
    img="$WORK/$name-20g.qcow2"
    "$IMGPORT" validate --json "$img" >/dev/null || [ $? -eq 1 ]  # warm the cache
    times=()
    for _ in $(seq "$RUNS"); do
        read -r secs rchar dread code < <(measure "$IMGPORT" validate --json "$img")
        times+=("$secs")
    done
    med=$(printf '%s\n' "${times[@]}" | median)
    printf '| %-24s | %9s | %10s | %16d | %14d |\n' "$name.qcow2" "20 GiB" "$med" $((dread / 1024)) $((rchar / 1024))
done
