"""Image families and DescribeImages' filters and fields, driven with Alibaba's official Python SDKs
(alibabacloud-ecs20140526, alibabacloud-ram20150501, oss2) against the emulator.

usage: ecs_families.py SCENARIO CONFIG_JSON
CONFIG_JSON: {"endpoint": "http://HOST:PORT", "ak": ..., "sk": ..., "account": ..., "qcow2": PATH, "t0": SECONDS}
The driver's creation_time fault rules give the first two ImportImage requests CreationTime t0 and the third
t0 - 3600; later imports take the server's clock (now, after t0).
Prints "ok SCENARIO" on success; raises on any mismatch.
"""
import time

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client as EcsClient

import sdk
from sdk import REGION, bucket, cfg, check, config, refused, scenario

SH = "cn-shanghai"
client = EcsClient(config())


def iso(t, seconds=True):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ" if seconds else "%Y-%m-%dT%H:%MZ", time.gmtime(t))


def import_image(name, obj="disk.qcow2", fmt="QCOW2", **kw):
    m = ecs.ImportImageRequestDiskDeviceMapping(ossbucket="fam", ossobject=obj, format=fmt)
    req = ecs.ImportImageRequest(image_name=name, region_id=REGION, architecture="x86_64", ostype="linux",
                                 platform="Ubuntu", disk_device_mapping=[m], **kw)
    return client.import_image(req).body.image_id


def images(**kw):
    return client.describe_images(ecs.DescribeImagesRequest(region_id=kw.pop("region_id", REGION), **kw)).body


def one(image_id, region=REGION):
    return sdk.one_image(client, image_id, region)


def wait_image(image_id, region=REGION, timeout=60):
    return sdk.wait_image(client, image_id, region, timeout)


def from_family(family, region=REGION):
    req = ecs.DescribeImageFromFamilyRequest(region_id=region, image_family=family)
    return client.describe_image_from_family(req).body.image


def modify(image_id, **kw):
    return client.modify_image_attribute(ecs.ModifyImageAttributeRequest(region_id=REGION, image_id=image_id, **kw))


