#!/usr/bin/env bash
# Benchmark: imgport convert vs qemu-img convert, side by side in one run.
#
# Source: a 4 GiB sparse raw holding 1 GiB of random data scattered in 4 MiB pieces plus 128 MiB of written
# zeros, and its qcow2 / VHD / VHDX / VMDK (streamOptimized) conversions made by qemu-img. Every case is timed
# for both tools (median of RUNS, alternating, output synced, warm cache). "read MiB" is what imgport read from
# the source (its own count of reads plus mapped data; rchar cannot see mapped reads), to compare with the
# source's allocated bytes.
#
# usage: scripts/bench-convert.sh [WORKDIR]   (env RUNS=5, IMGPORT=target/release/imgport, ONLY=substring of a case name)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
WORK=${1:-$(mktemp -d /var/tmp/imgport-bench.XXXXXX)}
mkdir -p "$WORK"
if [ -z "${IMGPORT:-}" ]; then
    cargo build --release --quiet
    IMGPORT=$PWD/target/release/imgport
fi
command -v qemu-img >/dev/null || { echo "qemu-img is required (scripts/install-peers.sh)" >&2; exit 1; }

SRC=$WORK/src.raw
if [ ! -f "$SRC" ]; then
    echo "building the 4 GiB source in $WORK ..." >&2
    python3 - "$SRC" <<'PY'
import os, random, sys
path = sys.argv[1]
rng = random.Random(20261126)
piece = 4 << 20
slots = list(range((4 << 30) // piece))
rng.shuffle(slots)
with open(path, "wb") as f:
    f.truncate(4 << 30)
    for s in slots[:256]:          # 1 GiB of random data
        f.seek(s * piece); f.write(os.urandom(piece))
    for s in slots[256:288]:       # 128 MiB of written zeros
        f.seek(s * piece); f.write(bytes(piece))
PY
    qemu-img convert -f raw -O qcow2 "$SRC" "$WORK/src.qcow2"
    qemu-img convert -f raw -O vhdx "$SRC" "$WORK/src.vhdx"
    qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$SRC" "$WORK/src.vmdk"
fi

# name | qemu-img arguments | imgport arguments | source (for rchar vs allocated)
CASES=(
  "raw->qcow2|-f raw -O qcow2 $SRC|-O qcow2 $SRC|$SRC"
  "qcow2->raw|-f qcow2 -O raw $WORK/src.qcow2|-O raw $WORK/src.qcow2|$WORK/src.qcow2"
  "raw->vhd fixed|-f raw -O vpc -o subformat=fixed,force_size=on $SRC|-O vhd -o subformat=fixed $SRC|$SRC"
  "raw->vhd dynamic|-f raw -O vpc -o force_size=on $SRC|-O vhd -o subformat=dynamic $SRC|$SRC"
  "qcow2->vhd dynamic|-f qcow2 -O vpc -o force_size=on $WORK/src.qcow2|-O vhd -o subformat=dynamic $WORK/src.qcow2|$WORK/src.qcow2"
  "vhdx->raw|-f vhdx -O raw $WORK/src.vhdx|-O raw $WORK/src.vhdx|$WORK/src.vhdx"
  "vmdk(stream)->qcow2|-f vmdk -O qcow2 $WORK/src.vmdk|-O qcow2 $WORK/src.vmdk|$WORK/src.vmdk"
  "raw->qcow2 zstd|-f raw -O qcow2 -c -o compression_type=zstd $SRC|-O qcow2 --compress zstd $SRC|$SRC"
)

# Time one command including an fsync of its output; print "wall_seconds cpu_seconds bytes_read".
# CPU time (user + system of the command) is printed too: on a busy machine it is steadier than wall time.
measure() {
    local out=$1; shift
    rm -f "$out"
    python3 - "$out" "$@" <<'PY'
import json, os, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
os.sync()  # start from clean page cache writeback, so one run's flush does not land in the next run's time
t = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
stdout = p.stdout.read()
_, status, usage = os.wait4(p.pid, 0)
fd = os.open(out, os.O_RDONLY); os.fsync(fd); os.close(fd)
el = time.monotonic() - t
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(f"command failed: {' '.join(cmd)}")
try:  # imgport counts what it read (reads plus mapped data)
    read = json.loads(stdout)["bytes_read"]
except Exception:
    read = 0
print(f"{el:.3f} {usage.ru_utime + usage.ru_stime:.3f} {read}")
PY
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(qemu-img --version | head -1)"
echo "runs per case: $RUNS (median), warm cache, output fsynced; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-20s | %8s | %8s | %6s | %8s | %8s | %6s | %9s | %9s |\n' case "qemu s" "imgport s" ratio "qemu cpu" "imgport cpu" "cpu ratio" "read MiB" "alloc MiB"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "----------------------" "----------" "-----------" "--------" "----------" "-------------" "-----------" "-----------" "-----------"
cat "$SRC" "$WORK"/src.* >/dev/null  # warm the cache
for c in "${CASES[@]}"; do
    IFS='|' read -r name qargs iargs source <<<"$c"
    [ -n "${ONLY:-}" ] && [[ "$name" != *"$ONLY"* ]] && continue
    qw=(); qc=(); iw=(); ic=(); rd=()
    for _ in $(seq "$RUNS"); do
        read -r w cpu _ < <(measure "$WORK/out.q" qemu-img convert $qargs "$WORK/out.q"); qw+=("$w"); qc+=("$cpu")
        read -r w cpu r < <(measure "$WORK/out.i" "$IMGPORT" convert --json --force $iargs "$WORK/out.i"); iw+=("$w"); ic+=("$cpu"); rd+=("$r")
    done
    qm=$(printf '%s\n' "${qw[@]}" | median); im=$(printf '%s\n' "${iw[@]}" | median)
    qcm=$(printf '%s\n' "${qc[@]}" | median); icm=$(printf '%s\n' "${ic[@]}" | median)
    alloc=$("$IMGPORT" info --json "$source" | python3 -c 'import json,sys; print(json.load(sys.stdin)["allocated_bytes"])')
    printf '| %-20s | %8.2f | %9.2f | %6.2f | %8.2f | %11.2f | %9.2f | %9.0f | %9.0f |\n' "$name" "$qm" "$im" \
        "$(echo "$im / $qm" | bc -l)" "$qcm" "$icm" "$(echo "$icm / $qcm" | bc -l)" \
        "$(echo "${rd[0]} / 1048576" | bc -l)" "$(echo "$alloc / 1048576" | bc -l)"
    rm -f "$WORK/out.q" "$WORK/out.i"
done
