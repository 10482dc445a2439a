"""Calls the emulator's RPC gateway with Alibaba's ECS SDK, signing with ACS3-HMAC-SHA256 (the SDK default) and
with the RPC V1 signature. DescribeZones is not emulated, so the gateway must authenticate the call and answer
with the real error shape; with a wrong key it must say so.

usage: rpc_gateway.py http://HOST:PORT AK SK [expect=CODE]
"""
import sys

from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi import models as open_api_models

url, ak, sk = sys.argv[1:4]
expected = "InvalidAction.NotFound"
for arg in sys.argv[4:]:
    if arg.startswith("expect="):
        expected = arg.split("=", 1)[1]
endpoint = url.split("://", 1)[-1]

for algorithm in (None, "v2"):
    cfg = open_api_models.Config(access_key_id=ak, access_key_secret=sk, endpoint=endpoint, protocol="http",
                                 region_id="cn-hangzhou")
    if algorithm:
        cfg.signature_algorithm = algorithm
    client = Client(cfg)
    try:
        client.describe_zones(ecs_models.DescribeZonesRequest(region_id="cn-hangzhou"))
        raise AssertionError("DescribeZones succeeded")
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001 - the SDK raises its own exception types
        code = getattr(e, "code", None)
        if code != expected:
            raise AssertionError(f"{algorithm or 'acs3'}: expected {expected}, got {code}: {e}")
        if not getattr(e, "data", None) or not e.data.get("RequestId"):
            raise AssertionError(f"no RequestId in the error body: {getattr(e, 'data', None)}")
    print(algorithm or "acs3", "got", expected)
print("ok rpc")
