#!/usr/bin/env bash
# Benchmark over a WAN-like link: imgport upload vs `aws s3 cp` (awscli) and `rclone copyto`, each run inside a
# network namespace whose veth link is shaped by tbf (RATE_MBIT, default 200 Mbit/s) and whose traffic to the
# S3 server (s3s-fs on 127.0.0.1, data on tmpfs) crosses the latency proxy of the network tests (RTT_MS, default
# 50 ms). examples/wanlink.rs sets the link up (crates/test-support/src/netem.rs) and removes it at the end. Needs root.
#
# Two rounds: "equal" (every tool with PART_MIB MiB parts and CONCURRENCY parts in flight, as in
# scripts/bench-upload.sh) and "defaults" (every tool as it comes: no part size or concurrency given). The ceiling
# is put_ceiling (crates/storage/examples) through the same link: the same multipart upload from memory, at the
# equal settings. Each tool runs RUNS times in turn; the median and the range are reported. "of link" is MiB/s over
# the link's nominal rate (RATE_MBIT Mbit/s in MiB/s); TCP/IP headers leave about 95% of it for data. "wire" is
# the time until the link went quiet for good (sampled on this side of the veth): s3s-fs then copies and hashes
# every part into the object (CompleteMultipartUpload), which no client can shorten.
#
# usage: scripts/bench-wan.sh [WORKDIR]
#   env RUNS=3 SIZE_MIB=512 PART_MIB=16 CONCURRENCY=8 RATE_MBIT=200 RTT_MS=50 JITTER_MS=0
#       ROUNDS="equal defaults" ONLY=imgport,aws,rclone,ceiling IMGPORT=target/release/imgport
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-512}
PART_MIB=${PART_MIB:-16}
CONC=${CONCURRENCY:-8}
RATE_MBIT=${RATE_MBIT:-200}
RTT_MS=${RTT_MS:-50}
JITTER_MS=${JITTER_MS:-0}
ROUNDS=${ROUNDS:-equal defaults}
WORK=${1:-$(mktemp -d /var/tmp/imgport-wanbench.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
PEERS=${IMGPORT_PEERS_DIR:-$HOME/.cache/imgport-peers}
S3S=$PEERS/bin/s3s-fs
[ "$(id -u)" -eq 0 ] || { echo "bench-wan.sh needs root (network namespaces, veth, tbf)" >&2; exit 1; }
for tool in aws rclone ip tc; do
    command -v "$tool" >/dev/null || { echo "$tool is required (scripts/install-peers.sh)" >&2; exit 1; }
done
[ -x "$S3S" ] || { echo "s3s-fs is required at $S3S (scripts/install-peers.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is required (scripts/install-peers.sh)" >&2; exit 1; }
cargo build --release --quiet -p imgport-storage --example put_ceiling
cargo build --release --quiet -p imgport --example wanlink
CEILING=$PWD/target/release/examples/put_ceiling
WANLINK=$PWD/target/release/examples/wanlink
if [ -z "${IMGPORT:-}" ]; then
    cargo build --release --quiet -p imgport --bin imgport
    IMGPORT=$PWD/target/release/imgport
fi

SRC=$WORK/src-$SIZE_MIB.bin
if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" -ne $((SIZE_MIB << 20)) ]; then
    echo "writing $SIZE_MIB MiB of random data to $SRC ..." >&2
    head -c $((SIZE_MIB << 20)) /dev/urandom >"$SRC.tmp" && mv "$SRC.tmp" "$SRC"
fi

S3_DATA=$(mktemp -d /dev/shm/imgport-wanbench-s3.XXXXXX)
BUCKET=bench
mkdir -p "$S3_DATA/$BUCKET"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$S3S" --host 127.0.0.1 --port "$PORT" --access-key AKBENCH --secret-key SKBENCH "$S3_DATA" >"$WORK/s3s-fs.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
    sleep 0.1
done
# The link lives as long as its standard input stays open.
coproc WAN { exec "$WANLINK" "127.0.0.1:$PORT" "$RATE_MBIT" "$RTT_MS" "$JITTER_MS" 2>"$WORK/wanlink.log"; }
WAN_PID=$WAN_PID
cleanup() {
    exec {WAN[1]}>&- 2>/dev/null || true
    wait "$WAN_PID" 2>/dev/null || true
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$S3_DATA"
}
trap cleanup EXIT
read -r NS PROXY <&"${WAN[0]}" || { echo "wanlink failed: $(cat "$WORK/wanlink.log")" >&2; exit 1; }
ENDPOINT=http://$PROXY

export AWS_ACCESS_KEY_ID=AKBENCH AWS_SECRET_ACCESS_KEY=SKBENCH AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE || true
export AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-credentials
: >"$AWS_SHARED_CREDENTIALS_FILE"
# awscli's settings for the "equal" round; the "defaults" round points AWS_CONFIG_FILE at an empty file.
: >"$WORK/aws-defaults"
export AWS_CONFIG_FILE=$WORK/aws-equal
: >"$AWS_CONFIG_FILE"
aws configure set default.s3.max_concurrent_requests "$CONC"
aws configure set default.s3.multipart_chunksize "${PART_MIB}MB"
aws configure set default.s3.multipart_threshold "${PART_MIB}MB"
export RCLONE_CONFIG=$WORK/rclone.conf
: >"$RCLONE_CONFIG"
export RCLONE_CONFIG_X_TYPE=s3 RCLONE_CONFIG_X_PROVIDER=Other RCLONE_CONFIG_X_ENDPOINT=$ENDPOINT \
    RCLONE_CONFIG_X_ACCESS_KEY_ID=AKBENCH RCLONE_CONFIG_X_SECRET_ACCESS_KEY=SKBENCH RCLONE_CONFIG_X_REGION=us-east-1 \
    RCLONE_CONFIG_X_FORCE_PATH_STYLE=true

command_for() { # round tool key
    local eq=$([ "$1" = equal ] && echo 1 || echo 0)
    case $2 in
    imgport)
        echo -n "$IMGPORT upload --json --no-resume --endpoint $ENDPOINT $SRC s3://$BUCKET/$3"
        [ "$eq" = 1 ] && echo -n " --part-size ${PART_MIB}M --concurrency $CONC"
        echo ;;
    aws) echo "env AWS_CONFIG_FILE=$WORK/aws-$1 aws --endpoint-url $ENDPOINT s3 cp --only-show-errors $SRC s3://$BUCKET/$3" ;;
    rclone)
        echo -n "rclone copyto --s3-no-check-bucket"
        [ "$eq" = 1 ] && echo -n " --s3-upload-concurrency $CONC --s3-chunk-size ${PART_MIB}M --s3-upload-cutoff ${PART_MIB}M"
        echo " $SRC x:$BUCKET/$3" ;;
    ceiling) echo "$CEILING $ENDPOINT $BUCKET $3 $((SIZE_MIB << 20)) $((PART_MIB << 20)) $CONC" ;;
    esac
}

