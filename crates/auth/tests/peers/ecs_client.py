"""Calls a local ECS endpoint with Alibaba's ECS SDK, signing with ACS3-HMAC-SHA256 (the SDK default) and with
the RPC V1 signature, with long-term keys and with an STS token.

usage: ecs_client.py HOST:PORT AK SK TOKEN
"""
import sys

from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi import models as open_api_models

endpoint, ak, sk, token = sys.argv[1:5]

for algorithm in (None, "v2"):
    for sts in (None, token):
        cfg = open_api_models.Config(
            access_key_id=ak,
            access_key_secret=sk,
            security_token=sts,
            endpoint=endpoint,
            protocol="http",
            region_id="cn-hangzhou",
        )
        if algorithm:
            cfg.signature_algorithm = algorithm
        client = Client(cfg)
        client.describe_regions(ecs_models.DescribeRegionsRequest())
        client.describe_images(
            ecs_models.DescribeImagesRequest(
                region_id="cn-hangzhou",
                image_name="imgport a b*c~d",
                status="Creating,Waiting,Available,UnAvailable,CreateFailed",
                page_size=100,
            )
        )
        print(algorithm or "acs3", "sts" if sts else "ak", "ok")
