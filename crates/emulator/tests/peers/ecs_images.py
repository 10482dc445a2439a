"""Drives the emulator's ECS, RAM and STS APIs with Alibaba's official Python SDKs (alibabacloud-ecs20140526,
alibabacloud-ram20150501, alibabacloud-sts20150401) and uploads with oss2, checking every answer.

usage: ecs_images.py SCENARIO CONFIG_JSON
CONFIG_JSON: {"endpoint": "http://HOST:PORT", "ak": ..., "sk": ..., "qcow2": PATH, "vhd": PATH (odd size), ...}
(import-rules also takes "good", "blank", "signature_only", "garbage", "short_vhd", "full_vhd"; lifecycle takes "t0",
the CreationTime the driver's creation_time fault rules give the first two imports).
Prints "ok SCENARIO" on success; raises on any mismatch.
"""
import json
import time

import oss2
from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_ram20150501 import models as ram
from alibabacloud_ram20150501.client import Client as RamClient
from alibabacloud_sts20150401 import models as sts
from alibabacloud_sts20150401.client import Client as StsClient

from sdk import ALL_STATUSES, REGION, ak, bucket, cfg, check, config, refused, scenario, sk


ecs_client = EcsClient(config())
ram_client = RamClient(config())
sts_client = StsClient(config())


def mapping(bkt, obj, fmt="QCOW2", size=None):
    return ecs.ImportImageRequestDiskDeviceMapping(ossbucket=bkt, ossobject=obj, format=fmt, disk_image_size=size)


def import_image(name, bkt, obj, fmt="QCOW2", size=None, **kw):
    kw = {"architecture": "x86_64", "ostype": "linux", "platform": "Ubuntu", "region_id": REGION, **kw}
    req = ecs.ImportImageRequest(image_name=name, disk_device_mapping=[mapping(bkt, obj, fmt, size)], **kw)
    return ecs_client.import_image(req).body


def images(**kw):
    return ecs_client.describe_images(ecs.DescribeImagesRequest(region_id=kw.pop("region_id", REGION), **kw)).body


def wait_image(image_id, region=REGION, timeout=60):
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = images(region_id=region, image_id=image_id, status=ALL_STATUSES)
        check(body.total_count == 1, f"{image_id} not listed: {body.total_count}")
        img = body.images.image[0]
        seen.append((img.status, img.progress))
        if img.status in ("Available", "CreateFailed"):
            return img, seen
        time.sleep(0.1)
    raise AssertionError(f"{image_id} still {seen[-1]} after {timeout}s")


def task_of(task_id):
    return ecs_client.describe_task_attribute(ecs.DescribeTaskAttributeRequest(region_id=REGION, task_id=task_id)).body


def ensure_role():
    try:
        ram_client.get_role(ram.GetRoleRequest(role_name="AliyunECSImageImportDefaultRole"))
        return
    except Exception:  # noqa: BLE001
        pass
    trust = json.dumps({"Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow",
                                       "Principal": {"Service": ["ecs.aliyuncs.com"]}}], "Version": "1"})
    ram_client.create_role(ram.CreateRoleRequest(role_name="AliyunECSImageImportDefaultRole",
                                                 assume_role_policy_document=trust))
    ram_client.attach_policy_to_role(ram.AttachPolicyToRoleRequest(
        policy_type="System", policy_name="AliyunECSImageImportRolePolicy", role_name="AliyunECSImageImportDefaultRole"))


