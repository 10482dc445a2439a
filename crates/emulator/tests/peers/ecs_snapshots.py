"""Snapshots as resources, CreateImage, and the copy rules, driven with Alibaba's official Python SDKs
(alibabacloud-ecs20140526, oss2) against the emulator.

usage: ecs_snapshots.py SCENARIO CONFIG_JSON
CONFIG_JSON: {"endpoint": "http://HOST:PORT", "ak": ..., "sk": ..., "qcow2": PATH}
The driver seeds the import role, imports take about a second and copies `copy_seconds` (3 s).
Scenarios: snapshots (DescribeSnapshots, DeleteSnapshot, snapshot tags, DeleteImage leaving snapshots),
create (CreateImage from an instance, a snapshot and disk mappings; Tag.N checks of ImportImage), copies
(IncorrectDestinationRegion, concurrent copies, the per-region queue, Encrypted/KMSKeyId, the copy's own snapshots,
DeleteImage of a copy's source, Usable). Prints "ok SCENARIO" on success; raises on any mismatch.
"""
import json
import time

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client as EcsClient

import sdk
from sdk import REGION, bucket, cfg, check, config, refused, scenario

SH = "cn-shanghai"
client = EcsClient(config())


def import_image(name, **kw):
    m = ecs.ImportImageRequestDiskDeviceMapping(ossbucket="snap", ossobject="disk.qcow2", format="QCOW2")
    req = ecs.ImportImageRequest(image_name=name, region_id=REGION, architecture="x86_64", ostype="linux",
                                 platform="Ubuntu", disk_device_mapping=[m], **kw)
    return client.import_image(req).body.image_id


def one(image_id, region=REGION):
    return sdk.one_image(client, image_id, region)


def named(name, region=REGION):
    body = client.describe_images(ecs.DescribeImagesRequest(region_id=region, image_name=name, status="ALL",
                                                            image_owner_alias="self", page_size=100)).body
    return [i for i in body.images.image if i.image_name == name]


def wait_image(image_id, region=REGION, timeout=60):
    return sdk.wait_image(client, image_id, region, timeout)


def snaps_of(img):
    return [m.snapshot_id for m in img.disk_device_mappings.disk_device_mapping]


def snapshots(region=REGION, **kw):
    return client.describe_snapshots(ecs.DescribeSnapshotsRequest(region_id=region, **kw)).body


def snapshot(sid, region=REGION):
    body = snapshots(region, snapshot_ids=json.dumps([sid]))
    check(body.total_count <= 1, body)
    return body.snapshots.snapshot[0] if body.total_count == 1 else None


def delete_snapshot(sid, **kw):
    return client.delete_snapshot(ecs.DeleteSnapshotRequest(snapshot_id=sid, **kw))


def delete_image(image_id, region=REGION, **kw):
    return client.delete_image(ecs.DeleteImageRequest(region_id=region, image_id=image_id, **kw))


def create(**kw):
    return client.create_image(ecs.CreateImageRequest(region_id=kw.pop("region_id", REGION), **kw)).body


def copy(image_id, name, dest=SH, **kw):
    return client.copy_image(ecs.CopyImageRequest(region_id=REGION, image_id=image_id, destination_region_id=dest,
                                                  destination_image_name=name, **kw)).body


def upload():
    b = bucket("snap")
    with open(cfg["qcow2"], "rb") as f:
        b.put_object("disk.qcow2", f.read())


