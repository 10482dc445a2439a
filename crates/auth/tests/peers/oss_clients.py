"""Drives a local OSS endpoint with Alibaba's own Python SDKs (oss2 V1/V4, with and without STS tokens, and
alibabacloud-oss-v2); the endpoint verifies every signature with imgport's verifiers.

usage: oss_clients.py ENDPOINT AK SK TOKEN
"""
import sys

import oss2

endpoint, ak, sk, token = sys.argv[1:5]
key = "dir/a b+c~*.txt"

auths = [
    ("oss2 v1", oss2.Auth(ak, sk)),
    ("oss2 v4", oss2.AuthV4(ak, sk)),
    ("oss2 v1 sts", oss2.StsAuth(ak, sk, token)),
    ("oss2 v4 sts", oss2.StsAuth(ak, sk, token, auth_version=oss2.AUTH_VERSION_4)),
]
for name, auth in auths:
    bucket = oss2.Bucket(auth, endpoint, "examplebucket", region="cn-hangzhou", enable_crc=False)
    bucket.put_object(key, b"hello", headers={"Content-Type": "text/plain", "x-oss-meta-owner": "imgport"})
    bucket.get_object(key, byte_range=(0, 2)).read()
    bucket.get_object(key, params={"versionId": "v1", "response-content-type": "a/b"}).read()
    print(name, "ok")

import alibabacloud_oss_v2 as oss  # a peer like oss2: scripts/install-peers.sh installs it

cfg = oss.config.load_default()
cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(ak, sk)
cfg.region = "cn-hangzhou"
cfg.endpoint = endpoint
cfg.use_path_style = True
client = oss.Client(cfg)
client.put_object(oss.PutObjectRequest(bucket="examplebucket", key=key, body=b"hello"))
client.get_object(oss.GetObjectRequest(bucket="examplebucket", key=key, range_header="bytes=0-2"))
print("alibabacloud-oss-v2 v4 ok")
