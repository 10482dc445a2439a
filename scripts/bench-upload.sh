#!/usr/bin/env bash
# Benchmark: imgport upload vs `aws s3 cp` (awscli) and `rclone copyto`, side by side in one run, against the same
# local S3 server (s3s-fs, started here), plus the server's own ceiling. `imgport` sends S3's flexible checksums
# (CRC-64/NVME, the default), `imgport-md5` Content-MD5 (--checksum md5). With STORE=oss the server is the local
# cloud's OSS (`imgport emulator serve`) and the tools are imgport and the ceiling (the peers speak S3 only).
#
# Source: SIZE_MIB MiB (default 2 GiB) of random data. Every tool sends it with the same part size and the same
# number of parts in flight (aws: s3.multipart_chunksize / multipart_threshold / max_concurrent_requests in a
# temporary AWS_CONFIG_FILE; rclone: --s3-chunk-size / --s3-upload-cutoff / --s3-upload-concurrency). The ceiling is
# put_ceiling (crates/storage/examples): the same multipart upload from one in-memory buffer, no file reads, no
# hashing. Each tool runs RUNS times in turn (median reported); the stored length is checked and the object and the
# server's leftovers are deleted after every run. Wall time, the client's CPU time and peak RSS come from
# /usr/bin/time, the server's CPU time from /proc; the spread of each tool's rate (slowest - fastest run) is shown
# beside the median. Then, unless MEMORY_CHECK=0, 4 GiB uploads with 64 MiB and with 256 MiB parts, 8 in flight,
# check imgport's peak RSS against 128 MiB (parts are streamed from the file; exit status 1 if over).
#
# usage: scripts/bench-upload.sh [WORKDIR]
#   env RUNS=5 SIZE_MIB=2048 PART_MIB=64 CONCURRENCY=8 IMGPORT=target/release/imgport
#       S3_DATA=folder for the server's data (default /dev/shm/..., so the VM's disk is not what is measured)
#       ONLY=imgport,ceiling (some of the tools) MEMORY_CHECK=1 STORE=s3|oss
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SIZE_MIB=${SIZE_MIB:-2048}
PART_MIB=${PART_MIB:-64}
CONC=${CONCURRENCY:-8}
MEMORY_CHECK=${MEMORY_CHECK:-1}
STORE=${STORE:-s3}
WORK=${1:-$(mktemp -d /var/tmp/imgport-upbench.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
PEERS=${IMGPORT_PEERS_DIR:-$HOME/.cache/imgport-peers}
S3S=$PEERS/bin/s3s-fs
for tool in aws rclone; do
    command -v "$tool" >/dev/null || { echo "$tool is required (scripts/install-peers.sh)" >&2; exit 1; }
done
[ -x "$S3S" ] || { echo "s3s-fs is required at $S3S (scripts/install-peers.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is required (scripts/install-peers.sh)" >&2; exit 1; }
cargo build --release --quiet -p imgport-storage --example put_ceiling
CEILING=$PWD/target/release/examples/put_ceiling
if [ -z "${IMGPORT:-}" ]; then
    cargo build --release --quiet
    IMGPORT=$PWD/target/release/imgport
fi

# Random data: nothing on the way (page cache, TCP, the server's disk) can shortcut it.
make_source() { # path MiB
    if [ ! -f "$1" ] || [ "$(stat -c %s "$1")" -ne $(($2 << 20)) ]; then
        echo "writing $2 MiB of random data to $1 ..." >&2
        head -c $(($2 << 20)) /dev/urandom >"$1.tmp" && mv "$1.tmp" "$1"
    fi
}
SRC=$WORK/src.bin
make_source "$SRC" "$SIZE_MIB"

S3_DATA=${S3_DATA:-$(mktemp -d /dev/shm/imgport-upbench-s3.XXXXXX)}
BUCKET=bench
mkdir -p "$S3_DATA/$BUCKET"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "$STORE" = oss ]; then
    "$IMGPORT" -q emulator serve --listen "127.0.0.1:$PORT" --data "$S3_DATA/emulator" --access-key-id AKBENCH \
        --access-key-secret SKBENCH >"$WORK/emulator.log" 2>&1 &
    export ALIBABA_CLOUD_ACCESS_KEY_ID=AKBENCH ALIBABA_CLOUD_ACCESS_KEY_SECRET=SKBENCH ALIBABA_CLOUD_REGION_ID=cn-hangzhou
    export STORE_FLAVOR=oss
    unset ALIBABA_CLOUD_SECURITY_TOKEN || true
else
    "$S3S" --host 127.0.0.1 --port "$PORT" --access-key AKBENCH --secret-key SKBENCH "$S3_DATA" >"$WORK/s3s-fs.log" 2>&1 &
fi
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$S3_DATA"; }
trap cleanup EXIT
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
    sleep 0.1
done
ENDPOINT=http://127.0.0.1:$PORT
if [ "$STORE" = oss ]; then # the bucket, made by a small upload of the ceiling's
    "$CEILING" "$ENDPOINT" "$BUCKET" warm-up $((1 << 20)) $((1 << 20)) 1 >/dev/null
    "$CEILING" remove "$ENDPOINT" "$BUCKET" warm-up >/dev/null
fi
export AWS_ACCESS_KEY_ID=AKBENCH AWS_SECRET_ACCESS_KEY=SKBENCH AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
# The endpoint is plain HTTP: a CA bundle is of no use, and rclone 1.60 fails when AWS_CA_BUNDLE is set.
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE || true
export AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-credentials
: >"$AWS_SHARED_CREDENTIALS_FILE"

# awscli's transfer settings, in a config file of its own.
export AWS_CONFIG_FILE=$WORK/aws-config
: >"$AWS_CONFIG_FILE"
aws configure set default.s3.max_concurrent_requests "$CONC"
aws configure set default.s3.multipart_chunksize "${PART_MIB}MB"
aws configure set default.s3.multipart_threshold "${PART_MIB}MB"

# rclone's remote `x`, from the environment only.
export RCLONE_CONFIG=$WORK/rclone.conf
: >"$RCLONE_CONFIG"
export RCLONE_CONFIG_X_TYPE=s3 RCLONE_CONFIG_X_PROVIDER=Other RCLONE_CONFIG_X_ENDPOINT=$ENDPOINT \
    RCLONE_CONFIG_X_ACCESS_KEY_ID=AKBENCH RCLONE_CONFIG_X_SECRET_ACCESS_KEY=SKBENCH RCLONE_CONFIG_X_REGION=us-east-1 \
    RCLONE_CONFIG_X_FORCE_PATH_STYLE=true

# The command line of one tool uploading $1 (a file of $2 bytes) to key $3.
command_for() { # tool src bytes key
    case $1 in
    imgport) echo "$IMGPORT upload --json --no-resume --endpoint $ENDPOINT $2 $STORE://$BUCKET/$4 --part-size ${PART_MIB}M --concurrency $CONC" ;;
    imgport-md5) echo "$(command_for imgport "${@:2}") --checksum md5" ;;
    aws) echo "aws --endpoint-url $ENDPOINT s3 cp --only-show-errors $2 s3://$BUCKET/$4" ;;
    rclone) echo "rclone copyto --s3-no-check-bucket --s3-upload-concurrency $CONC --s3-chunk-size ${PART_MIB}M --s3-upload-cutoff ${PART_MIB}M $2 x:$BUCKET/$4" ;;
    ceiling) echo "$CEILING $ENDPOINT $BUCKET $4 $3 $((PART_MIB << 20)) $CONC" ;;
    esac
}