if scenario == "images":
    b = bucket("images")
    with open(cfg["qcow2"], "rb") as f:
        b.put_object("disk.qcow2", f.read())
    b.put_object("garbage.qcow2", b"this is not a disk image" * 1000)
    with open(cfg["vhd"], "rb") as f:
        b.put_object("odd.vhd", f.read())

    # No import role yet.
    e = refused(lambda: import_image("first", "images", "disk.qcow2"), "NoSetRoletoECSServiceAcount")
    check(e.statusCode == 403, f"status {e.statusCode}")
    refused(lambda: ram_client.get_role(ram.GetRoleRequest(role_name="AliyunECSImageImportDefaultRole")),
                 "EntityNotExist.Role")
    trust = json.dumps({"Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow",
                                       "Principal": {"Service": ["ecs.aliyuncs.com"]}}], "Version": "1"})
    role = ram_client.create_role(ram.CreateRoleRequest(role_name="AliyunECSImageImportDefaultRole",
                                                        assume_role_policy_document=trust)).body.role
    check(role.arn.endswith(":role/aliyunecsimageimportdefaultrole"), role.arn)
    refused(lambda: ram_client.create_role(ram.CreateRoleRequest(
        role_name="AliyunECSImageImportDefaultRole", assume_role_policy_document=trust)), "EntityAlreadyExists.Role")
    # The role alone is not enough: the policy must be attached.
    refused(lambda: import_image("first", "images", "disk.qcow2"), "NoSetRoletoECSServiceAcount")
    ram_client.attach_policy_to_role(ram.AttachPolicyToRoleRequest(
        policy_type="System", policy_name="AliyunECSImageImportRolePolicy", role_name="AliyunECSImageImportDefaultRole"))
    pols = ram_client.list_policies_for_role(
        ram.ListPoliciesForRoleRequest(role_name="AliyunECSImageImportDefaultRole")).body.policies.policy
    check([p.policy_name for p in pols] == ["AliyunECSImageImportRolePolicy"], pols)
    got = ram_client.get_role(ram.GetRoleRequest(role_name="AliyunECSImageImportDefaultRole")).body.role
    check("ecs.aliyuncs.com" in got.assume_role_policy_document, got.assume_role_policy_document)

    # Errors checked before anything is queued.
    # Codes and statuses as Alibaba documents them for ImportImage.
    e = refused(lambda: import_image("nope", "images", "missing.qcow2"), "InvalidOSSObject.NotFound")
    check(e.statusCode == 400, f"status {e.statusCode}")
    refused(lambda: import_image("nope", "no-such-bucket", "disk.qcow2"), "InvalidOSSBucket.NotFound")
    e = refused(lambda: import_image("nope", "images", "disk.qcow2", region_id="xx-nowhere-1"),
                     "InvalidRegionId.NotFound")
    check(e.statusCode == 400, f"status {e.statusCode}")
    refused(lambda: import_image("nope", "images", "disk.qcow2", platform="Windows Server 2022"),
                 "InvalidPlatform.Malformed")
    refused(lambda: import_image("nope", "images", "disk.qcow2", architecture="sparc"),
                 "InvalidArchitecture.Malformed")
    refused(lambda: import_image("nope", "images", "disk.qcow2", ostype="plan9"), "InvalidOSType.Malformed")
    refused(lambda: import_image("nope", "images", "disk.qcow2", boot_mode="Legacy"), "InvalidBootMode.Malformed")
    refused(lambda: import_image("nope", "images", "disk.qcow2", license_type="Free"),
                 "InvalidLicenseType.NotSupported")
    bucket("far-away", region="cn-shanghai").put_object("disk.qcow2", b"x" * 1024)
    refused(lambda: import_image("nope", "far-away", "disk.qcow2"), "InvalidOSSBucket.NotMatched")
    refused(lambda: import_image("nope", "images", "disk.qcow2", size=1), "InvalidImageSize")
    refused(lambda: import_image("nope", "images", "disk.qcow2", size=5000), "InvalidImageSize")
    refused(lambda: import_image("nope", "images", "odd.vhd", fmt="VHD"), "InvalidVHDImage.IncorrectSize")
    refused(lambda: import_image("aliyun-name", "images", "disk.qcow2"), "InvalidImageName.Malformed")
    refused(lambda: import_image("nope", "images", "disk.qcow2", fmt="ISO"), "InvalidImageFormat.Malformed")
    refused(lambda: import_image("nope", "images", "disk.qcow2", boot_mode="BIOS", architecture="arm64"),
                 "InvalidBootMode.NotSupport")

    refused(lambda: import_image("dry", "images", "disk.qcow2", dry_run=True), "DryRunOperation")

    # The round trip (retried with the same ClientToken: one image).
    out = import_image("round-trip", "images", "disk.qcow2", size=3, client_token="token-1", detection_strategy="Standard",
                       tag=[ecs.ImportImageRequestTag(key="team", value="infra")])
    check(out.image_id.startswith("m-") and out.task_id.startswith("t-"), out)
    # A retry repeats the request exactly (other parameters with the token: IdempotentParameterMismatch).
    again = import_image("round-trip", "images", "disk.qcow2", size=3, client_token="token-1",
                         detection_strategy="Standard", tag=[ecs.ImportImageRequestTag(key="team", value="infra")])
    check((again.image_id, again.task_id) == (out.image_id, out.task_id), again)
    # Importing images are hidden by default: Status defaults to Available.
    check(images(image_id=out.image_id).total_count == 0, "an importing image listed without Status")
    refused(lambda: import_image("round-trip", "images", "disk.qcow2"), "InvalidImageName.Duplicated")
    refused(lambda: ecs_client.delete_image(ecs.DeleteImageRequest(region_id=REGION, image_id=out.image_id)),
                 "ImageIsImporting")
    tasks = ecs_client.describe_tasks(ecs.DescribeTasksRequest(region_id=REGION, task_action="ImportImage")).body
    check(any(t.task_id == out.task_id for t in tasks.task_set.task), tasks)
    img, seen = wait_image(out.image_id)
    check(img.status == "Available", seen)
    statuses = [s for s, _ in seen]
    check("Creating" in statuses, f"never Creating: {seen}")
    progress = [int(p.rstrip("%")) for s, p in seen if s == "Creating"]
    check(progress == sorted(progress) and progress[-1] > progress[0], f"progress did not rise: {seen}")
    check(img.size == 3 and img.image_owner_alias == "self" and img.platform == "Ubuntu", img)
    # DetectionStrategy=Standard: the detection ran; an empty partition has no boot loader and no filesystem.
    det = img.detection_options
    check(det.status == "Finished" and det.items.item and all(i.risk_level for i in det.items.item), det)
    snap = img.disk_device_mappings.disk_device_mapping[0].snapshot_id
    check(snap.startswith("s-"), snap)
    t = task_of(out.task_id)
    check(t.task_status == "Finished" and t.task_process == "100%", t)

    # A garbage object ends CreateFailed with a reason.
    bad = import_image("garbage", "images", "garbage.qcow2")
    img, seen = wait_image(bad.image_id)
    check(img.status == "CreateFailed", seen)
    t = task_of(bad.task_id)
    err = t.operation_progress_set.operation_progress[0]
    check(t.task_status == "Failed" and err.error_code == "InvalidImageFormat.Malformed", t)
    check("RAW" in err.error_msg, err.error_msg)

    # Cancelling an import removes it.
    cancel = import_image("cancelled", "images", "disk.qcow2")
    ecs_client.cancel_task(ecs.CancelTaskRequest(region_id=REGION, task_id=cancel.task_id))
    check(images(image_id=cancel.image_id, status=ALL_STATUSES).total_count == 0, "cancelled image still listed")
    check(task_of(cancel.task_id).task_status == "Deleted", "cancelled task")
    e = refused(lambda: ecs_client.cancel_task(ecs.CancelTaskRequest(region_id=REGION, task_id=out.task_id)),
                     "InvalidTaskId.IncorrectTaskStatus")
    check(e.statusCode == 403, f"status {e.statusCode}")
    e = refused(lambda: ecs_client.cancel_task(ecs.CancelTaskRequest(region_id=REGION, task_id="t-none")),
                     "InvalidTaskId.NotFound")
    check(e.statusCode == 400, f"status {e.statusCode}")

    # DescribeImages defaults and filters over the seeded catalogue.
    default = images(page_size=100)
    aliases = {i.image_owner_alias for i in default.images.image}
    check(aliases == {"system", "self", "others"}, aliases)
    check(all(i.status == "Available" for i in default.images.image), "default lists non-Available images")
    market = images(image_owner_alias="marketplace")
    check(market.total_count == 2, market.total_count)
    shared = images(image_owner_alias="others")
    check(shared.total_count == 1 and shared.images.image[0].image_owner_id != 0, shared)
    system = images(image_owner_alias="system")
    page = images(image_owner_alias="system", page_size=2, page_number=2)
    check(page.total_count == system.total_count and len(page.images.image) == 2 and page.page_number == 2, page)
    check(images(image_name="UBUNTU_22").total_count == 2, "fuzzy name")
    check(images(image_name="ubuntu", architecture="arm64").total_count == 1, "architecture filter")
    check(images(ostype="windows").total_count == 1, "OSType filter")
    check(images(image_family="acs:centos_7_9_x64").total_count == 1, "family filter")
    two = images(image_id=f"{out.image_id},aliyun_3_x64_20G_alibase_20240101.vhd")
    check(two.total_count == 2, "ImageId list")
    check(images(snapshot_id=snap).images.image[0].image_id == out.image_id, "SnapshotId filter")
    check(images(status="CreateFailed").images.image[0].image_id == bad.image_id, "Status filter")
    tagged = images(tag=[ecs.DescribeImagesRequestTag(key="team", value="infra")])
    check([i.image_id for i in tagged.images.image] == [out.image_id], "tag filter")

    # Attributes and tags.
    ecs_client.modify_image_attribute(ecs.ModifyImageAttributeRequest(
        region_id=REGION, image_id=out.image_id, image_name="renamed", description="tested", image_family="fam"))
    img = images(image_id=out.image_id).images.image[0]
    check((img.image_name, img.description, img.image_family) == ("renamed", "tested", "fam"), img)
    ecs_client.tag_resources(ecs.TagResourcesRequest(region_id=REGION, resource_type="image", resource_id=[out.image_id],
                                                     tag=[ecs.TagResourcesRequestTag(key="env", value="test")]))
    tags = ecs_client.list_tag_resources(ecs.ListTagResourcesRequest(
        region_id=REGION, resource_type="image", resource_id=[out.image_id])).body.tag_resources.tag_resource
    check(sorted((t.tag_key, t.tag_value) for t in tags) == [("env", "test"), ("team", "infra")], tags)

    # Sharing.
    ecs_client.modify_image_share_permission(ecs.ModifyImageSharePermissionRequest(
        region_id=REGION, image_id=out.image_id, add_account=["1111111111111111", "2222222222222222"]))
    ecs_client.modify_image_share_permission(ecs.ModifyImageSharePermissionRequest(
        region_id=REGION, image_id=out.image_id, remove_account=["2222222222222222"]))
    e = refused(lambda: ecs_client.modify_image_share_permission(ecs.ModifyImageSharePermissionRequest(
        region_id=REGION, image_id=out.image_id, add_account=[cfg["account"]])), "InvalidAccount.Forbbiden")
    check(e.statusCode == 404, f"status {e.statusCode}")
    refused(lambda: ecs_client.modify_image_share_permission(ecs.ModifyImageSharePermissionRequest(
        region_id=REGION, image_id=out.image_id, add_account=["not-an-account"])), "InvalidAccount.NotFound")
    refused(lambda: ecs_client.modify_image_share_permission(ecs.ModifyImageSharePermissionRequest(
        region_id=REGION, image_id=bad.image_id, add_account=["1111111111111111"])), "IncorrectImageStatus")
    perm = ecs_client.describe_image_share_permission(ecs.DescribeImageSharePermissionRequest(
        region_id=REGION, image_id=out.image_id)).body
    check([a.aliyun_id for a in perm.accounts.account] == ["1111111111111111"], perm)

    refused(lambda: ecs_client.copy_image(ecs.CopyImageRequest(
        region_id=REGION, image_id=out.image_id, destination_region_id="xx-nowhere-1")), "DestinationRegion.NotFound")
    refused(lambda: ecs_client.copy_image(ecs.CopyImageRequest(
        region_id=REGION, image_id=bad.image_id, destination_region_id="cn-shanghai")), "IncorrectImageStatus")
    # Copy to another region: queued, then Available there.
    copy = ecs_client.copy_image(ecs.CopyImageRequest(region_id=REGION, image_id=out.image_id,
                                                      destination_region_id="cn-shanghai",
                                                      destination_image_name="the-copy")).body
    check(images(region_id="cn-shanghai", image_id=copy.image_id, status="Waiting,Creating").total_count == 1, "queued")
    img, seen = wait_image(copy.image_id, region="cn-shanghai")
    check(img.status == "Available" and img.image_name == "the-copy" and img.is_copied, img)

    # Instances: the system disk is replaced only on a stopped instance; an image in use needs Force to go.
    sh = "cn-shanghai"
    insts = ecs_client.describe_instances(ecs.DescribeInstancesRequest(region_id=sh)).body.instances.instance
    running = next(i for i in insts if i.status == "Running")
    replace = ecs.ReplaceSystemDiskRequest(instance_id=running.instance_id, image_id=copy.image_id)
    refused(lambda: ecs_client.replace_system_disk(replace), "IncorrectInstanceStatus")
    ecs_client.stop_instance(ecs.StopInstanceRequest(instance_id=running.instance_id))
    for size, code in ((1, "InvalidSystemDiskSize.LessThanImageSize"), (4096, "InvalidSystemDiskSize.ValueNotSupported")):
        refused(lambda: ecs_client.replace_system_disk(ecs.ReplaceSystemDiskRequest(
            instance_id=running.instance_id, image_id=copy.image_id,
            system_disk=ecs.ReplaceSystemDiskRequestSystemDisk(size=size))), code)
    disk = ecs_client.replace_system_disk(replace).body.disk_id
    check(disk.startswith("d-"), disk)
    got = ecs_client.describe_instances(ecs.DescribeInstancesRequest(
        region_id=sh, instance_ids=json.dumps([running.instance_id]))).body.instances.instance
    check(len(got) == 1 and got[0].image_id == copy.image_id and got[0].status == "Stopped", got)
    refused(lambda: ecs_client.delete_image(ecs.DeleteImageRequest(region_id=sh, image_id=copy.image_id)),
                 "ImageUsingByInstance")

    # A shared image is deleted only with Force.
    refused(lambda: ecs_client.delete_image(ecs.DeleteImageRequest(region_id=REGION, image_id=out.image_id)),
                 "ImageUseShared")
    ecs_client.delete_image(ecs.DeleteImageRequest(region_id=REGION, image_id=out.image_id, force=True))
    check(images(image_id=out.image_id, status=ALL_STATUSES).total_count == 0, "deleted image still listed")
    # Documented: deleting an image that does not exist is ignored.
    ecs_client.delete_image(ecs.DeleteImageRequest(region_id=REGION, image_id=out.image_id))
    print("ok images")

