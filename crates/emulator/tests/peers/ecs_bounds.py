"""The emulator's bounds, driven with Alibaba's official Python SDKs (alibabacloud-ecs20140526,
alibabacloud-ram20150501) and oss2: for each bound the request, the answer (code and HTTP status) and the state
afterwards.

usage: ecs_bounds.py SCENARIO CONFIG_JSON
CONFIG_JSON: {"endpoint": "http://HOST:PORT", "ak": ..., "sk": ..., "disk": PATH (a small bootable raw disk)}
Scenarios (each against an emulator started with the settings the driver, tests/ecs_peers.rs `bounds`, gives it):
- "quota": image_quota=3, max_in_flight=2 (QuotaExceed.Image and Throttling on ImportImage and CopyImage), and
  ImportImage's Description and Tag.N bounds;
- "token": concurrent ImportImage and CopyImage requests with one ClientToken make one image;
- "tasks": task_history=3 (finished tasks beyond three are forgotten, oldest first);
- "ram": the RAM limits (roles per account, policies per role, description lengths);
- "shutdown_start" / "shutdown_resume": an import in flight when the emulator shuts down resumes on the next start;
- "unreadable_upload" / "unreadable_import": an uploaded object the emulator cannot read answers 500 InternalError.
Prints "ok SCENARIO" on success; raises on any mismatch.
"""
import threading

import oss2

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_ram20150501 import models as ram
from alibabacloud_ram20150501.client import Client as RamClient

import sdk
from sdk import ALL_STATUSES, REGION, bucket, cfg, check, config, refused, scenario

DEST = "cn-shanghai"
client = EcsClient(config())


def upload(name="disk.raw", bkt="bounds"):
    b = bucket(bkt)
    with open(cfg["disk"], "rb") as f:
        b.put_object(name, f.read())
    return b


def import_request(name=None, obj="disk.raw", **kw):
    m = ecs.ImportImageRequestDiskDeviceMapping(ossbucket="bounds", ossobject=obj, format="RAW")
    kw = {"architecture": "x86_64", "ostype": "linux", "platform": "Ubuntu", "region_id": REGION, **kw}
    return ecs.ImportImageRequest(image_name=name, disk_device_mapping=[m], **kw)


def import_image(name=None, **kw):
    return client.import_image(import_request(name, **kw)).body


def copy_image(image_id, name=None, **kw):
    req = ecs.CopyImageRequest(region_id=REGION, image_id=image_id, destination_region_id=DEST,
                               destination_image_name=name, **kw)
    return client.copy_image(req).body.image_id


def own(region=REGION):
    req = ecs.DescribeImagesRequest(region_id=region, image_owner_alias="self", status=ALL_STATUSES, page_size=100)
    return client.describe_images(req).body.images.image


def wait_image(image_id, region=REGION, timeout=60):
    return sdk.wait_image(client, image_id, region, timeout)


def tasks():
    req = ecs.DescribeTasksRequest(region_id=REGION, page_size=100)
    return client.describe_tasks(req).body


if scenario == "quota":
    upload()
    upload("garbage.raw").put_object("garbage.raw", b"not a disk" * 1000)
    # --- free text: descriptions 2-256 characters, Tag.N at most 20 with TagResources' rules --------------------
    refused(lambda: import_image("quota-x", description="d" * 257), "InvalidDescription.Malformed", 400)
    refused(lambda: import_image("quota-x", description="d"), "InvalidDescription.Malformed", 400)
    many = [ecs.ImportImageRequestTag(key=f"k{n}", value="v") for n in range(21)]
    refused(lambda: import_image("quota-x", tag=many), "InvalidTagCount", 400)
    refused(lambda: import_image("quota-x", tag=[ecs.ImportImageRequestTag(key="k" * 129, value="v")]),
            "InvalidTagKey.Malformed", 400)
    refused(lambda: import_image("quota-x", tag=[ecs.ImportImageRequestTag(key="k", value="aliyun-v")]),
            "InvalidTagValue.Malformed", 400)
    check(own() == [], own())
    # --- in flight: at max_in_flight (2) imports Waiting or Creating, a third is throttled -----------------------
    a = import_image("quota-a").image_id
    b = import_image("quota-b").image_id
    refused(lambda: import_image("quota-c"), "Throttling", 400)
    check(sorted(i.image_name for i in own()) == ["quota-a", "quota-b"], own())
    for i in (a, b):
        check(wait_image(i).status == "Available", i)
    c = import_image("quota-c").image_id
    check(wait_image(c).status == "Available", c)
    # --- the quota (3 custom images per region) ---------------------------------------------------------------
    refused(lambda: import_image("quota-d"), "QuotaExceed.Image", 403)
    # DryRun answers the quota too: the check comes before DryRunOperation.
    refused(lambda: import_image("quota-d", dry_run=True), "QuotaExceed.Image", 403)
    check(len(own()) == 3, own())
    # --- CopyImage counts the destination region: two copies in flight, a third throttled ---------------------
    ca = copy_image(a, "copy-a")
    cb = copy_image(b, "copy-b")
    refused(lambda: copy_image(c, "copy-c"), "Throttling", 400)
    check(sorted(i.image_name for i in own(DEST)) == ["copy-a", "copy-b"], own(DEST))
    for i in (ca, cb):
        check(wait_image(i, DEST).status == "Available", i)
    cc = copy_image(c, "copy-c")
    check(wait_image(cc, DEST).status == "Available", cc)
    refused(lambda: copy_image(a, "copy-a2"), "QuotaExceed.Image", 403)
    check(len(own(DEST)) == 3, own(DEST))
    # The source region's own quota does not matter to a copy out of it (it is full, the copies went through).
    check(len(own()) == 3, own())
    # --- deleting frees a place; a CreateFailed image holds one ----------------------------------------------
    client.delete_image(ecs.DeleteImageRequest(region_id=REGION, image_id=c))
    bad = import_image("quota-bad", obj="garbage.raw").image_id
    check(wait_image(bad).status == "CreateFailed", bad)
    refused(lambda: import_image("quota-e"), "QuotaExceed.Image", 403)
    client.delete_image(ecs.DeleteImageRequest(region_id=REGION, image_id=bad))
    e = import_image("quota-e").image_id
    check(wait_image(e).status == "Available", e)
    check(sorted(i.image_name for i in own()) == ["quota-a", "quota-b", "quota-e"], own())