# CPU seconds (user + system) the server has used so far.
TICK=$(getconf CLK_TCK)
server_cpu() { awk -v t="$TICK" '{printf "%.2f\n", ($14 + $15) / t}' "/proc/$SERVER/stat"; }

# Run one upload; print "seconds peak_rss_kib cpu_seconds server_cpu_seconds" (the tool's user + system time, and
# the server's during the run). The stored length is checked, then the object and any multipart leftovers are
# deleted so the server's folder does not fill up.
measure() { # tool src bytes key
    local cmd before
    cmd=$(command_for "$@")
    sync
    before=$(server_cpu)
    if ! XDG_STATE_HOME=$WORK/state /usr/bin/time -o "$WORK/time" -f '%e %M %U %S' $cmd >"$WORK/out" 2>"$WORK/err"; then
        echo "$1 failed: $cmd" >&2; cat "$WORK/err" >&2; exit 1
    fi
    local stored
    if [ "$STORE" = oss ]; then
        stored=$("$CEILING" remove "$ENDPOINT" "$BUCKET" "$4" 2>/dev/null || echo missing)
    else
        stored=$(stat -c %s "$S3_DATA/$BUCKET/$4" 2>/dev/null || echo missing)
    fi
    [ "$stored" = "$3" ] || { echo "$1: the stored object holds $stored bytes, not $3" >&2; exit 1; }
    [ "$STORE" = oss ] || find "$S3_DATA" -mindepth 1 -not -path "$S3_DATA/$BUCKET" -delete # all but the bucket
    tail -1 "$WORK/time" | awk -v srv="$(echo "$(server_cpu) - $before" | bc -l)" '{printf "%s %s %.2f %.2f\n", $1, $2, $3 + $4, srv}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

BYTES=$((SIZE_MIB << 20))
TOOLS=(imgport imgport-md5 aws rclone ceiling)
[ "$STORE" = oss ] && TOOLS=(imgport ceiling)
[ -n "${ONLY:-}" ] && read -r -a TOOLS <<<"${ONLY//,/ }"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "peers: $(aws --version 2>&1 | cut -d' ' -f1), $(rclone version 2>/dev/null | head -1), $("$S3S" --version 2>/dev/null || echo s3s-fs) (data in $S3_DATA; store: $STORE)"
echo "source: $SIZE_MIB MiB random, parts of $PART_MIB MiB, $CONC in flight; runs per tool: $RUNS (median, in turn)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$SRC" >/dev/null # warm the cache: the source is read from memory by every tool
declare -A SECS RSS CPU SRV
for run in $(seq "$RUNS"); do
    for tool in "${TOOLS[@]}"; do
        read -r s kib cpu srv < <(measure "$tool" "$SRC" "$BYTES" "obj-$tool-$run")
        SECS[$tool]+="$s "; RSS[$tool]+="$kib "; CPU[$tool]+="$cpu "; SRV[$tool]+="$srv "
    done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-11s | %8s | %8s | %11s | %8s | %10s | %9s | %13s | %14s |\n' tool "s" "MiB/s" "spread" "cpu s" "server cpu" "RSS MiB" "imgport x" "of ceiling"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "-------------" "----------" "----------" "-------------" "----------" "------------" "-----------" "---------------" "----------------"
declare -A RATE
for tool in "${TOOLS[@]}"; do
    s=$(printf '%s\n' ${SECS[$tool]} | median)
    RATE[$tool]=$(echo "$SIZE_MIB / $s" | bc -l)
done
for tool in "${TOOLS[@]}"; do
    s=$(printf '%s\n' ${SECS[$tool]} | median)
    kib=$(printf '%s\n' ${RSS[$tool]} | median)
    cpu=$(printf '%s\n' ${CPU[$tool]} | median)
    srv=$(printf '%s\n' ${SRV[$tool]} | median)
    slow=$(printf '%s\n' ${SECS[$tool]} | sort -n | tail -1)
    fast=$(printf '%s\n' ${SECS[$tool]} | sort -n | head -1)
    spread=$(printf '%.0f-%.0f' "$(echo "$SIZE_MIB / $slow" | bc -l)" "$(echo "$SIZE_MIB / $fast" | bc -l)")
    vs=-; of=-
    [ -n "${RATE[imgport]:-}" ] && [ "$tool" != imgport ] && vs=$(printf '%.2f' "$(echo "${RATE[imgport]} / ${RATE[$tool]}" | bc -l)")
    [ -n "${RATE[ceiling]:-}" ] && of=$(printf '%.0f%%' "$(echo "100 * ${RATE[$tool]} / ${RATE[ceiling]}" | bc -l)")
    printf '| %-11s | %8.2f | %8.0f | %11s | %8.2f | %10.2f | %9.0f | %13s | %14s |\n' "$tool" "$s" "${RATE[$tool]}" "$spread" "$cpu" "$srv" \
        "$(echo "$kib / 1024" | bc -l)" "$vs" "$of"
done
echo "(medians; spread: MiB/s of the slowest and the fastest run; imgport x: imgport's MiB/s over the tool's;"
echo " of ceiling: the tool's MiB/s over put_ceiling's; cpu s: the client's own;"
echo " server cpu: the server's during the run, s3s-fs or the local cloud)"

if [ "$MEMORY_CHECK" = 1 ]; then
    BIG=$WORK/src-4g.bin
    make_source "$BIG" 4096
    bound=$((128 * 1024))
    echo
    for part in 64 256; do
        read -r s kib _ _ < <(PART_MIB=$part CONC=8 measure imgport "$BIG" $((4 << 30)) "obj-4g-$part")
        printf 'memory: 4 GiB, %d MiB parts, 8 in flight: %.1f s, peak RSS %d MiB (bound %d MiB)\n' "$part" "$s" $((kib / 1024)) $((bound / 1024))
        [ "$kib" -lt "$bound" ] || { echo "peak RSS over the bound" >&2; exit 1; }
    done
fi