elif scenario == "sts":
    ensure_role()
    arn = f"acs:ram::{cfg['account']}:role/aliyunecsimageimportdefaultrole"
    refused(lambda: sts_client.assume_role(sts.AssumeRoleRequest(
        role_arn=f"acs:ram::{cfg['account']}:role/nobody", role_session_name="s1")), "EntityNotExist.Role")
    refused(lambda: sts_client.assume_role(sts.AssumeRoleRequest(
        role_arn=arn, role_session_name="s1", duration_seconds=100)), "InvalidParameter.DurationSeconds")
    refused(lambda: sts_client.assume_role(sts.AssumeRoleRequest(
        role_arn=arn, role_session_name="s1", duration_seconds=7200)), "InvalidParameter.DurationSeconds")
    body = sts_client.assume_role(sts.AssumeRoleRequest(role_arn=arn, role_session_name="import-session",
                                                        duration_seconds=900)).body
    c = body.credentials
    check(c.access_key_id.startswith("STS.") and c.security_token and c.expiration.endswith("Z"), "credentials")
    check(body.assumed_role_user.arn == arn + "/import-session", body.assumed_role_user.arn)
    # Usable for OSS and ECS.
    auth = oss2.StsAuth(c.access_key_id, c.access_key_secret, c.security_token, auth_version=oss2.AUTH_VERSION_4)
    b = bucket("sts-bucket", auth=auth)
    b.put_object("hello", b"hi")
    check(b.get_object("hello").read() == b"hi", "STS OSS read")
    temp_ecs = EcsClient(config(c.access_key_id, c.access_key_secret, c.security_token))
    check(temp_ecs.describe_images(ecs.DescribeImagesRequest(region_id=REGION)).body.total_count > 0, "STS ECS")
    # Rejected after expiry (the emulator caps lifetimes for the test).
    time.sleep(cfg["sleep"])
    refused(lambda: temp_ecs.describe_images(ecs.DescribeImagesRequest(region_id=REGION)),
                 "InvalidSecurityToken.Expired")
    try:
        b.get_object("hello")
        raise AssertionError("expired STS credentials read OSS")
    except oss2.exceptions.OssError as e:
        check(e.code in ("SecurityTokenExpired", "InvalidSecurityToken"), e.code)
    print("ok sts")

