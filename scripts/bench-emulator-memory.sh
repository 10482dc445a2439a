#!/usr/bin/env bash
# Memory of the emulator while multi-GiB objects stream through it: a sparse source file (SIZE, default 4 GiB)
# is uploaded with oss2 as a multipart upload (64 MiB parts, CRC-64 checked) and as one PutObject (capped at
# 5 GiB, as OSS), then read back in a streaming GET whose CRC-64 is checked. Prints throughput and the emulator's
# peak RSS (VmHWM), which must stay flat whatever SIZE is. Not a timed test: run it by hand.
#
# usage: scripts/bench-emulator-memory.sh [SIZE_GIB]
set -euo pipefail
cd "$(dirname "$0")/.."

GIB=${1:-4}
cargo build -q --bin imgport
python3 -c "import oss2" || { echo "bench-emulator-memory: needs python3 with oss2 (scripts/install-peers.sh)" >&2; exit 1; }

work=$(mktemp -d)
cleanup() {
    if [ -n "${pid:-}" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

target/debug/imgport emulator serve --listen 127.0.0.1:0 --data "$work/data" --json --quiet >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 50); do [ -s "$work/out" ] && break; sleep 0.1; done
info=$(head -1 "$work/out")

# Sparse source: holes, with a few MiB of data scattered through it so parts differ.
src="$work/source.raw"
truncate -s "${GIB}G" "$src"
for off in 0 $((GIB * 256)) $((GIB * 512)) $((GIB * 1024 - 1)); do
    head -c 1048576 /dev/urandom | dd of="$src" bs=1M seek="$off" conv=notrunc status=none
done

hwm() { awk '/VmHWM/ {print $2}' "/proc/$pid/status"; }
echo "emulator peak RSS at start: $(hwm) KiB"

python3 - "$info" "$src" "$GIB" <<'PY'
import json, os, sys, time
import oss2
info, src, gib = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
auth = oss2.AuthV4(info["access_key_id"], info["access_key_secret"])
b = oss2.Bucket(auth, info["oss_endpoint"], "bench", region=info["region"], enable_crc=True)
b.create_bucket()
size = os.path.getsize(src)
mib = size / 1048576

def timed(what, fn):
    t = time.time()
    r = fn()
    dt = time.time() - t
    print(f"{what}: {mib:.0f} MiB in {dt:.1f} s, {mib / dt:.0f} MiB/s", flush=True)
    return r

part = 64 * 1048576
def multipart():
    up = b.init_multipart_upload("multipart.raw").upload_id
    parts = []
    with open(src, "rb") as f:
        n = 1
        while True:
            data = f.read(part)
            if not data:
                break
            r = b.upload_part("multipart.raw", up, n, data)
            parts.append(oss2.models.PartInfo(n, r.etag, size=len(data), part_crc=r.crc))
            n += 1
    return b.complete_multipart_upload("multipart.raw", up, parts)

timed("multipart upload (CRC-64 per part and combined)", multipart)
if size <= 5 * 1024 ** 3:
    with open(src, "rb") as f:
        timed("single PutObject (streamed from the file)", lambda: b.put_object("single.raw", f))

def get(key):
    r = b.get_object(key)  # enable_crc: oss2 checks the object's CRC-64 as it reads
    n = 0
    while True:
        chunk = r.read(8 * 1048576)
        if not chunk:
            break
        n += len(chunk)
    assert n == size, (n, size)

timed("streaming GET of the multipart object", lambda: get("multipart.raw"))
PY
echo "emulator peak RSS after ${GIB} GiB in and out: $(hwm) KiB"