if scenario == "snapshots":
    upload()
    a, b = import_image("snap-a"), import_image("snap-b")
    # No snapshot while importing: the image's disk has none yet.
    check(snaps_of(one(a)) == [""], snaps_of(one(a)))
    img_a, img_b = wait_image(a), wait_image(b)
    check(img_a.status == "Available" and img_b.status == "Available", (img_a, img_b))
    (sa,), (sb,) = snaps_of(img_a), snaps_of(img_b)
    check(sa.startswith("s-") and sb.startswith("s-") and sa != sb, (sa, sb))

    # DescribeSnapshots: SnapshotIds as a JSON array, with the fields the SDK models.
    s = snapshot(sa)
    check(s is not None and s.snapshot_id == sa and s.status == "accomplished" and s.progress == "100%", s)
    check(s.usage == "image" and s.source_disk_type == "system", s)
    check(s.source_disk_size == img_a.disk_device_mappings.disk_device_mapping[0].size, (s, img_a))
    check(s.source_disk_id.startswith("d-") and s.creation_time and s.encrypted is False, s)
    check(s.region_id == REGION and s.available is True, s)
    both = snapshots(snapshot_ids=json.dumps([sa, sb]))
    check(both.total_count == 2 and {x.snapshot_id for x in both.snapshots.snapshot} == {sa, sb}, both)
    check(snapshots(SH, snapshot_ids=json.dumps([sa])).total_count == 0, "a snapshot listed in another region")
    refused(lambda: snapshots(snapshot_ids="s-not-json"), "InvalidSnapshotIds.Malformed", 403)
    refused(lambda: snapshots(snapshot_ids=json.dumps([f"s-{n}" for n in range(101)])),
            "InvalidSnapshotIds.Malformed", 403)
    # Filters.
    mine = lambda **kw: {x.snapshot_id for x in snapshots(page_size=100, **kw).snapshots.snapshot}  # noqa: E731
    check({sa, sb} <= mine(status="accomplished") and {sa, sb} <= mine(status="all"), "Status")
    check(not {sa, sb} & mine(status="progressing"), "Status=progressing")
    check({sa, sb} <= mine(usage="image") and not {sa, sb} & mine(usage="none"), "Usage")
    check({sa, sb} <= mine(source_disk_type="System") and not {sa, sb} & mine(source_disk_type="data"),
          "SourceDiskType")
    check(mine(snapshot_type="user") >= {sa, sb} and not mine(snapshot_type="auto"), "SnapshotType")
    check(mine(disk_id=s.source_disk_id) == {sa}, "DiskId")
    refused(lambda: snapshots(status="done"), "InvalidStatus.NotFound", 404)
    refused(lambda: snapshots(usage="sometimes"), "InvalidUsage", 404)
    refused(lambda: snapshots(source_disk_type="root"), "InvalidSourceDiskType", 404)
    refused(lambda: snapshots(snapshot_type="nightly"), "InvalidSnapshotType.NotFound", 404)
    refused(lambda: snapshots(dry_run=True), "DryRunOperation", 400)

    # Paging: page numbers, and NextToken with MaxResults.
    total = snapshots().total_count
    check(total >= 2, total)
    pages = [snapshots(page_number=n, page_size=1) for n in range(1, total + 1)]
    check(all(p.total_count == total and len(p.snapshots.snapshot) == 1 for p in pages), pages)
    ids = [p.snapshots.snapshot[0].snapshot_id for p in pages]
    check(len(set(ids)) == total, ids)
    token, seen = None, []
    while True:
        page = snapshots(max_results=1, next_token=token)
        seen += [x.snapshot_id for x in page.snapshots.snapshot]
        token = page.next_token
        if not token:
            break
    check(seen == ids, (seen, ids))
    refused(lambda: snapshots(next_token="not-a-token"), "InvalidParameter.NextToken", 400)
    refused(lambda: snapshots(max_results=1000), "InvalidParameter.MaxResults", 400)

    # Tags on snapshots: TagResources / ListTagResources / UntagResources and DescribeSnapshots' Tag.N.
    def tag(ids, **kv):
        return client.tag_resources(ecs.TagResourcesRequest(
            region_id=REGION, resource_type="snapshot", resource_id=ids,
            tag=[ecs.TagResourcesRequestTag(key=k, value=v) for k, v in kv.items()]))

    tag([sa], env="prod", team="images")
    tag([sb], env="test")
    rows = client.list_tag_resources(ecs.ListTagResourcesRequest(
        region_id=REGION, resource_type="snapshot", resource_id=[sa, sb])).body.tag_resources.tag_resource
    got = sorted((r.resource_id, r.resource_type, r.tag_key, r.tag_value) for r in rows)
    check(got == sorted([(sa, "ALIYUN::ECS::SNAPSHOT", "env", "prod"), (sa, "ALIYUN::ECS::SNAPSHOT", "team", "images"),
                         (sb, "ALIYUN::ECS::SNAPSHOT", "env", "test")]), got)
    images_rows = client.list_tag_resources(ecs.ListTagResourcesRequest(
        region_id=REGION, resource_type="image", resource_id=[a, b])).body.tag_resources.tag_resource
    check(images_rows == [], "snapshot tags listed on images")
    check(mine(tag=[ecs.DescribeSnapshotsRequestTag(key="env", value="prod")]) == {sa}, "Tag.N key and value")
    check(mine(tag=[ecs.DescribeSnapshotsRequestTag(key="env")]) == {sa, sb}, "Tag.N key only")
    check(mine(tag=[ecs.DescribeSnapshotsRequestTag(key="env"), ecs.DescribeSnapshotsRequestTag(key="team")]) == {sa},
          "two Tag.N")
    check({t.tag_key: t.tag_value for t in snapshot(sa).tags.tag} == {"env": "prod", "team": "images"}, "Tags")
    refused(lambda: mine(tag=[ecs.DescribeSnapshotsRequestTag(value="prod")]), "InvalidTag.Mismatch", 400)
    refused(lambda: tag(["s-doesnotexist"], env="x"), "InvalidSnapshotId.NotFound", 404)
    refused(lambda: tag([sa], **{"acs:key": "x"}), "InvalidTagKey.Malformed", 400)
    client.untag_resources(ecs.UntagResourcesRequest(region_id=REGION, resource_type="snapshot", resource_id=[sa],
                                                     tag_key=["team"]))
    check({t.tag_key for t in snapshot(sa).tags.tag} == {"env"}, "UntagResources")
    check({t.tag_key for t in one(a).tags.tag} == set(), "snapshot tags landed on the image")

    # DeleteSnapshot: refused while an image uses the snapshot, Force or not.
    refused(lambda: delete_snapshot(sa), "SnapshotCreatedImage", 403)
    refused(lambda: delete_snapshot(sa, force=True), "SnapshotCreatedImage", 403)
    refused(lambda: client.delete_snapshot(ecs.DeleteSnapshotRequest()), "MissingParameter", 400)
    check(snapshot(sa) is not None, "a refused DeleteSnapshot deleted")
    # DeleteImage leaves the snapshot, now unused; then DeleteSnapshot removes it.
    delete_image(a)
    check(one(a) is None, "the image was not deleted")
    s = snapshot(sa)
    check(s is not None and s.usage == "none", s)
    check(sa in mine(usage="none") and sa not in mine(usage="image"), "Usage after DeleteImage")
    delete_snapshot(sa)
    check(snapshot(sa) is None, "DeleteSnapshot left the snapshot")
    # Documented: an unknown snapshot is ignored.
    delete_snapshot(sa)
    check(snapshot(sb).usage == "image", "the other snapshot changed")
    print("ok snapshots")