if scenario == "families":
    t0 = cfg["t0"]
    b = bucket("fam")
    with open(cfg["qcow2"], "rb") as f:
        b.put_object("disk.qcow2", f.read())
    b.put_object("garbage.qcow2", b"this is not a disk image" * 1000)

    # --- DescribeImageFromFamily: the newest Available own image, by CreationTime -----------------------------
    # ImportImage documents no ImageFamily (SDK 7.11.8): an imported image joins a family by ModifyImageAttribute.
    fa, fb, fc = (import_image(n) for n in ("web-a", "web-b", "web-c"))
    img = from_family("web-app")
    check(img is None or img.image_id is None, "an empty family answered")
    done = [wait_image(i) for i in (fa, fb, fc)]
    check([i.image_family or "" for i in done] == [""] * 3, done)
    for i in (fa, fb, fc):
        modify(i, image_family="web-app")
    done = [one(i) for i in (fa, fb, fc)]
    check([i.status for i in done] == ["Available"] * 3, done)
    check([i.image_family for i in done] == ["web-app"] * 3, done)
    check([i.creation_time for i in done] == [iso(t0), iso(t0), iso(t0 - 3600)], [i.creation_time for i in done])
    # fa and fb have the same CreationTime: the later request (fb) wins; fc came last but is the oldest.
    got = from_family("web-app")
    check(got.image_id == fb and got.creation_time == iso(t0) and got.image_family == "web-app", got)
    check(got.status == "Available" and got.image_owner_alias == "self", got)
    modify(fb, status="Deprecated")
    check(from_family("web-app").image_id == fa, "with fb deprecated, fa (same time, earlier request) is newest")
    modify(fa, status="Deprecated")
    check(from_family("web-app").image_id == fc, "with fa and fb deprecated, only fc (the oldest) is left")
    modify(fc, status="Deprecated")
    empty = from_family("web-app")
    check(empty is None or empty.image_id is None, f"every image deprecated, yet {empty}")
    for i in (fa, fb, fc):
        modify(i, status="Available")
    check(from_family("web-app").image_id == fb, "back to Available: fb again")
    # An image still importing or one that failed is never the answer, even with a newer CreationTime.
    failed = import_image("web-failed", obj="garbage.qcow2")
    check(wait_image(failed).status == "CreateFailed", "the garbage import did not fail")
    modify(failed, image_family="web-app")
    check(one(failed).image_family == "web-app", "a CreateFailed image's family")
    check(from_family("web-app").image_id == fb, "a CreateFailed image answered")
    # A newer Available import (the server's clock, after t0) becomes the answer.
    fd = import_image("web-d")
    refused(lambda: modify(fd, image_family="web-app"), "InvalidStatus.ImageIsCreating", 403)
    check(wait_image(fd).status == "Available", "web-d")
    check(from_family("web-app").image_id == fb, "an image outside the family answered")
    modify(fd, image_family="web-app")
    check(from_family("web-app").image_id == fd, "the newest import is not the answer")
    modify(fd, status="Deprecated")
    check(from_family("web-app").image_id == fb, "a Deprecated image answered")
    # No such family, a public (acs:) family and a family of an image shared with us: an empty Image.
    for fam in ("no-such-family", "acs:ubuntu_22_04_x64", "partner-debian"):
        img = from_family(fam)
        check(img is None or img.image_id is None, f"{fam}: {img}")
    refused(lambda: from_family("web-app", region="xx-nowhere-1"), "InvalidRegionId.NotFound", 400)
    # A missing ImageFamily: the gateway's missing-parameter answer.
    refused(lambda: client.describe_image_from_family(ecs.DescribeImageFromFamilyRequest(region_id=REGION)),
            "MissingParameter", 400)

    # --- ImageFamily validation on ModifyImageAttribute ---------------------------------------------------------
    bad_families = ["aliyun-web", "ALIYUNweb", "acs:web", "Acs:web", "1web", "w", "w" * 129, "web/app", "web app",
                    "web-http://x", "web-https://x"]
    for fam in bad_families:
        refused(lambda: modify(fc, image_family=fam), "InvalidImageFamily.Malformed", 400)
        refused(lambda: modify(fc, image_family=fam, dry_run=True), "InvalidImageFamily.Malformed", 400)
    modify(fd, image_family="W" + "x" * 127)  # 128 characters, allowed
    check(one(fd).image_family == "W" + "x" * 127, "a 128-character family")
    check(one(fc).image_family == "web-app", "a refused ModifyImageAttribute changed the family")
    refused(lambda: modify(fc, image_family="batch.jobs:v2_x", dry_run=True), "DryRunOperation", 400)
    check(one(fc).image_family == "web-app", "a dry ModifyImageAttribute changed the family")
    modify(fc, image_family="batch.jobs:v2_x")
    check(one(fc).image_family == "batch.jobs:v2_x", "family not changed")
    check(from_family("batch.jobs:v2_x").image_id == fc, "fc is the only image of its new family")
    check(from_family("web-app").image_id == fb, "fc left web-app, fb is still the newest")

    # --- CopyImage: the copy keeps the source's family in the destination region ------------------------------
    cp = client.copy_image(ecs.CopyImageRequest(region_id=REGION, image_id=fb, destination_region_id=SH,
                                                destination_image_name="web-b-copy")).body.image_id
    img = from_family("web-app", region=SH)
    check(img is None or img.image_id is None, "a copy in flight answered")
    check(wait_image(cp, region=SH).image_family == "web-app", "the copy lost its family")
    check(from_family("web-app", region=SH).image_id == cp, "the finished copy is not its family's image in SH")
    check(from_family("web-app").image_id == fb, "the copy changed the source region's answer")

    print("ok families")