elif scenario == "token":
    # A multipart object: ImportImage's probe copies its head and tail, which widens the window between the first
    # token look-up and the image being recorded.
    b = bucket("bounds")
    with open(cfg["disk"], "rb") as f:
        data = f.read()
    up = b.init_multipart_upload("disk.raw").upload_id
    step = len(data) // 4
    parts = [b.upload_part("disk.raw", up, n + 1, data[n * step:(n + 1) * step if n < 3 else len(data)])
             for n in range(4)]
    b.complete_multipart_upload("disk.raw", up, [oss2.models.PartInfo(n + 1, p.etag) for n, p in enumerate(parts)])
    before = len(own())
    results, errors = [], []

    def run(fn):
        try:
            results.append(fn())
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(e)

    def race(fn, n=12):
        results.clear()
        errors.clear()
        start = threading.Barrier(n)

        def go():
            start.wait()
            run(fn)

        threads = [threading.Thread(target=go) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, f"errors: {errors}")
        check(len(results) == n, results)
        return list(results)

    # No ImageName: without the token check under the image's lock each request would make its own image.
    got = race(lambda: import_image(client_token="race-import-1"))
    check(len({(r.image_id, r.task_id) for r in got}) == 1, [(r.image_id, r.task_id) for r in got])
    image_id = got[0].image_id
    check(len(own()) == before + 1, own())
    imports = [t for t in tasks().task_set.task if t.task_action == "ImportImage"]
    check(len(imports) == 1, imports)
    check(wait_image(image_id).status == "Available", image_id)
    copies = race(lambda: copy_image(image_id, client_token="race-copy-1"))
    check(len(set(copies)) == 1, copies)
    check(len(own(DEST)) == 1, own(DEST))
    check(wait_image(copies[0], DEST).status == "Available", copies[0])

elif scenario == "tasks":
    upload()
    ids = []
    for n in range(5):
        body = import_image(f"task-{n}")
        ids.append(body.task_id)
        check(wait_image(body.image_id).status == "Available", body.image_id)
    listed = tasks()
    check(listed.total_count == 3, listed.total_count)
    # Newest first; the two oldest are forgotten.
    check([t.task_id for t in listed.task_set.task] == ids[:1:-1], [t.task_id for t in listed.task_set.task])
    refused(lambda: client.describe_task_attribute(ecs.DescribeTaskAttributeRequest(region_id=REGION,
                                                                                     task_id=ids[0])),
            "InvalidTaskId.NotFound", 400)
    # A cancelled task is history too: cancelling leaves three finished tasks, the oldest gone.
    body = import_image("task-cancelled")
    cancelled = body.task_id
    client.cancel_task(ecs.CancelTaskRequest(region_id=REGION, task_id=cancelled))
    listed = tasks()
    check([t.task_id for t in listed.task_set.task] == [cancelled, ids[4], ids[3]],
          [(t.task_id, t.task_status) for t in listed.task_set.task])
    check(listed.task_set.task[0].task_status == "Deleted", listed.task_set.task[0])
    # An import in flight is never forgotten, however many finish meanwhile.
    body = import_image("task-flight")
    check(body.task_id in [t.task_id for t in tasks().task_set.task], tasks())
    check(wait_image(body.image_id).status == "Available", body.image_id)
    check([t.task_id for t in tasks().task_set.task] == [body.task_id, cancelled, ids[4]],
          [t.task_id for t in tasks().task_set.task])