elif scenario == "create":
    upload()
    insts = client.describe_instances(ecs.DescribeInstancesRequest(region_id=REGION)).body.instances.instance
    running = next(n for n in insts if n.status == "Running")
    stopped = next(n for n in insts if n.status == "Stopped")

    # From an instance: only ImageId, not a task; Waiting/Creating, then Available.
    body = create(instance_id=running.instance_id, image_name="from-instance", description="made from an instance",
                  image_family="made-images", tag=[ecs.CreateImageRequestTag(key="made", value="instance")])
    check(set(body.to_map()) == {"ImageId", "RequestId"}, body.to_map())
    fi = body.image_id
    img = one(fi)
    check(img.status in ("Waiting", "Creating") and img.usable is False and snaps_of(img) == [""], img)
    tasks = client.describe_tasks(ecs.DescribeTasksRequest(region_id=REGION, page_size=100)).body.task_set.task
    check(all(t.resource_id != fi for t in tasks), tasks)
    refused(lambda: delete_image(fi), "ImageIsCreating", 403)
    img = wait_image(fi)
    check(img.status == "Available" and img.usable is True and not img.is_copied, img)
    check(img.image_family == "made-images" and img.description == "made from an instance", img)
    check(img.platform == "Ubuntu" and img.architecture == "x86_64" and img.image_owner_alias == "self", img)
    check({t.tag_key: t.tag_value for t in img.tags.tag} == {"made": "instance"}, img.tags)
    maps = img.disk_device_mappings.disk_device_mapping
    check(len(maps) == 1 and maps[0].type == "system" and maps[0].size == "40", maps)
    (sys_snap,) = snaps_of(img)
    s = snapshot(sys_snap)
    check(s is not None and s.usage == "image" and s.source_disk_type == "system" and s.source_disk_size == "40", s)
    check({x.snapshot_id for x in snapshots(instance_id=running.instance_id).snapshots.snapshot} == {sys_snap},
          "InstanceId filter")
    # A stopped instance serves too.
    st = create(instance_id=stopped.instance_id, image_name="from-stopped").image_id
    check(wait_image(st).status == "Available", "from a stopped instance")

    # From a snapshot: the image uses it, no new snapshot.
    before = snapshots().total_count
    fs = create(snapshot_id=sys_snap, image_name="from-snapshot", platform="CentOS").image_id
    img = wait_image(fs)
    check(img.status == "Available" and snaps_of(img) == [sys_snap] and img.platform == "CentOS", img)
    check(snapshots().total_count == before, "CreateImage from a snapshot made a snapshot")

    # From disk mappings: a system disk snapshot and an empty data disk.
    dm = ecs.CreateImageRequestDiskDeviceMapping
    fm = create(image_name="from-mappings", disk_device_mapping=[
        dm(disk_type="data", size=30), dm(snapshot_id=sys_snap, size=50)]).image_id
    img = wait_image(fm)
    maps = img.disk_device_mappings.disk_device_mapping
    check([(m.device, m.type, m.size) for m in maps] == [("/dev/xvda", "system", "50"), ("/dev/xvdb", "data", "30")],
          maps)
    check(maps[0].snapshot_id == sys_snap and maps[1].snapshot_id.startswith("s-"), maps)
    data_snap = maps[1].snapshot_id
    d = snapshot(data_snap)
    check(d is not None and d.source_disk_type == "data" and d.source_disk_size == "30", d)
    # Deleting the images frees the snapshot only when no image uses it any more.
    refused(lambda: delete_snapshot(sys_snap), "SnapshotCreatedImage", 403)

    # Refusals, each changing nothing.
    refused(lambda: create(image_name="nothing"), "MissingParameter", 400)
    refused(lambda: create(instance_id="i-doesnotexist"), "InvalidInstanceId.NotFound", 404)
    refused(lambda: create(snapshot_id="s-doesnotexist"), "InvalidSnapshotId.NotFound", 404)
    refused(lambda: create(snapshot_id=data_snap), "OperationDenied", 403)
    refused(lambda: create(disk_device_mapping=[dm(snapshot_id="s-doesnotexist")]), "InvalidSnapshotId.NotFound", 404)
    refused(lambda: create(disk_device_mapping=[dm(snapshot_id=sys_snap), dm(snapshot_id=sys_snap, disk_type="system")]),
            "OperationDenied", 400)
    refused(lambda: create(disk_device_mapping=[dm(snapshot_id=data_snap)]), "OperationDenied", 400)
    refused(lambda: create(disk_device_mapping=[dm(snapshot_id=sys_snap, size=10)]), "InvalidSize.ValueNotSupported",
            400)
    refused(lambda: create(disk_device_mapping=[dm(snapshot_id=sys_snap, device="/dev/sda")]),
            "InvalidDevice.Malformed", 400)
    refused(lambda: create(disk_device_mapping=[dm(snapshot_id=sys_snap, device="/dev/xvdc"),
                                                dm(size=20, device="/dev/xvdc")]), "InvalidDevice.InUse", 400)
    refused(lambda: create(disk_device_mapping=[dm(snapshot_id=sys_snap, disk_type="root")]),
            "InvalidDiskType.ValueNotSupported", 400)
    refused(lambda: create(snapshot_id=sys_snap, image_name="from-instance"), "InvalidImageName.Duplicated", 400)
    refused(lambda: create(snapshot_id=sys_snap, image_name="aliyun-image"), "InvalidImageName.Malformed", 400)
    refused(lambda: create(snapshot_id=sys_snap, image_family="acs:mine"), "InvalidImageFamily.Malformed", 400)
    refused(lambda: create(snapshot_id=sys_snap, platform="Plan9"), "InvalidPlatform.Malformed", 400)
    tg = ecs.CreateImageRequestTag
    refused(lambda: create(snapshot_id=sys_snap, image_name="dup-tags", tag=[tg(key="k", value="1"), tg(key="k")]),
            "Duplicate.TagKey", 400)
    refused(lambda: create(snapshot_id=sys_snap, image_name="many-tags", tag=[tg(key=f"k{n}") for n in range(21)]),
            "QuotaExceed.Tags", 403)
    refused(lambda: create(snapshot_id=sys_snap, image_name="bad-tag", tag=[tg(key="aliyun-key")]),
            "InvalidTagKey.Malformed", 400)
    refused(lambda: create(snapshot_id=sys_snap, image_name="dry-create", dry_run=True), "DryRunOperation", 400)
    for n in ("nothing", "dup-tags", "many-tags", "bad-tag", "dry-create"):
        check(named(n) == [], f"a refused CreateImage made {n}")

    # ClientToken: the same request answers the same image, other parameters are refused.
    c1 = create(snapshot_id=sys_snap, image_name="idem-create", client_token="create-token").image_id
    c2 = create(snapshot_id=sys_snap, image_name="idem-create", client_token="create-token").image_id
    check(c1 == c2 and len(named("idem-create")) == 1, (c1, c2))
    refused(lambda: create(snapshot_id=sys_snap, image_name="idem-other", client_token="create-token"),
            "IdempotentParameterMismatch", 400)
    check(wait_image(c1).status == "Available", "idempotent CreateImage")

    # Tag.N of ImportImage is checked before anything is created.
    it = ecs.ImportImageRequestTag
    refused(lambda: import_image("imp-dup", tag=[it(key="k", value="1"), it(key="k", value="2")]),
            "TagKey.Duplication", 400)
    refused(lambda: import_image("imp-many", tag=[it(key=f"k{n}") for n in range(21)]), "InvalidTagCount", 400)
    refused(lambda: import_image("imp-bad", tag=[it(key="acs:k")]), "InvalidTagKey.Malformed", 400)
    refused(lambda: import_image("imp-badv", tag=[it(key="k", value="http://x")]), "InvalidTagValue.Malformed", 400)
    for n in ("imp-dup", "imp-many", "imp-bad", "imp-badv"):
        check(named(n) == [], f"a refused ImportImage made {n}")
    ok = import_image("imp-tags", tag=[it(key="a", value="1"), it(key="b")])
    check({t.tag_key: t.tag_value for t in one(ok).tags.tag} == {"a": "1", "b": ""}, "ImportImage tags")
    check(wait_image(ok).status == "Available", "tagged import")
    print("ok create")

