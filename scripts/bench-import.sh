#!/usr/bin/env bash
# Benchmark: `imgport import` of a VMDK against the sequence users run today, side by side in one run, into the same
# local cloud (`imgport emulator serve` with instant imports, its data on tmpfs):
#
#   sequence: qemu-img convert -O qcow2 to a temporary file, upload it with Alibaba's oss2 SDK
#             (resumable_upload: multipart, 64 MiB parts, 8 threads, CRC-64 checked), then the ECS SDK's
#             ImportImage and DescribeImages every second until the image is Available
#   imgport:  imgport import IMAGE --cloud alibaba --bucket B --name N (validation, digest, preflight, the VMDK
#             converted to qcow2 while uploading, 64 MiB parts, 8 in flight, ImportImage, wait, cleanup)
#
# Source: a 4 GiB VMDK (qemu-img's monolithicSparse) holding 1 GiB of data: the demo guest (examples/) at its start
# and 1 GiB of random data in 4 MiB pieces spread over the rest. Each tool runs RUNS times in turn (median reported);
# wall time is for the whole job, peak RSS is the largest of its steps (from /usr/bin/time). Then, unless SCALE=0,
# imgport imports a 4 GiB and a 1 TiB sparse raw each holding the same 2 GiB of data, to show that time and memory
# follow the data, not the virtual size.
#
# usage: scripts/bench-import.sh [WORKDIR]
#   env RUNS=3 IMGPORT=target/release/imgport DATA=folder for the emulator (default /dev/shm/...) SCALE=1
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
SCALE=${SCALE:-1}
WORK=${1:-$(mktemp -d /var/tmp/imgport-importbench.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
command -v qemu-img >/dev/null || { echo "qemu-img is required (scripts/install-peers.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is required (scripts/install-peers.sh)" >&2; exit 1; }
python3 -c "import oss2, alibabacloud_ecs20140526" || { echo "the Alibaba Python SDKs are required (scripts/install-peers.sh)" >&2; exit 1; }
if [ -z "${IMGPORT:-}" ]; then
    cargo build --release --quiet
    IMGPORT=$ROOT/target/release/imgport
fi

DATA=${DATA:-$(mktemp -d /dev/shm/imgport-importbench.XXXXXX)}
"$IMGPORT" emulator serve --listen 127.0.0.1:0 --data "$DATA" --json --quiet --import-seconds 0 --seed-import-role \
    >"$WORK/emulator.json" 2>"$WORK/emulator.log" &
SERVER=$!
cleanup() { kill -INT "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$WORK/emulator.json" ] && break; sleep 0.1; done
INFO=$(head -1 "$WORK/emulator.json")
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$INFO" "$1"; }
ENDPOINT=$(field oss_endpoint)
export IMGPORT_OSS_ENDPOINT=$ENDPOINT IMGPORT_ECS_ENDPOINT=$ENDPOINT IMGPORT_STS_ENDPOINT=$ENDPOINT \
    IMGPORT_RAM_ENDPOINT=$ENDPOINT
ALIBABA_CLOUD_ACCESS_KEY_ID=$(field access_key_id)
ALIBABA_CLOUD_ACCESS_KEY_SECRET=$(field access_key_secret)
export ALIBABA_CLOUD_ACCESS_KEY_ID ALIBABA_CLOUD_ACCESS_KEY_SECRET
unset ALIBABA_CLOUD_SECURITY_TOKEN ALIBABA_CLOUD_PROFILE || true
export XDG_STATE_HOME=$WORK/state XDG_DATA_HOME=$WORK/data
BUCKET=bench

# The sequence's upload and import, as a user scripts them with the official SDKs.
cat >"$WORK/sequence.py" <<'PY'
import os, sys, time
import oss2
from alibabacloud_ecs20140526.client import Client
from alibabacloud_ecs20140526 import models as m
from alibabacloud_tea_openapi import models as open_api_models

step, path, name = sys.argv[1], sys.argv[2], sys.argv[3]
url, ak, sk = os.environ["IMGPORT_OSS_ENDPOINT"], os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"], os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]
bucket = oss2.Bucket(oss2.AuthV4(ak, sk), url, "bench", region="cn-hangzhou", enable_crc=True)
key = f"seq/{name}.qcow2"
if step == "bucket":
    try:
        bucket.create_bucket()
    except oss2.exceptions.BucketAlreadyExists:
        pass
elif step == "upload":
    oss2.resumable_upload(bucket, key, path, multipart_threshold=64 << 20, part_size=64 << 20, num_threads=8,
                          store=oss2.ResumableStore(root=os.environ["XDG_STATE_HOME"]))
elif step == "import":
    ecs = Client(open_api_models.Config(access_key_id=ak, access_key_secret=sk, protocol="http",
                                        endpoint=url.split("://", 1)[-1], region_id="cn-hangzhou"))
    disk = m.ImportImageRequestDiskDeviceMapping(ossbucket="bench", ossobject=key, format="QCOW2", disk_image_size=4)
    r = ecs.import_image(m.ImportImageRequest(region_id="cn-hangzhou", image_name=name, platform="Debian",
                                              ostype="linux", architecture="x86_64", boot_mode="BIOS",
                                              disk_device_mapping=[disk]))
    image_id = r.body.image_id
    while True:
        req = m.DescribeImagesRequest(region_id="cn-hangzhou", image_id=image_id, status="ALL")
        img = ecs.describe_images(req).body.images.image[0]
        if img.status == "Available":
            break
        if img.status == "CreateFailed":
            sys.exit(f"{image_id} failed")
        time.sleep(1)
    bucket.delete_object(key)
PY
python3 "$WORK/sequence.py" bucket - -

# The source: the demo guest grown to 4 GiB, 1 GiB of random data in 4 MiB pieces after it, as a VMDK.
SRC=$WORK/source.vmdk
if [ ! -f "$SRC" ]; then
    echo "writing the 4 GiB source with 1 GiB of data ..." >&2
    qemu-img convert -O raw "$ROOT/examples/demo-debian12.qcow2" "$WORK/source.raw"
    truncate -s 4G "$WORK/source.raw"
    for i in $(seq 0 255); do
        head -c 4M /dev/urandom | dd of="$WORK/source.raw" bs=4M seek=$((64 + i * 3)) conv=notrunc status=none
    done
    qemu-img convert -O vmdk "$WORK/source.raw" "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
    rm -f "$WORK/source.raw"
fi

# Runs a command under /usr/bin/time; prints "seconds peak_rss_kib".
timed() {
    if ! /usr/bin/time -o "$WORK/time" -f '%e %M' "$@" >"$WORK/out" 2>"$WORK/err"; then
        echo "failed: $*" >&2; cat "$WORK/err" >&2; exit 1
    fi
    tail -1 "$WORK/time"
}

# One run of a tool; prints "seconds peak_rss_mib".
measure() { # tool run
    local name="bench-$1-$2" start end s kib peak=0
    sync
    start=$(date +%s.%N)
    case $1 in
    sequence)
        for step in convert upload import; do
            case $step in
            convert) read -r s kib < <(timed qemu-img convert -O qcow2 "$SRC" "$WORK/tmp.qcow2") ;;
            upload) read -r s kib < <(timed python3 "$WORK/sequence.py" upload "$WORK/tmp.qcow2" "$name") ;;
            import) read -r s kib < <(timed python3 "$WORK/sequence.py" import - "$name") ;;
            esac
            [ "$kib" -gt "$peak" ] && peak=$kib
        done
        rm -f "$WORK/tmp.qcow2"
        ;;
    imgport)
        read -r s peak < <(timed "$IMGPORT" import "$SRC" --cloud alibaba --region cn-hangzhou --bucket "$BUCKET" \
            --name "$name" --part-size 64M --concurrency 8 --json)
        ;;
    esac
    end=$(date +%s.%N)
    echo "$(echo "$end - $start" | bc -l) $((peak / 1024))"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "peers: $(qemu-img --version | head -1), oss2 $(python3 -c 'import oss2; print(oss2.__version__)'), emulator data in $DATA"