elif scenario == "ram":
    rc = RamClient(config())
    trust = ('{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow",'
             '"Principal":{"Service":["ecs.aliyuncs.com"]}}],"Version":"1"}')
    policy = '{"Statement":[{"Effect":"Allow","Action":"oss:GetObject","Resource":"*"}],"Version":"1"}'

    def create_role(name, **kw):
        return rc.create_role(ram.CreateRoleRequest(role_name=name, assume_role_policy_document=trust, **kw))

    # --- description lengths (RAM: at most 1024 characters) ----------------------------------------------------
    refused(lambda: create_role("long-description", description="d" * 1025), "InvalidParameter.Description", 400)
    refused(lambda: rc.get_role(ram.GetRoleRequest(role_name="long-description")), "EntityNotExist.Role", 404)
    create_role("max-description", description="d" * 1024)
    refused(lambda: rc.create_policy(ram.CreatePolicyRequest(policy_name="long-description", policy_document=policy,
                                                             description="d" * 1025)),
            "InvalidParameter.Description", 400)
    refused(lambda: rc.update_role(ram.UpdateRoleRequest(role_name="max-description", new_description="d" * 1025)),
            "InvalidParameter.NewDescription", 400)
    # --- policies attached to one role: 20 system, 10 custom --------------------------------------------------
    for n in range(20):
        rc.attach_policy_to_role(ram.AttachPolicyToRoleRequest(policy_type="System", policy_name=f"AliyunBound{n}",
                                                               role_name="max-description"))
    refused(lambda: rc.attach_policy_to_role(ram.AttachPolicyToRoleRequest(
        policy_type="System", policy_name="AliyunBound20", role_name="max-description")),
        "LimitExceeded.Role.Policy", 409)
    refused(lambda: rc.attach_policy_to_role(ram.AttachPolicyToRoleRequest(
        policy_type="System", policy_name="Aliyun" + "x" * 200, role_name="max-description")),
        "InvalidParameter.PolicyName.InvalidChars", 400)
    for n in range(11):
        rc.create_policy(ram.CreatePolicyRequest(policy_name=f"bound-{n}", policy_document=policy))
    for n in range(10):
        rc.attach_policy_to_role(ram.AttachPolicyToRoleRequest(policy_type="Custom", policy_name=f"bound-{n}",
                                                               role_name="max-description"))
    refused(lambda: rc.attach_policy_to_role(ram.AttachPolicyToRoleRequest(
        policy_type="Custom", policy_name="bound-10", role_name="max-description")),
        "LimitExceeded.Role.Policy", 409)
    attached = rc.list_policies_for_role(ram.ListPoliciesForRoleRequest(role_name="max-description"))
    check(len(attached.body.policies.policy) == 30, len(attached.body.policies.policy))
    # Detaching one makes room for another.
    rc.detach_policy_from_role(ram.DetachPolicyFromRoleRequest(policy_type="Custom", policy_name="bound-0",
                                                               role_name="max-description"))
    rc.attach_policy_to_role(ram.AttachPolicyToRoleRequest(policy_type="Custom", policy_name="bound-10",
                                                           role_name="max-description"))
    # --- roles per account: 1000 (the seeded import role and max-description count) ---------------------------
    for n in range(998):
        create_role(f"bound-role-{n}")
    refused(lambda: create_role("one-too-many"), "LimitExceeded.Role", 409)
    refused(lambda: rc.get_role(ram.GetRoleRequest(role_name="one-too-many")), "EntityNotExist.Role", 404)
    rc.delete_role(ram.DeleteRoleRequest(role_name="bound-role-0"))
    create_role("one-too-many")
    refused(lambda: create_role("bound-role-0"), "LimitExceeded.Role", 409)

elif scenario == "shutdown_start":
    upload()
    body = import_image("across-shutdown")
    img = own()[0]
    check(img.image_id == body.image_id and img.status in ("Waiting", "Creating"), img)
    print(f"image {body.image_id}")

elif scenario == "shutdown_resume":
    img = [i for i in own() if i.image_name == "across-shutdown"]
    check(len(img) == 1, own())
    check(wait_image(img[0].image_id).status == "Available", img[0])

elif scenario == "unreadable_upload":
    upload()

elif scenario == "unreadable_import":
    # The object is listed (HeadObject finds it) but its data cannot be read: not the upload's fault.
    refused(lambda: import_image("unreadable"), "InternalError", 500)
    check(own() == [], own())
    check(tasks().total_count == 0, tasks().total_count)

else:
    raise SystemExit(f"unknown scenario {scenario}")

print(f"ok {scenario}")