elif scenario == "copies":
    upload()
    x, y = import_image("copy-x"), import_image("copy-y")
    img_x, img_y = wait_image(x), wait_image(y)
    (sx,) = snaps_of(img_x)

    # Into the same region: 403 IncorrectDestinationRegion.
    refused(lambda: copy(x, "same-region", dest=REGION), "IncorrectDestinationRegion", 403)
    check(named("same-region") == [], "a refused copy was made")
    # KMSKeyId needs Encrypted=true; Encrypted must be a boolean; Tag.N is checked.
    refused(lambda: copy(x, "kms-only", kmskey_id="key-1"), "InvalidParameter.EncryptedIllegal", 400)
    refused(lambda: copy(x, "kms-false", kmskey_id="key-1", encrypted=False), "InvalidParameter.EncryptedIllegal", 400)
    ct = ecs.CopyImageRequestTag
    refused(lambda: copy(x, "dup-tags", tag=[ct(key="k"), ct(key="k")]), "TagKey.Duplication", 400)
    refused(lambda: copy(x, "bad-tags", tag=[ct(key="aliyun:k")]), "InvalidTagKey.Malformed", 400)
    for n in ("kms-only", "kms-false", "dup-tags", "bad-tags"):
        check(named(n, SH) == [], f"a refused copy made {n}")

    # Two copies into one region: the second waits while the first is Creating.
    cx = copy(x, "x-copy", encrypted=True, kmskey_id="key-1", tag=[ct(key="copied", value="yes")]).image_id
    cy = copy(y, "y-copy").image_id
    # The same image cannot be copied again into the same region while its copy is in flight.
    refused(lambda: copy(x, "x-copy-again"), "OperationDenied.ImageCopyConflict", 400)
    check(named("x-copy-again", SH) == [], "a conflicting copy was made")
    # The source of a copy in flight is not deleted without Force.
    refused(lambda: delete_image(x), "OperationDenied.ImageCopying", 403)
    check(one(x).status == "Available", "the refused DeleteImage changed the source")
    held = 0
    deadline = time.time() + 30
    while time.time() < deadline:
        first, second = one(cx, SH), one(cy, SH)
        if first.status == "Creating":
            check(second.status == "Waiting" and second.progress == "0%", (first.status, second.status))
            check(first.usable is False and snaps_of(first) == [""], first)
            held += 1
        if first.status in ("Available", "CreateFailed"):
            break
        time.sleep(0.1)
    check(held >= 3, f"the first copy was seen Creating {held} times")
    first = wait_image(cx, SH)
    second = wait_image(cy, SH)
    check(first.status == "Available" and second.status == "Available", (first, second))

    # The copy's own snapshot in the destination region, encrypted with the key given.
    (cs,) = snaps_of(first)
    check(cs.startswith("s-") and cs != sx, (cs, sx))
    maps = first.disk_device_mappings.disk_device_mapping
    check(maps[0].encrypted is True, maps)
    check(second.disk_device_mappings.disk_device_mapping[0].encrypted is False, second)
    check({t.tag_key: t.tag_value for t in first.tags.tag} == {"copied": "yes"}, first.tags)
    s = snapshot(cs, SH)
    check(s is not None and s.region_id == SH and s.encrypted is True and s.kmskey_id == "key-1", s)
    check(s.source_snapshot_id == sx and s.source_region_id == REGION and s.usage == "image", s)
    check(snapshot(cs) is None, "the copy's snapshot is listed in the source region")
    check(snaps_of(one(x)) == [sx], "the source's snapshot changed")
    check(snapshots(SH, encrypted=True, snapshot_ids=json.dumps([cs, snaps_of(second)[0]])).total_count == 1,
          "Encrypted filter")
    # An image with encrypted snapshots is copied only encrypted.
    refused(lambda: client.copy_image(ecs.CopyImageRequest(region_id=SH, image_id=cx, destination_region_id=REGION,
                                                           destination_image_name="back")),
            "OperationDeined.EncryptedSnapshot", 403)
    back = client.copy_image(ecs.CopyImageRequest(region_id=SH, image_id=cx, destination_region_id=REGION,
                                                  destination_image_name="back", encrypted=True)).body.image_id
    check(wait_image(back).status == "Available", "an encrypted copy back")

    # Force deletes the source of a copy in flight; the copy then fails and the source's snapshot stays.
    (sy,) = snaps_of(img_y)
    cy2 = copy(y, "y-copy-2").image_id
    refused(lambda: delete_image(y), "OperationDenied.ImageCopying", 403)
    delete_image(y, force=True)
    check(one(y) is None, "Force did not delete the source")
    check(wait_image(cy2, SH).status == "CreateFailed", "a copy of a deleted source")
    s = snapshot(sy)
    check(s is not None and s.usage == "none", s)
    delete_snapshot(sy)
    check(snapshot(sy) is None, "DeleteSnapshot of a deleted image's snapshot")
    print("ok copies")

else:
    raise SystemExit(f"unknown scenario {scenario}")
