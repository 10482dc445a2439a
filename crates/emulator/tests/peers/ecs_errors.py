"""Error codes and import timing of the emulator's ECS and RAM APIs, driven with Alibaba's official Python SDKs
(alibabacloud-ecs20140526, alibabacloud-ram20150501) and oss2: for each behaviour the request, the documented
answer (code and HTTP status) and the state afterwards.

usage: ecs_errors.py SCENARIO CONFIG_JSON
CONFIG_JSON: {"endpoint": "http://HOST:PORT", "ak": ..., "sk": ..., "admin_secret": ..., "qcow2": PATH,
"vhd": PATH (a fixed VHD whose size is not a whole MiB)}
Scenarios: "errors" (MissingParameter, Platform, InvalidOSSObject.NeedRestore, InvalidVHDImage.IncorrectSize,
IdempotentParameterMismatch for ImportImage and CopyImage) and "stall" (a `stall` fault holds an import in
Creating until the fault is cleared through the admin API; a `task_finishes_early` fault reports the task Finished
while its image is still Creating).
Prints "ok SCENARIO" on success; raises on any mismatch.
"""
import json
import time
import urllib.request

import oss2
from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_ram20150501 import models as ram
from alibabacloud_ram20150501.client import Client as RamClient

import sdk
from sdk import ALL_STATUSES, REGION, ak, bucket, cfg, check, config, refused, scenario, sk, url

DEST = "cn-shanghai"


ecs_client = EcsClient(config())
ram_client = RamClient(config())


def import_request(name, bkt, obj, fmt="QCOW2", **kw):
    kw = {"architecture": "x86_64", "ostype": "linux", "platform": "Ubuntu", "region_id": REGION, **kw}
    m = ecs.ImportImageRequestDiskDeviceMapping(ossbucket=bkt, ossobject=obj, format=fmt)
    return ecs.ImportImageRequest(image_name=name, disk_device_mapping=[m], **kw)


def import_image(name, bkt, obj, fmt="QCOW2", **kw):
    return ecs_client.import_image(import_request(name, bkt, obj, fmt, **kw)).body


def images(**kw):
    kw = {"region_id": REGION, "status": ALL_STATUSES, **kw}
    return ecs_client.describe_images(ecs.DescribeImagesRequest(**kw)).body


def named(name, region=REGION):
    return images(region_id=region, image_name=name).images.image


def wait_image(image_id, region=REGION, timeout=60):
    return sdk.wait_image(ecs_client, image_id, region, timeout)