elif scenario == "describe":
    t0, account = cfg["t0"], int(cfg["account"])
    b = bucket("fam")
    with open(cfg["qcow2"], "rb") as f:
        b.put_object("disk.qcow2", f.read())
    # Two images at t0, one an hour earlier (the driver's fault rules), one declared QCOW2, one with no Format.
    nvme = ecs.ImportImageRequestFeatures(nvme_support="supported")
    da, db_ = import_image("d-a"), import_image("d-b", fmt=None)
    dc = import_image("d-c", features=nvme, resource_group_id="rg-acfmtest")
    for i in (da, db_, dc):
        check(wait_image(i).status == "Available", i)

    # DiskDeviceMappings.Format: the format the import read, declared or not.
    for i in (da, db_):
        maps = one(i).disk_device_mappings.disk_device_mapping
        check([m.format for m in maps] == ["QCOW2"], f"{i}: {[m.format for m in maps]}")

    # The fields the SDK models.
    img = one(da)
    check(img.usable is True and img.login_as_non_root_supported is False and img.supplier_name == "", img)
    check(img.features is not None and img.features.nvme_support == "unsupported", img.features)
    check(img.resource_group_id == "", img.resource_group_id)
    # What ImportImage declared: Features.NvmeSupport and ResourceGroupId.
    declared = one(dc)
    check(declared.features.nvme_support == "supported", declared.features)
    check(declared.resource_group_id == "rg-acfmtest", declared.resource_group_id)
    refused(lambda: import_image("d-x", features=ecs.ImportImageRequestFeatures(nvme_support="maybe")),
            "InvalidParameter.Features.NvmeSupport", 400)
    check(img.secure_boot_options is not None and img.secure_boot_options.secure_boot_support == "unsupported",
          img.secure_boot_options)
    check(img.image_owner_id == account and img.is_public is False and img.usage == "none", img)

    # Usage: "instance" when an instance's system disk came from the image.
    used = images(usage="instance", page_size=100).images.image
    check([i.image_id for i in used] == ["ubuntu_22_04_x64_20G_alibase_20240101.vhd"], [i.image_id for i in used])
    check(all(i.usage == "instance" for i in used), used)
    unused = images(usage="none", page_size=100).images.image
    check(unused and all(i.usage == "none" for i in unused), unused)
    check(da in {i.image_id for i in unused}, "d-a is not unused")
    stopped = [n for n in client.describe_instances(ecs.DescribeInstancesRequest(region_id=REGION)).body
               .instances.instance if n.status == "Stopped"][0]
    client.replace_system_disk(ecs.ReplaceSystemDiskRequest(instance_id=stopped.instance_id, image_id=da))
    check(one(da).usage == "instance", "an image an instance runs on is not in use")
    check(da in {i.image_id for i in images(usage="instance", page_size=100).images.image}, "Usage=instance")
    check(da not in {i.image_id for i in images(usage="none", page_size=100).images.image}, "Usage=none")
    refused(lambda: images(usage="sometimes"), "InvalidParameter.Usage", 400)

    # ImageOwnerId and IsPublic.
    mine = images(image_owner_id=account, page_size=100).images.image
    check(mine and all(i.image_owner_alias == "self" and i.image_owner_id == account for i in mine), mine)
    check({da, db_, dc} <= {i.image_id for i in mine}, "own images missing under ImageOwnerId")
    theirs = images(image_owner_id=9876543210987654, page_size=100).images.image
    check([i.image_id for i in theirs] == ["m-shared0partner000001"], theirs)
    check(images(image_owner_id=1111111111111111).total_count == 0, "an unknown owner has images")
    public = images(is_public=True, page_size=100).images.image
    check(public and all(i.image_owner_alias == "system" and i.is_public for i in public), public)
    private = images(is_public=False, page_size=100).images.image
    check(private and all(i.image_owner_alias != "system" and not i.is_public for i in private), private)

    # ShowExpired is accepted (the emulator has no expired images).
    check(images(show_expired=True, page_size=100).total_count == images(page_size=100).total_count, "ShowExpired")

    # Filter.N CreationStartTime / CreationEndTime, yyyy-MM-ddTHH:mmZ, both bounds inclusive.
    def window(start=None, end=None):
        f = []
        if start is not None:
            f.append(ecs.DescribeImagesRequestFilter(key="CreationStartTime", value=start))
        if end is not None:
            f.append(ecs.DescribeImagesRequestFilter(key="CreationEndTime", value=end))
        got = images(image_owner_alias="self", filter=f, page_size=100).images.image
        return sorted(i.image_id for i in got)

    check(window(iso(t0, False), iso(t0, False)) == sorted([da, db_]), "exactly t0")
    check(window(iso(t0 - 3600, False), iso(t0 - 60, False)) == [dc], "the hour before t0")
    check(window(start=iso(t0 - 3600, False)) == sorted([da, db_, dc]), "from t0 - 1h on")
    check(window(end=iso(t0 - 3601)) == [], "before any of them (seconds accepted)")
    check(window(start=iso(t0 + 60, False)) == [], "after all of them")
    refused(lambda: window(start="yesterday"), "InvalidParameter.Filter", 400)
    refused(lambda: images(filter=[ecs.DescribeImagesRequestFilter(key="Colour", value="blue")]),
            "InvalidParameter.Filter", 400)
    print("ok describe")

else:
    raise SystemExit(f"unknown scenario {scenario}")
