#!/usr/bin/env bash
# Benchmark: convert alone (to a local file), upload alone (of that file), and the streamed convert + upload
# (`imgport convert ... s3://BUCKET/KEY`, no temporary file), all against one local s3s-fs. The target is
# streamed <= 1.15 x max(convert, upload).
#
# Source: a sparse raw of GIB GiB, half of it random data scattered in 4 MiB pieces (the rest holes), converted
# to qcow2. Each case runs RUNS times (alternating, warm cache); the median is reported. The local convert
# syncs its output before it ends, as `imgport convert` always does.
#
# usage: scripts/bench-stream.sh [GIB] [WORKDIR]
#   env RUNS=3, IMGPORT=target/release/imgport, FORMAT=qcow2, CONCURRENCY=8, PART_SIZE (default: automatic),
#       S3S_FS (default $IMGPORT_PEERS_DIR or ~/.cache/imgport-peers, then bin/s3s-fs; scripts/install-peers.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
GIB=${1:-2}
WORK=${2:-$(mktemp -d /var/tmp/imgport-stream.XXXXXX)}
RUNS=${RUNS:-3}
FORMAT=${FORMAT:-qcow2}
CONCURRENCY=${CONCURRENCY:-8}
mkdir -p "$WORK"
if [ -z "${IMGPORT:-}" ]; then
    cargo build --release --quiet
    IMGPORT=$PWD/target/release/imgport
fi
PEERS=${IMGPORT_PEERS_DIR:-$HOME/.cache/imgport-peers}
S3S_FS=${S3S_FS:-$PEERS/bin/s3s-fs}
[ -x "$S3S_FS" ] || { echo "s3s-fs is missing at $S3S_FS: run scripts/install-peers.sh" >&2; exit 1; }

SRC=$WORK/src-${GIB}g.raw
if [ ! -f "$SRC" ]; then
    echo "building the $GIB GiB source in $WORK ..." >&2
    python3 - "$SRC" "$GIB" <<'PY'
import os, random, sys
path, gib = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261126)
piece = 4 << 20
slots = list(range((gib << 30) // piece))
rng.shuffle(slots)
with open(path, "wb") as f:
    f.truncate(gib << 30)
    for s in slots[: len(slots) // 2]:
        f.seek(s * piece); f.write(os.urandom(piece))
PY
fi

DATA=$WORK/s3
rm -rf "$DATA"
mkdir -p "$DATA/bench"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$S3S_FS" --host 127.0.0.1 --port "$PORT" --access-key AKBENCH --secret-key SKBENCH "$DATA" >"$WORK/s3s.log" 2>&1 &
S3S_PID=$!
trap 'kill $S3S_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

export AWS_ACCESS_KEY_ID=AKBENCH AWS_SECRET_ACCESS_KEY=SKBENCH AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export XDG_STATE_HOME=$WORK/state
UPLOAD_OPTS=(--concurrency "$CONCURRENCY" --no-resume)
[ -n "${PART_SIZE:-}" ] && UPLOAD_OPTS+=(--part-size "$PART_SIZE")
OUT=$WORK/out.$FORMAT

# Seconds of one run of the command.
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

declare -a T_CONVERT T_UPLOAD T_STREAM
for run in $(seq "$RUNS"); do
    rm -f "$OUT"
    T_CONVERT+=("$(timed "$IMGPORT" convert -O "$FORMAT" "$SRC" "$OUT")")
    T_UPLOAD+=("$(timed "$IMGPORT" upload "$OUT" "s3://bench/upload.$FORMAT" "${UPLOAD_OPTS[@]}")")
    T_STREAM+=("$(timed "$IMGPORT" convert -O "$FORMAT" "$SRC" "s3://bench/stream.$FORMAT" "${UPLOAD_OPTS[@]}")")
    echo "run $run: convert ${T_CONVERT[-1]} s, upload ${T_UPLOAD[-1]} s, streamed ${T_STREAM[-1]} s" >&2
done
cmp "$OUT" "$DATA/bench/stream.$FORMAT" || { echo "the streamed object differs from the converted file" >&2; exit 1; }

python3 - "$(stat -c %s "$OUT")" "$GIB" "$FORMAT" "$CONCURRENCY" "${T_CONVERT[*]}" "${T_UPLOAD[*]}" "${T_STREAM[*]}" <<'PY'
import statistics, sys
size, gib, fmt, conc = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c, u, s = (statistics.median(map(float, a.split())) for a in sys.argv[5:8])
mib = size / (1 << 20)
print(f"source: {gib} GiB raw (half data); output: {fmt}, {mib:.0f} MiB; concurrency {conc}; medians of {len(sys.argv[5].split())}")
print(f"{'case':<28}{'seconds':>9}{'MiB/s':>9}")
for name, t in [("convert (local file)", c), ("upload (that file)", u), ("streamed convert + upload", s)]:
    print(f"{name:<28}{t:>9.2f}{mib / t:>9.0f}")
ratio = s / max(c, u)
print(f"streamed / max(convert, upload) = {ratio:.3f} (target <= 1.15): {'ok' if ratio <= 1.15 else 'MISSED'}")
PY