def task_of(task_id):
    return ecs_client.describe_task_attribute(ecs.DescribeTaskAttributeRequest(region_id=REGION, task_id=task_id)).body


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/_emulator/{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {cfg['admin_secret']}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


if scenario == "errors":
    b = bucket("errors")
    with open(cfg["qcow2"], "rb") as f:
        b.put_object("disk.qcow2", f.read())
    with open(cfg["vhd"], "rb") as f:
        b.put_object("odd.vhd", f.read())

    # An absent required parameter: 400 MissingParameter, the message naming it (ECS and RAM alike).
    e = refused(lambda: ecs_client.delete_image(ecs.DeleteImageRequest(region_id=REGION)), "MissingParameter", 400)
    check('An input parameter "ImageId" that is mandatory' in e.message, e.message)
    e = refused(lambda: ecs_client.describe_images(ecs.DescribeImagesRequest()), "MissingParameter", 400)
    check("RegionId" in e.message, e.message)
    e = refused(lambda: ram_client.get_role(ram.GetRoleRequest()), "MissingParameter", 400)
    check("RoleName" in e.message, e.message)
    e = refused(lambda: ecs_client.import_image(ecs.ImportImageRequest(region_id=REGION, image_name="no-disk")),
                     "MissingParameter", 400)
    check("DiskDeviceMapping" in e.message, e.message)
    check(named("no-disk") == [], "an import without disks created an image")

    # Platform must be one of ImportImage's documented values; nothing is created otherwise.
    refused(lambda: import_image("bad-platform", "errors", "disk.qcow2", platform="Windows 95"),
                 "InvalidPlatform.Malformed", 400)
    refused(lambda: import_image("bad-platform", "errors", "disk.qcow2", platform="Plan9"),
                 "InvalidPlatform.Malformed", 400)
    check(named("bad-platform") == [], "a refused platform created an image")
    # Documented values pass, whatever their case (DryRun: validated, nothing created).
    for p in ("Rocky Linux", "customized linux", "Fedora CoreOS"):
        refused(lambda: import_image("good-platform", "errors", "disk.qcow2", platform=p, dry_run=True),
                     "DryRunOperation", 400)
    refused(lambda: import_image("win", "errors", "disk.qcow2", ostype="windows", platform="Windows Server 2022",
                                      dry_run=True), "DryRunOperation", 400)

    # An Archive-class object that was never restored (the emulator has no RestoreObject): NeedRestore.
    b.put_object("archived.qcow2", open(cfg["qcow2"], "rb").read(), headers={"x-oss-storage-class": "Archive"})
    check(b.head_object("archived.qcow2").headers.get("x-oss-storage-class") == "Archive", "storage class kept")
    e = refused(lambda: import_image("archived", "errors", "archived.qcow2"), "InvalidOSSObject.NeedRestore", 400)
    check("need restore first" in e.message, e.message)
    check(named("archived") == [], "an archived object was imported")
    # A multipart upload initiated with a cold-archive class gives an object of that class, refused likewise.
    up = b.init_multipart_upload("cold.qcow2", headers={"x-oss-storage-class": "ColdArchive"}).upload_id
    part = b.upload_part("cold.qcow2", up, 1, open(cfg["qcow2"], "rb").read())
    b.complete_multipart_upload("cold.qcow2", up, [oss2.models.PartInfo(1, part.etag)])
    check(b.head_object("cold.qcow2").headers.get("x-oss-storage-class") == "ColdArchive", "cold class kept")
    refused(lambda: import_image("cold", "errors", "cold.qcow2"), "InvalidOSSObject.NeedRestore", 400)
    # The same data in the IA class imports (only archive classes need restoring): checked by DryRun.
    b.put_object("ia.qcow2", open(cfg["qcow2"], "rb").read(), headers={"x-oss-storage-class": "IA"})
    refused(lambda: import_image("ia", "errors", "ia.qcow2", dry_run=True), "DryRunOperation", 400)

    # A VHD whose virtual size is not a whole MiB: 403 InvalidVHDImage.IncorrectSize at once (ImportImage's error
    # table), nothing created.
    refused(lambda: import_image("odd-vhd", "errors", "odd.vhd", fmt="VHD"), "InvalidVHDImage.IncorrectSize", 403)
    check(named("odd-vhd") == [], "a refused VHD created an image")

    # ClientToken: the same request again answers the same image; other parameters with the token are refused.
    first = import_image("idem", "errors", "disk.qcow2", client_token="import-token-1", description="first")
    again = import_image("idem", "errors", "disk.qcow2", client_token="import-token-1", description="first")
    check((again.image_id, again.task_id) == (first.image_id, first.task_id), f"{again} != {first}")
    refused(lambda: import_image("idem", "errors", "disk.qcow2", client_token="import-token-1",
                                      description="second"), "IdempotentParameterMismatch", 400)
    refused(lambda: import_image("idem-other", "errors", "disk.qcow2", client_token="import-token-1",
                                      description="first"), "IdempotentParameterMismatch", 400)
    check([i.image_id for i in named("idem")] == [first.image_id], "one image for one token")
    check(named("idem-other") == [], "a mismatched token created an image")
    check(wait_image(first.image_id).status == "Available", "the import completes")
    check(named("idem")[0].description == "first", "the mismatched request changed nothing")

    def copy(token, name):
        return ecs_client.copy_image(ecs.CopyImageRequest(
            region_id=REGION, image_id=first.image_id, destination_region_id=DEST, destination_image_name=name,
            client_token=token)).body

    c1 = copy("copy-token-1", "idem-copy")
    c2 = copy("copy-token-1", "idem-copy")
    check(c1.image_id == c2.image_id, f"{c1.image_id} != {c2.image_id}")
    refused(lambda: copy("copy-token-1", "idem-copy-other"), "IdempotentParameterMismatch", 400)
    check(named("idem-copy-other", DEST) == [], "a mismatched copy token created an image")
    check([i.image_id for i in named("idem-copy", DEST)] == [c1.image_id], "one copy for one token")
    check(wait_image(c1.image_id, DEST).status == "Available", "the copy completes")
    print("ok errors")

elif scenario == "stall":
    b = bucket("stall")
    with open(cfg["qcow2"], "rb") as f:
        b.put_object("disk.qcow2", f.read())
    # One import stalls while the rule stays configured.
    check(admin("PUT", "faults", {"rules": [{"operation": "ImportImage", "kind": "stall", "times": 1}]}) == 200,
          "faults set")
    stalled = import_image("stalled", "stall", "disk.qcow2")
    # The emulator runs with import_seconds = 1: well past it, the image is still Creating below 100%.
    deadline = time.time() + 4
    seen = set()
    while time.time() < deadline:
        img = images(image_id=stalled.image_id).images.image[0]
        seen.add((img.status, img.progress))
        time.sleep(0.2)
    img = images(image_id=stalled.image_id).images.image[0]
    check(img.status == "Creating" and int(str(img.progress).rstrip("%")) < 100, f"not held in Creating: {img.status} {img.progress}")
    check(all(s in ("Waiting", "Creating") for s, _ in seen), f"{seen}")
    t = task_of(stalled.task_id)
    check(t.task_status == "Processing", f"task {t.task_status}")
    # Another import (the rule hit once only) goes through meanwhile.
    other = import_image("not-stalled", "stall", "disk.qcow2")
    check(wait_image(other.image_id).status == "Available", "the second import completes")
    check(images(image_id=stalled.image_id).images.image[0].status == "Creating", "still stalled")
    # Clearing the fault releases it.
    check(admin("DELETE", "faults") == 200, "faults cleared")
    check(wait_image(stalled.image_id, timeout=30).status == "Available", "the stalled import completes")
    check(task_of(stalled.task_id).task_status == "Finished", "task finished")

    # A stall for a given number of seconds ends by itself; a stalled import can be cancelled.
    check(admin("PUT", "faults", {"rules": [{"operation": "ImportImage", "kind": "stall", "seconds": 3,
                                             "times": 1}]}) == 200, "faults set")
    start = time.time()
    timed = import_image("timed", "stall", "disk.qcow2")
    check(wait_image(timed.image_id, timeout=30).status == "Available", "the timed stall completes")
    check(time.time() - start >= 3, f"finished after {time.time() - start:.1f}s, before the stall's 3 s")
    check(admin("PUT", "faults", {"rules": [{"operation": "ImportImage", "kind": "stall", "times": 1}]}) == 200,
          "faults set")
    cancelled = import_image("cancelled", "stall", "disk.qcow2")
    time.sleep(1.5)
    ecs_client.cancel_task(ecs.CancelTaskRequest(region_id=REGION, task_id=cancelled.task_id))
    check(task_of(cancelled.task_id).task_status == "Deleted", "task cancelled")
    check(named("cancelled") == [], "a cancelled import leaves no image")

    # A task that finishes early: Finished at 100% while its image is still Creating, for 3 s; then Available.
    check(admin("PUT", "faults", {"rules": [{"operation": "ImportImage", "kind": "task_finishes_early",
                                             "seconds": 3, "times": 1}]}) == 200, "faults set")
    early = import_image("early", "stall", "disk.qcow2")
    deadline = time.time() + 30
    while task_of(early.task_id).task_status != "Finished":
        check(time.time() < deadline, "the task never finished")
        time.sleep(0.1)
    finished_at = time.time()
    t = task_of(early.task_id)
    check(t.task_process == "100%" and t.finished_time, f"task {t.task_process} {t.finished_time}")
    img = images(image_id=early.image_id).images.image[0]
    check(img.status == "Creating", f"the image is {img.status} once its task finished early")
    refused(lambda: ecs_client.cancel_task(ecs.CancelTaskRequest(region_id=REGION, task_id=early.task_id)),
            "InvalidTaskId.IncorrectTaskStatus", 403)
    check(wait_image(early.image_id, timeout=30).status == "Available", "the image becomes Available")
    check(time.time() - finished_at >= 2.5, f"Available {time.time() - finished_at:.1f}s after its task finished")
    check(task_of(early.task_id).finished_time == t.finished_time, "the task keeps the time it finished")
    admin("DELETE", "faults")
    print("ok stall")

else:
    raise SystemExit(f"unknown scenario {scenario}")
