"""What Alibaba's official Python SDKs (alibabacloud-ecs20140526, oss2) see after `imgport import --cloud alibaba`
ran against `imgport emulator serve`: the image imgport reported, with the parameters, tags, family and description
it claims; its copy in the other region, the same way; both shared with the account; and the bucket left empty.

usage: imported_images.py check CONFIG_JSON
CONFIG_JSON: "endpoint", "ak", "sk", "bucket", "outcome" (imgport's --json result document) and "expect" (what the
command asked for: "family", "description", "tags" {KEY: VALUE}, "account", "version").
Prints "ok check" on success; raises on any mismatch.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "emulator", "tests",
                                "peers"))

from alibabacloud_ecs20140526 import models as ecs  # noqa: E402
from alibabacloud_ecs20140526.client import Client as EcsClient  # noqa: E402

import sdk  # noqa: E402
from sdk import cfg, check, config, scenario  # noqa: E402

out, want = cfg["outcome"], cfg["expect"]
client = EcsClient(config())


def tags_of(img):
    return {t.tag_key: t.tag_value for t in (img.tags.tag if img.tags and img.tags.tag else [])}


def check_image(region, image_id):
    """The image as imgport reported it: listed in `region` under its name, Available, with its parameters."""
    img = sdk.one_image(client, image_id, region)
    check(img is not None, f"{image_id} is not listed in {region}")
    where = f"{image_id} in {region}"
    check(img.status == "Available", f"{where}: {img.status}")
    check(img.image_name == out["name"], f"{where}: named {img.image_name}")
    check(img.image_owner_alias == "self", f"{where}: owner {img.image_owner_alias}")
    p = out["parameters"]
    got = (img.platform, img.ostype, img.architecture, img.boot_mode)
    claimed = (p["platform"], p["os_type"], p["architecture"], p["boot_mode"])
    check(got == claimed, f"{where}: platform/os/arch/boot mode {got}, imgport claims {claimed}")
    check(img.size == p["disk_image_size"], f"{where}: size {img.size} GiB, imgport claims {p['disk_image_size']}")
    check(img.image_family == want["family"], f"{where}: family {img.image_family}")
    check(img.description == want["description"], f"{where}: description {img.description!r}")
    tags = tags_of(img)
    check(tags.get("imgport:digest") == out["digest"], f"{where}: digest tag {tags.get('imgport:digest')}")
    check(tags.get("imgport:version") == want["version"], f"{where}: version tag {tags.get('imgport:version')}")
    for k, v in want["tags"].items():
        check(tags.get(k) == v, f"{where}: tag {k}={tags.get(k)}, asked for {v}")
    shares = client.describe_image_share_permission(
        ecs.DescribeImageSharePermissionRequest(region_id=region, image_id=image_id)).body
    accounts = [a.aliyun_id for a in (shares.accounts.account or [])]
    check(accounts == [want["account"]], f"{where}: shared with {accounts}")
    check(out["shared_with"] == [want["account"]], f"imgport reports sharing with {out['shared_with']}")
    latest = client.describe_image_from_family(
        ecs.DescribeImageFromFamilyRequest(region_id=region, image_family=want["family"])).body.image
    check(latest.image_id == image_id, f"{region}: the family's newest image is {latest.image_id}")
    return img


if scenario == "check":
    check((out["status"], out["reused"], out["region"]) == ("Available", False, sdk.REGION), out)
    check_image(sdk.REGION, out["image_id"])
    check(len(out["copies"]) == 1, out["copies"])
    copy = out["copies"][0]
    check(copy["status"] == "Available" and copy["region"] != sdk.REGION, copy)
    check_image(copy["region"], copy["image_id"])
    # The import went through the bucket and left nothing in it.
    check(out["object_deleted"] is True and out["bucket"] == cfg["bucket"], out)
    keys = [o.key for o in sdk.bucket(cfg["bucket"]).list_objects().object_list]
    check(keys == [], f"objects left in {cfg['bucket']}: {keys}")
    print("ok check")
else:
    raise SystemExit(f"unknown scenario {scenario}")