elif scenario == "import-start":
    ensure_role()
    b = bucket("images")
    with open(cfg["qcow2"], "rb") as f:
        b.put_object("disk.qcow2", f.read())
    out = import_image(cfg["name"], "images", "disk.qcow2")
    print(json.dumps({"image_id": out.image_id, "task_id": out.task_id}))

elif scenario == "import-wait":
    img, seen = wait_image(cfg["image_id"])
    check(img.status == cfg["expect"], seen)
    t = task_of(cfg["task_id"])
    if cfg["expect"] == "CreateFailed":
        err = t.operation_progress_set.operation_progress[0]
        check(err.error_code == cfg["code"], f"{err.error_code}: {err.error_msg}")
    print("ok import-wait")

elif scenario == "import-rules":
    # The emulator's own import rules (its ecs::import module docs): each bad disk fails as documented, a good one
    # is imported.
    b = bucket("rules")
    for key, name in (("good.raw", "good"), ("disk.qcow2", "qcow2"), ("blank.qcow2", "blank"),
                      ("signature-only.qcow2", "signature_only"), ("garbage.bin", "garbage"),
                      ("short.vhd", "short_vhd"), ("full.vhd", "full_vhd"), ("odd.vhd", "vhd")):
        with open(cfg[name], "rb") as f:
            b.put_object(key, f.read())

    def failed(name, obj, fmt, code, *words):
        out = import_image(name, "rules", obj, fmt=fmt)
        img, seen = wait_image(out.image_id)
        check(img.status == "CreateFailed", f"{name}: {seen}")
        t = task_of(out.task_id)
        err = t.operation_progress_set.operation_progress[0]
        check(t.task_status == "Failed" and err.error_code == code, f"{name}: {err.error_code}: {err.error_msg}")
        check(all(w in err.error_msg for w in words), f"{name}: {err.error_msg}")

    # Answered at once: VHD sizes.
    e = refused(lambda: import_image("odd-vhd", "rules", "odd.vhd", fmt="VHD"), "InvalidVHDImage.IncorrectSize")
    check(e.statusCode == 403 and "multiple of 1 MiB" in e.message, e.message)
    e = refused(lambda: import_image("short-vhd", "rules", "short.vhd", fmt="VHD"), "InvalidVHDImage.IncorrectSize")
    check(e.statusCode == 403 and "fixed VHD" in e.message and "8388608" in e.message, e.message)
    # Failed by the task.
    failed("garbage", "garbage.bin", None, "ImportImageFailed", "no boot sector", "0x55AA")
    failed("qcow2-declared-raw", "disk.qcow2", "RAW", "InvalidImageFormat.Malformed", "not RAW", "QCOW2")
    failed("raw-declared-qcow2", "good.raw", "QCOW2", "InvalidImageFormat.Malformed", "not QCOW2", "RAW")
    failed("blank", "blank.qcow2", "QCOW2", "ImportImageFailed", "no boot sector")
    failed("signature-only", "signature-only.qcow2", "QCOW2", "ImportImageFailed", "no partition table")
    # Good disks: a raw and a fixed VHD of exact size (its data has no partition table, so as a data disk).
    out = import_image("good-raw", "rules", "good.raw", fmt="RAW", detection_strategy="Standard")
    img, seen = wait_image(out.image_id)
    check(img.status == "Available" and img.size == 1, seen)
    names = sorted(i.name for i in img.detection_options.items.item)
    check(names == ["GUESTOS.BootLoader", "GUESTOS.Filesystem"], names)
    req = ecs.ImportImageRequest(image_name="with-data-disk", region_id=REGION, ostype="linux", platform="Ubuntu",
                                 disk_device_mapping=[mapping("rules", "good.raw", "RAW"),
                                                      mapping("rules", "full.vhd", "VHD")])
    out = ecs_client.import_image(req).body
    img, seen = wait_image(out.image_id)
    check(img.status == "Available" and len(img.disk_device_mappings.disk_device_mapping) == 2, seen)
    print("ok import-rules")