echo "source: 4 GiB VMDK holding 1 GiB; runs per tool: $RUNS (median, in turn)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A SECS RSS
for run in $(seq "$RUNS"); do
    for tool in sequence imgport; do
        read -r s mib < <(measure "$tool" "$run")
        SECS[$tool]+="$s "; RSS[$tool]+="$mib "
        echo "  run $run $tool: $s s, $mib MiB" >&2
    done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-9s | %8s | %9s | %10s |\n' tool "s" "RSS MiB" "imgport x"
printf '|%s|%s|%s|%s|\n' "-----------" "----------" "-----------" "------------"
seq_s=$(printf '%s\n' ${SECS[sequence]} | median)
for tool in sequence imgport; do
    s=$(printf '%s\n' ${SECS[$tool]} | median)
    mib=$(printf '%s\n' ${RSS[$tool]} | median)
    vs=-
    [ "$tool" = imgport ] && vs=$(printf '%.2f' "$(echo "$s / $seq_s" | bc -l)")
    printf '| %-9s | %8.2f | %9.0f | %10s |\n' "$tool" "$s" "$mib" "$vs"
done
echo "(imgport x: imgport's wall time over the sequence's; goal 0.6 or less. RSS: the largest of a tool's processes)"

if [ "$SCALE" = 1 ]; then
    echo
    echo "scale: the same 2 GiB of data (64 pieces of 32 MiB) in a 4 GiB and in a 1 TiB sparse raw"
    printf '| %-8s | %8s | %9s | %12s |\n' virtual "s" "RSS MiB" "sent MiB"
    printf '|%s|%s|%s|%s|\n' "----------" "----------" "-----------" "--------------"
    for size in 4G 1T; do
        raw=$WORK/scale-$size.raw
        qemu-img convert -O raw "$ROOT/examples/demo-debian12.qcow2" "$raw"
        total=$(numfmt --from=iec "$size")
        span=$(( (total - (1 << 30) - (32 << 20)) / 64 ))
        for p in $(seq 0 63); do
            head -c 32M /dev/urandom | dd of="$raw" bs=1M seek=$(( ((1 << 30) + p * span) >> 20 )) conv=notrunc status=none
        done
        truncate -s "$size" "$raw"
        read -r s kib < <(timed "$IMGPORT" import "$raw" --cloud alibaba --region cn-hangzhou --bucket "$BUCKET" \
            --name "scale-$size" --json)
        sent=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['upload_summary']['bytes'] >> 20)" "$WORK/out")
        printf '| %-8s | %8.2f | %9d | %12d |\n' "$size" "$s" $((kib / 1024)) "$sent"
        rm -f "$raw"
    done
fi
