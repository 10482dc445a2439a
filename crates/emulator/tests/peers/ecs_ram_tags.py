"""The import role as RAM and ImportImage see it, driven by Alibaba's official Python SDKs
(alibabacloud-ram20150501, alibabacloud-ecs20140526) and oss2: the trust policy is evaluated, an equivalent custom
policy stands in for AliyunECSImageImportRolePolicy, and DetachPolicyFromRole, DeleteRole and UpdateRole remove and
repair the role.

usage: ecs_ram_tags.py SCENARIO CONFIG_JSON
CONFIG_JSON: {"endpoint": "http://HOST:PORT", "ak": ..., "sk": ..., "account": ...}
Prints "ok SCENARIO" on success; raises on any mismatch.
"""
import json

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_ram20150501 import models as ram
from alibabacloud_ram20150501.client import Client as RamClient

from sdk import REGION, bucket, check, config, refused, scenario

ROLE = "AliyunECSImageImportDefaultRole"
SYSTEM_POLICY = "AliyunECSImageImportRolePolicy"


ecs_client = EcsClient(config())
ram_client = RamClient(config())


def trust(service):
    return json.dumps({"Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow",
                                      "Principal": {"Service": [service]}}], "Version": "1"})


def import_image(name):
    m = ecs.ImportImageRequestDiskDeviceMapping(ossbucket="ramdisks", ossobject="disk.raw", format="RAW")
    req = ecs.ImportImageRequest(image_name=name, disk_device_mapping=[m], architecture="x86_64", ostype="linux",
                                 platform="Ubuntu", region_id=REGION)
    return ecs_client.import_image(req).body


def no_role_for_import(name):
    refused(lambda: import_image(name), "NoSetRoletoECSServiceAcount", 403)
    got = ecs_client.describe_images(ecs.DescribeImagesRequest(region_id=REGION, image_name=name,
                                                               status="ALL")).body
    check(got.total_count == 0, f"a refused import left an image: {got}")


def role():
    return ram_client.get_role(ram.GetRoleRequest(role_name=ROLE)).body.role


def attached():
    pols = ram_client.list_policies_for_role(ram.ListPoliciesForRoleRequest(role_name=ROLE)).body.policies.policy
    return sorted((p.policy_type, p.policy_name) for p in pols)


def attach(kind, name):
    ram_client.attach_policy_to_role(ram.AttachPolicyToRoleRequest(policy_type=kind, policy_name=name,
                                                                    role_name=ROLE))


def detach(kind, name):
    return ram_client.detach_policy_from_role(ram.DetachPolicyFromRoleRequest(policy_type=kind, policy_name=name,
                                                                              role_name=ROLE))