# The link's receive counter on this side, sampled every 20 ms without forking: "seconds bytes" lines.
IFACE=$(ip -o addr show to "${PROXY%:*}/32" | awk '{print $2}')
sample_link() {
    local bytes
    while :; do
        read -r bytes <"/sys/class/net/$IFACE/statistics/rx_bytes"
        echo "$EPOCHREALTIME $bytes"
        sleep 0.02
    done
}

# One upload from inside the namespace; prints "seconds peak_rss_kib cpu_seconds wire_seconds", where
# wire_seconds runs from the start to the last 20 ms in which the link carried data (more than 32 KiB): what is
# left of the wall time after it is the server's CompleteMultipartUpload (and the client's last checks).
measure() { # round tool key
    local cmd sampler t0
    cmd=$(command_for "$@")
    sample_link >"$WORK/samples" &
    sampler=$!
    t0=$EPOCHREALTIME
    if ! XDG_STATE_HOME=$WORK/state ip netns exec "$NS" /usr/bin/time -o "$WORK/time" -f '%e %M %U %S' $cmd \
        >"$WORK/out" 2>"$WORK/err"; then
        kill "$sampler"
        echo "$2 failed: $cmd" >&2; cat "$WORK/err" >&2; exit 1
    fi
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    local wire
    wire=$(awk -v t0="$t0" 'NR > 1 && $2 - b > 32768 {last = $1} {b = $2} END {printf "%.2f", last - t0}' "$WORK/samples")
    local stored
    stored=$(stat -c %s "$S3_DATA/$BUCKET/$3" 2>/dev/null || echo missing)
    [ "$stored" = $((SIZE_MIB << 20)) ] || { echo "$2: the stored object holds $stored bytes" >&2; exit 1; }
    find "$S3_DATA" -mindepth 1 -not -path "$S3_DATA/$BUCKET" -delete
    tail -1 "$WORK/time" | awk -v w="$wire" '{printf "%s %s %.2f %s\n", $1, $2, $3 + $4, w}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
LINK_MIBS=$(echo "$RATE_MBIT * 1000000 / 8 / 1048576" | bc -l)

TOOLS=(imgport aws rclone ceiling)
[ -n "${ONLY:-}" ] && read -r -a TOOLS <<<"${ONLY//,/ }"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), tcp $(sysctl -n net.ipv4.tcp_congestion_control)"
echo "peers: $(aws --version 2>&1 | cut -d' ' -f1), $(rclone version 2>/dev/null | head -1), s3s-fs (data in $S3_DATA)"
echo "link: $RATE_MBIT Mbit/s (tbf, $(printf '%.2f' "$LINK_MIBS") MiB/s), +$RTT_MS ms RTT (± $JITTER_MS ms), namespace $NS, proxy $PROXY"
echo "source: $SIZE_MIB MiB random; equal round: parts of $PART_MIB MiB, $CONC in flight; runs per tool: $RUNS"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$SRC" >/dev/null
for round in $ROUNDS; do
    declare -A SECS=() RSS=() CPU=() WIRE=()
    for run in $(seq "$RUNS"); do
        for tool in "${TOOLS[@]}"; do
            [ "$tool" = ceiling ] && [ "$round" != equal ] && continue
            read -r s kib cpu wire < <(measure "$round" "$tool" "obj-$round-$tool-$run")
            SECS[$tool]+="$s "; RSS[$tool]+="$kib "; CPU[$tool]+="$cpu "; WIRE[$tool]+="$wire "
            echo "  $round $tool run $run: $s s (link busy until $wire s), $((kib / 1024)) MiB" >&2
        done
    done
    echo
    echo "round: $round"
    printf '| %-8s | %8s | %13s | %8s | %13s | %8s | %8s | %9s | %8s | %6s |\n' tool "s" "range s" "MiB/s" "MiB/s range" \
        "of link" "wire s" "wire MiB/s" "of link" "RSS MiB"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "----------" "----------" "---------------" "----------" "---------------" \
        "----------" "----------" "-----------" "----------" "--------"
    for tool in "${TOOLS[@]}"; do
        [ -n "${SECS[$tool]:-}" ] || continue
        s=$(printf '%s\n' ${SECS[$tool]} | median)
        lo=$(printf '%s\n' ${SECS[$tool]} | sort -n | head -1)
        hi=$(printf '%s\n' ${SECS[$tool]} | sort -n | tail -1)
        w=$(printf '%s\n' ${WIRE[$tool]} | median)
        kib=$(printf '%s\n' ${RSS[$tool]} | median)
        rate=$(echo "$SIZE_MIB / $s" | bc -l)
        wrate=$(echo "$SIZE_MIB / $w" | bc -l)
        printf '| %-8s | %8.2f | %6.2f-%-6.2f | %8.2f | %6.2f-%-6.2f | %7.0f%% | %8.2f | %9.2f | %7.0f%% | %6.0f |\n' \
            "$tool" "$s" "$lo" "$hi" "$rate" "$(echo "$SIZE_MIB / $hi" | bc -l)" "$(echo "$SIZE_MIB / $lo" | bc -l)" \
            "$(echo "100 * $rate / $LINK_MIBS" | bc -l)" "$w" "$wrate" "$(echo "100 * $wrate / $LINK_MIBS" | bc -l)" \
            "$(echo "$kib / 1024" | bc -l)"
    done
    echo "(wire: from the start until the link went quiet; the rest of the wall time is the server completing the upload)"
    unset SECS RSS CPU WIRE
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