elif scenario == "lifecycle":
    # DryRun, copies as the real API runs them (no task, CancelCopyImage), Available <-> Deprecated only,
    # Status=ALL and creation times set by the driver's creation_time fault rules: the first two imports get
    # cfg["t0"], the third an hour earlier.
    ensure_role()
    b = bucket("life")
    with open(cfg["qcow2"], "rb") as f:
        b.put_object("disk.qcow2", f.read())
    b.put_object("garbage.qcow2", b"this is not a disk image" * 1000)
    sh = "cn-shanghai"

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    def one(image_id, region=REGION):
        body = images(region_id=region, image_id=image_id, status="ALL")
        check(body.total_count <= 1, body)
        return body.images.image[0] if body.total_count == 1 else None

    def modify(image_id, **kw):
        return ecs_client.modify_image_attribute(ecs.ModifyImageAttributeRequest(region_id=REGION, image_id=image_id,
                                                                                 **kw))

    def share(image_id, **kw):
        return ecs_client.modify_image_share_permission(ecs.ModifyImageSharePermissionRequest(
            region_id=REGION, image_id=image_id, **kw))

    def copy(image_id, name, **kw):
        return ecs_client.copy_image(ecs.CopyImageRequest(region_id=REGION, image_id=image_id,
                                                          destination_region_id=sh, destination_image_name=name, **kw))

    def cancel_copy(region, image_id):
        return ecs_client.cancel_copy_image(ecs.CancelCopyImageRequest(region_id=region, image_id=image_id))

    # CreationTime under the test's control: equal and out-of-order times.
    first = [import_image(n, "life", "disk.qcow2").image_id for n in ("clock-a", "clock-b", "clock-c")]
    done = [wait_image(i)[0] for i in first]
    check(all(i.status == "Available" for i in done), done)
    times = [i.creation_time for i in done]
    check(times == [iso(cfg["t0"]), iso(cfg["t0"]), iso(cfg["t0"] - 3600)], times)
    a, b_id, c = first
    # No documented order: the emulator lists by ImageId, whatever the creation times.
    mine = images(image_owner_alias="self", status="ALL", page_size=100).images.image
    ids = [i.image_id for i in mine]
    check(ids == sorted(ids) and set(first) <= set(ids), ids)
    refused(lambda: images(status="ALL,Available"), "InvalidParameter.Status", 400)
    bad = import_image("failed", "life", "garbage.qcow2")
    check(wait_image(bad.image_id)[0].status == "CreateFailed", "garbage import")

    # DryRun: every check runs, then 400 DryRunOperation, and nothing changes.
    refused(lambda: images(dry_run=True), "DryRunOperation", 400)
    refused(lambda: ecs_client.delete_image(ecs.DeleteImageRequest(region_id=REGION, image_id=a, dry_run=True)),
            "DryRunOperation", 400)
    check(one(a).status == "Available", "a dry DeleteImage deleted the image")
    refused(lambda: modify(a, image_name="dry-name", description="dry run", status="Deprecated", dry_run=True),
            "DryRunOperation", 400)
    img = one(a)
    check((img.image_name, img.description or "", img.status) == ("clock-a", "", "Available"), img)
    # A dry run still validates: a bad name or a refused state answers its own error.
    refused(lambda: modify(a, image_name="aliyun-dry", dry_run=True), "InvalidImageName.Malformed", 400)
    refused(lambda: modify(bad.image_id, status="Deprecated", dry_run=True), "ImageStatus.NotAvailable", 403)
    refused(lambda: share(a, add_account=["1111111111111111"], dry_run=True), "DryRunOperation", 400)
    perm = ecs_client.describe_image_share_permission(ecs.DescribeImageSharePermissionRequest(
        region_id=REGION, image_id=a)).body
    check(perm.total_count == 0 and not perm.accounts.account, perm)
    refused(lambda: copy(a, "dry-copy", dry_run=True), "DryRunOperation", 400)
    check(images(region_id=sh, image_name="dry-copy", status="ALL").total_count == 0, "a dry CopyImage copied")
    refused(lambda: import_image("dry-import", "life", "disk.qcow2", dry_run=True), "DryRunOperation", 400)
    check(images(image_name="dry-import", status="ALL").total_count == 0, "a dry ImportImage imported")
    insts = ecs_client.describe_instances(ecs.DescribeInstancesRequest(region_id=REGION)).body.instances.instance
    running = next(i for i in insts if i.status == "Running")
    refused(lambda: ecs_client.describe_instances(ecs.DescribeInstancesRequest(region_id=REGION, dry_run=True)),
            "DryRunOperation", 400)
    refused(lambda: ecs_client.stop_instance(ecs.StopInstanceRequest(instance_id=running.instance_id, dry_run=True)),
            "DryRunOperation", 400)

    def instance(instance_id):
        return ecs_client.describe_instances(ecs.DescribeInstancesRequest(
            region_id=REGION, instance_ids=json.dumps([instance_id]))).body.instances.instance[0]

    check(instance(running.instance_id).status == "Running", "a dry StopInstance stopped the instance")

    # Status: only Available <-> Deprecated.
    refused(lambda: modify(bad.image_id, status="Deprecated"), "ImageStatus.NotAvailable", 403)
    refused(lambda: modify(bad.image_id, status="Available"), "ImageStatus.NotDeprecated", 403)
    check(one(bad.image_id).status == "CreateFailed", "a CreateFailed image changed status")
    creating = import_image("creating", "life", "disk.qcow2")
    refused(lambda: modify(creating.image_id, status="Deprecated"), "InvalidStatus.ImageIsCreating", 403)
    # A shared image is not deprecated: unshare it first.
    share(a, add_account=["1111111111111111"])
    refused(lambda: modify(a, status="Deprecated"), "ImageUseShared", 403)
    check(one(a).status == "Available", "a shared image was deprecated")
    share(a, remove_account=["1111111111111111"])
    modify(a, status="Deprecated")
    check(one(a).status == "Deprecated", "not deprecated")
    check(images(image_id=a).total_count == 0, "a Deprecated image listed by default")
    check(images(image_id=a, status="Deprecated").total_count == 1, "Status=Deprecated")
    # Deprecated images are neither shared nor copied, but still replace system disks.
    refused(lambda: share(a, add_account=["1111111111111111"]), "IncorrectImageStatus", 400)
    refused(lambda: copy(a, "copy-of-deprecated"), "IncorrectImageStatus", 400)
    ecs_client.stop_instance(ecs.StopInstanceRequest(instance_id=running.instance_id))
    disk = ecs_client.replace_system_disk(ecs.ReplaceSystemDiskRequest(
        instance_id=running.instance_id, image_id=a)).body.disk_id
    check(disk.startswith("d-") and instance(running.instance_id).image_id == a, "ReplaceSystemDisk")
    # Status=ALL returns every status at once.
    check(wait_image(creating.image_id)[0].status == "Available", "creating")
    statuses = {i.status for i in images(image_owner_alias="self", status="ALL", page_size=100).images.image}
    check({"Available", "Deprecated", "CreateFailed"} <= statuses, statuses)
    modify(a, status="Available")
    check(one(a).status == "Available", "Deprecated -> Available")

    # CopyImage is not a task: only the new ImageId, tracked on the destination image.
    body = copy(b_id, "copy-one").body
    check(set(body.to_map()) == {"ImageId", "RequestId"}, body.to_map())
    cp = body.image_id
    img = one(cp, sh)
    check(img.status in ("Waiting", "Creating") and img.is_copied, img)
    for region in (REGION, sh):
        tasks = ecs_client.describe_tasks(ecs.DescribeTasksRequest(region_id=region, page_size=100)).body
        check(all(t.task_action != "CopyImage" and t.resource_id != cp for t in tasks.task_set.task), tasks)
        listed = ecs_client.describe_tasks(ecs.DescribeTasksRequest(region_id=region, task_action="CopyImage")).body
        check(listed.total_count == 0, listed)
    # CancelTask does not know a copy; DeleteImage points to CancelCopyImage.
    refused(lambda: ecs_client.cancel_task(ecs.CancelTaskRequest(region_id=sh, task_id=cp)),
            "InvalidTaskId.NotFound", 400)
    refused(lambda: ecs_client.delete_image(ecs.DeleteImageRequest(region_id=sh, image_id=cp)),
            "OperationDenied.ImageCopying", 403)
    # CancelCopyImage takes the destination region and image.
    refused(lambda: cancel_copy(REGION, cp), "InvalidImageId.NotFound", 404)
    refused(lambda: cancel_copy(REGION, b_id), "ImageCreatedNotFromCopy", 400)
    refused(lambda: cancel_copy("xx-nowhere-1", cp), "InvalidRegionId.NotFound", 404)
    cancel_copy(sh, cp)
    check(one(cp, sh) is None, "a cancelled copy is still listed")
    check(one(b_id).status == "Available", "cancelling changed the source")
    # A copy runs to Available with rising Progress on the image; a finished copy cannot be cancelled.
    cp2 = copy(b_id, "copy-two", client_token="copy-token").body.image_id
    again = copy(b_id, "copy-two", client_token="copy-token").body.image_id
    check(again == cp2, "a retried CopyImage with the same ClientToken made another copy")
    img, seen = wait_image(cp2, region=sh)
    check(img.status == "Available" and img.image_name == "copy-two", seen)
    progress = [int(p.rstrip("%")) for s, p in seen if s == "Creating"]
    check(progress and progress == sorted(progress), f"progress: {seen}")
    e = refused(lambda: cancel_copy(sh, cp2), "IncorrectImageStatus", 400)
    check("completed" in e.message, e.message)
    check(one(cp2, sh).status == "Available", "a refused CancelCopyImage changed the copy")
    print("ok lifecycle")

else:
    raise SystemExit(f"unknown scenario {scenario}")
