"""What the emulator's SDK scenario scripts share: their arguments, the clients' configuration and the checks.

Each script is run as `SCRIPT SCENARIO CONFIG_JSON` (CONFIG_JSON holds at least "endpoint", "ak" and "sk") and
prints "ok SCENARIO" on success; a mismatch raises.
"""
import json
import sys
import time

import oss2
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_tea_openapi import models as open_api_models

scenario, cfg = sys.argv[1], json.loads(sys.argv[2])
url, ak, sk = cfg["endpoint"], cfg["ak"], cfg["sk"]
host = url.split("://", 1)[-1]
REGION = "cn-hangzhou"
ALL_STATUSES = "Creating,Waiting,Available,UnAvailable,CreateFailed"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def config(key=ak, secret=sk, token=None):
    """An SDK client configuration for the emulator (plain http, the test region)."""
    c = open_api_models.Config(access_key_id=key, access_key_secret=secret, endpoint=host, protocol="http",
                               region_id=REGION)
    if token:
        c.security_token = token
    return c


def refused(fn, code, status=None):
    """Runs `fn`, which must fail with error `code` (and HTTP `status` when given); returns the error."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the SDKs raise their own exception types
        got = getattr(e, "code", None)
        check(got == code, f"expected {code}, got {got}: {e}")
        if status is not None:
            check(getattr(e, "statusCode", None) == status, f"{code}: status {getattr(e, 'statusCode', None)}, "
                                                            f"expected {status}")
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


def bucket(name, region=REGION, auth=None):
    """The OSS bucket `name` through oss2, created if missing."""
    b = oss2.Bucket(auth or oss2.AuthV4(ak, sk), url, name, region=region)
    try:
        b.create_bucket()
    except oss2.exceptions.BucketAlreadyExists:
        pass
    return b


def one_image(client, image_id, region=REGION):
    """The image `image_id` in any status through the ECS `client`, or None."""
    req = ecs_models.DescribeImagesRequest(region_id=region, image_id=image_id, status="ALL")
    body = client.describe_images(req).body
    check(body.total_count <= 1, body)
    return body.images.image[0] if body.total_count == 1 else None


def wait_image(client, image_id, region=REGION, timeout=60):
    """Polls `image_id` until it is Available or CreateFailed; fails if it vanishes or the time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        img = one_image(client, image_id, region)
        check(img is not None, f"{image_id} not listed")
        if img.status in ("Available", "CreateFailed"):
            return img
        time.sleep(0.1)
    raise AssertionError(f"{image_id} still in flight after {timeout}s")