if scenario == "ram":
    b = bucket("ramdisks")
    b.put_object("disk.raw", b"\0" * 1024 * 1024)

    # A role trusting another service, with the system policy: refused as if there were no role.
    ram_client.create_role(ram.CreateRoleRequest(role_name=ROLE, assume_role_policy_document=trust("oss.aliyuncs.com")))
    attach("System", SYSTEM_POLICY)
    no_role_for_import("wrong-trust")

    # UpdateRole repairs the trust policy (and the session duration); the import is then accepted.
    refused(lambda: ram_client.update_role(ram.UpdateRoleRequest(role_name="NoSuchRole", new_max_session_duration=3600)),
            "EntityNotExist.Role", 404)
    refused(lambda: ram_client.update_role(ram.UpdateRoleRequest(role_name=ROLE, new_assume_role_policy_document="{")),
            "MalformedPolicyDocument", 400)
    refused(lambda: ram_client.update_role(ram.UpdateRoleRequest(role_name=ROLE, new_max_session_duration=60)),
            "InvalidParameter.NewMaxSessionDuration", 400)
    check("oss.aliyuncs.com" in role().assume_role_policy_document, "a refused UpdateRole changed the role")
    got = ram_client.update_role(ram.UpdateRoleRequest(role_name=ROLE, new_assume_role_policy_document=trust(
        "ecs.aliyuncs.com"), new_max_session_duration=7200)).body.role
    check("ecs.aliyuncs.com" in got.assume_role_policy_document and got.max_session_duration == 7200, got)
    r = role()
    check("ecs.aliyuncs.com" in r.assume_role_policy_document and r.max_session_duration == 7200, r)
    first = import_image("trusted").image_id
    check(first.startswith("m-"), first)

    # DeleteRole is refused while a policy is attached; the role stays.
    refused(lambda: ram_client.delete_role(ram.DeleteRoleRequest(role_name=ROLE)), "DeleteConflict.Role.Policy", 409)
    check(role().role_name == ROLE, "a refused DeleteRole removed the role")

    # DetachPolicyFromRole: the policy goes, the import is refused; detaching it again is refused.
    detach("System", SYSTEM_POLICY)
    check(attached() == [], attached())
    refused(lambda: detach("System", SYSTEM_POLICY), "EntityNotExist.Role.Policy", 404)
    no_role_for_import("detached")

    # A custom policy that does not allow reading objects does not stand in for the system policy.
    weak = json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["oss:ListObjects"],
                                                      "Resource": "*"}]})
    ram_client.create_policy(ram.CreatePolicyRequest(policy_name="ImportWeak", policy_document=weak))
    attach("Custom", "ImportWeak")
    no_role_for_import("weak-policy")
    # One that allows what AliyunECSImageImportRolePolicy grants does.
    equivalent = json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": [
        "oss:GetObject", "oss:GetBucketLocation", "oss:GetBucketInfo", "oss:ListParts"], "Resource": "*"}]})
    p = ram_client.create_policy(ram.CreatePolicyRequest(policy_name="ImportEquivalent",
                                                         policy_document=equivalent)).body.policy
    check(p.policy_type == "Custom" and p.policy_name == "ImportEquivalent", p)
    refused(lambda: ram_client.create_policy(ram.CreatePolicyRequest(policy_name="ImportEquivalent",
                                                                     policy_document=equivalent)),
            "EntityAlreadyExists.Policy", 409)
    refused(lambda: ram_client.create_policy(ram.CreatePolicyRequest(policy_name="Broken", policy_document="[]")),
            "MalformedPolicyDocument", 400)
    refused(lambda: attach("Custom", "NoSuchPolicy"), "EntityNotExist.Policy", 404)
    attach("Custom", "ImportEquivalent")
    check(attached() == [("Custom", "ImportEquivalent"), ("Custom", "ImportWeak")], attached())
    check(import_image("custom-policy").image_id.startswith("m-"), "the equivalent custom policy was refused")
    # A wildcard allow with a Deny on GetObject does not.
    detach("Custom", "ImportEquivalent")
    denied = json.dumps({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "oss:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "oss:GetObject", "Resource": "*"}]})
    ram_client.create_policy(ram.CreatePolicyRequest(policy_name="ImportDenied", policy_document=denied))
    attach("Custom", "ImportDenied")
    no_role_for_import("denied")

    # Remove the role: detach everything, delete it; the import is refused; a second delete finds nothing.
    detach("Custom", "ImportDenied")
    detach("Custom", "ImportWeak")
    ram_client.delete_role(ram.DeleteRoleRequest(role_name=ROLE))
    refused(lambda: ram_client.get_role(ram.GetRoleRequest(role_name=ROLE)), "EntityNotExist.Role", 404)
    refused(lambda: ram_client.delete_role(ram.DeleteRoleRequest(role_name=ROLE)), "EntityNotExist.Role", 404)
    no_role_for_import("deleted")
    # And repair it as the console would.
    ram_client.create_role(ram.CreateRoleRequest(role_name=ROLE, assume_role_policy_document=trust("ecs.aliyuncs.com")))
    attach("System", SYSTEM_POLICY)
    check(import_image("repaired").image_id.startswith("m-"), "the repaired role was refused")
    print("ok ram")

elif scenario == "tags":
    # The images the ram scenario imported (the driver sets a page size of 2 tag resources).
    own = ecs_client.describe_images(ecs.DescribeImagesRequest(region_id=REGION, image_owner_alias="self",
                                                               status="ALL", page_size=100)).body.images.image
    ids = sorted(i.image_id for i in own)
    check(len(ids) >= 3, ids)
    a, b, c = ids[:3]

    def tag(resources, pairs):
        return ecs_client.tag_resources(ecs.TagResourcesRequest(
            region_id=REGION, resource_type="image", resource_id=resources,
            tag=[ecs.TagResourcesRequestTag(key=k, value=v) for k, v in pairs]))

    def listing(**kw):
        rows, token, pages = [], None, 0
        while True:
            got = ecs_client.list_tag_resources(ecs.ListTagResourcesRequest(
                region_id=REGION, resource_type="image", next_token=token, **kw)).body
            page = got.tag_resources.tag_resource
            check(len(page) <= 2, f"a page of {len(page)} with page size 2")
            rows += [(r.resource_id, r.tag_key, r.tag_value) for r in page]
            pages += 1
            token = got.next_token
            if not token:
                return rows, pages

    def tags_of(image_id):
        return {k: v for _, k, v in listing(resource_id=[image_id])[0]}


    # Validation: nothing is written by a refused call.
    for pairs, code in [([("acs:team", "x")], "InvalidTagKey.Malformed"),
                        ([("Aliyun-owner", "x")], "InvalidTagKey.Malformed"),
                        ([("k" * 129, "x")], "InvalidTagKey.Malformed"),
                        ([("team", "aliyun-x")], "InvalidTagValue.Malformed"),
                        ([("team", "acs:x")], "InvalidTagValue.Malformed"),
                        ([("team", "v" * 129)], "InvalidTagValue.Malformed"),
                        ([("team", "a"), ("team", "b")], "TagKey.Duplication")]:
        refused(lambda: tag([a], pairs), code, 400)
    check(tags_of(a) == {}, tags_of(a))
    # The longest key and value are accepted.
    tag([a], [("k" * 128, "v" * 128)])
    check(tags_of(a) == {"k" * 128: "v" * 128}, tags_of(a))
    # At most 20 tags per image: 19 more fit, a 21st is refused and changes nothing.
    tag([a], [(f"t{n:02}", str(n)) for n in range(19)])
    check(len(tags_of(a)) == 20, tags_of(a))
    refused(lambda: tag([a], [("one-too-many", "x")]), "InvalidTagCount", 400)
    check(len(tags_of(a)) == 20 and "one-too-many" not in tags_of(a), tags_of(a))
    # Re-tagging an existing key on a full image replaces the value.
    tag([a], [("t00", "again")])
    check(tags_of(a)["t00"] == "again", tags_of(a))
    ecs_client.untag_resources(ecs.UntagResourcesRequest(region_id=REGION, resource_type="image",
                                                         resource_id=[a], all=True))
    check(tags_of(a) == {}, tags_of(a))

    tag([a], [("env", "prod"), ("team", "img")])
    tag([b], [("env", "test"), ("team", "img")])
    tag([c], [("env", "dev")])

    # Paging: five rows in pages of two, each row once.
    rows, pages = listing()
    want = [(a, "env", "prod"), (a, "team", "img"), (b, "env", "test"), (b, "team", "img"), (c, "env", "dev")]
    check(sorted(rows) == sorted(want) and pages == 3, (rows, pages))
    refused(lambda: ecs_client.list_tag_resources(ecs.ListTagResourcesRequest(
        region_id=REGION, resource_type="image", next_token="not-a-token")), "InvalidParameter.NextToken", 400)
    # TagFilter.N: a key with one of the values; a key with any value.
    TF = ecs.ListTagResourcesRequestTagFilter
    rows, _ = listing(tag_filter=[TF(tag_key="env", tag_values=["prod", "dev"])])
    check(sorted({r[0] for r in rows}) == sorted([a, c]), rows)
    rows, _ = listing(tag_filter=[TF(tag_key="team")])
    check(sorted({r[0] for r in rows}) == sorted([a, b]), rows)
    rows, _ = listing(tag_filter=[TF(tag_key="team"), TF(tag_key="env", tag_values=["test"])])
    check({r[0] for r in rows} == {b}, rows)
    rows, _ = listing(tag_filter=[TF(tag_key="nobody")])
    check(rows == [], rows)
    # Only images and snapshots are emulated resources (snapshot tags: tests/peers/ecs_snapshots.py).
    refused(lambda: ecs_client.list_tag_resources(ecs.ListTagResourcesRequest(
        region_id=REGION, resource_type="instance")), "InvalidParameter.ResourceType", 400)
    print("ok tags")

elif scenario == "tasks":
    import time as _time

    # The ram scenario's three accepted imports are the tasks; let them finish (or fail) first.
    def tasks(**kw):
        return ecs_client.describe_tasks(ecs.DescribeTasksRequest(region_id=REGION, **kw)).body

    for _ in range(100):
        everything = tasks(page_size=100)
        if all(t.task_status in ("Finished", "Failed") for t in everything.task_set.task):
            break
        _time.sleep(0.2)
    rows = everything.task_set.task
    check(everything.total_count == len(rows) == 3, everything)
    check(all(t.task_action == "ImportImage" for t in rows), rows)
    first, second, third = rows[0], rows[1], rows[2]
    # ResourceIds.N: the tasks working on those images.
    got = tasks(resource_ids=[second.resource_id])
    check([t.task_id for t in got.task_set.task] == [second.task_id] and got.total_count == 1, got)
    got = tasks(resource_ids=[first.resource_id, third.resource_id])
    check(sorted(t.task_id for t in got.task_set.task) == sorted([first.task_id, third.task_id]), got)
    check(tasks(resource_ids=["m-nosuchimage"]).total_count == 0, "an unknown resource matched")
    # TaskIds (comma-separated), with ResourceIds both must hold.
    got = tasks(task_ids=f"{first.task_id},{third.task_id}")
    check(got.total_count == 2, got)
    check(tasks(task_ids=first.task_id, resource_ids=[second.resource_id]).total_count == 0, "ids and resources")
    # TaskAction and TaskStatus.
    check(tasks(task_action="ImportImage").total_count == 3, "TaskAction=ImportImage")
    check(tasks(task_action="ExportImage").total_count == 0, "TaskAction=ExportImage")
    for status in ("Finished", "Failed", "Processing"):
        want = sum(1 for t in rows if t.task_status == status)
        check(tasks(task_status=status).total_count == want, f"TaskStatus={status}")
    # StartTime/EndTime, in the documented yyyy-MM-ddTHH:mmZ (UTC), compared with CreationTime.
    now = _time.time()
    fmt = lambda t: _time.strftime("%Y-%m-%dT%H:%MZ", _time.gmtime(t))  # noqa: E731
    check(tasks(start_time=fmt(now - 3600), end_time=fmt(now + 3600)).total_count == 3, "the last hour")
    check(tasks(start_time=fmt(now + 3600)).total_count == 0, "a window in the future")
    check(tasks(end_time=fmt(now - 3600)).total_count == 0, "a window in the past")
    refused(lambda: tasks(start_time="yesterday"), "InvalidParameter.StartTime", 400)
    refused(lambda: tasks(end_time="2024-13-01T00:00Z"), "InvalidParameter.EndTime", 400)
    # Paging: PageSize 2 gives pages of 2 and 1, TotalCount 3 on each, every task once.
    p1, p2 = tasks(page_size=2, page_number=1), tasks(page_size=2, page_number=2)
    check(p1.total_count == p2.total_count == 3 and p1.page_size == 2 and p2.page_number == 2, (p1, p2))
    seen = [t.task_id for t in p1.task_set.task + p2.task_set.task]
    check(len(seen) == 3 and sorted(seen) == sorted(t.task_id for t in rows), seen)
    check(tasks(page_size=2, page_number=3).task_set.task == [], "page 3 of 2")
    refused(lambda: tasks(page_size=101), "InvalidParameter.PageSize", 400)
    print("ok tasks")

else:
    raise SystemExit(f"unknown scenario {scenario}")
