"""Drives the emulator's OSS endpoint with Alibaba's own Python SDKs (oss2 with V1 and V4 signatures, and
alibabacloud-oss-v2) and checks every answer: bucket and object operations, ranges, listings, multipart uploads
with CRC-64 checking, error codes, and what clients see under injected faults.

usage: oss_conformance.py SCENARIO CONFIG_JSON
CONFIG_JSON: {"endpoint": ..., "ak": ..., "sk": ..., "token": optional, "bucket": ..., "region": ...}
Prints "ok SCENARIO" (and facts such as "retries N") on success; raises on any mismatch.
"""
import base64
import email.utils
import hashlib
import json
import sys
import time

import oss2

scenario, cfg = sys.argv[1], json.loads(sys.argv[2])
endpoint, ak, sk = cfg["endpoint"], cfg["ak"], cfg["sk"]
token = cfg.get("token")
bucket_name = cfg.get("bucket", "conformance")
region = cfg.get("region", "cn-hangzhou")

KIB = 1024


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def crc64_of(data):
    c = oss2.utils.Crc64(0)
    c.update(data)
    return c.crc


def pattern(n, seed):
    block = hashlib.sha256(str(seed).encode()).digest() * 4096
    out = (block * (n // len(block) + 1))[:n]
    return out


def oss2_auth(version):
    if token:
        return oss2.StsAuth(ak, sk, token, auth_version=oss2.AUTH_VERSION_4 if version == 4 else oss2.AUTH_VERSION_1)
    return oss2.AuthV4(ak, sk) if version == 4 else oss2.Auth(ak, sk)


def oss2_bucket(version, name=None, crc=True):
    return oss2.Bucket(oss2_auth(version), endpoint, name or bucket_name, region=region, enable_crc=crc)


def expect_oss2_error(fn, code, status=None):
    try:
        fn()
    except oss2.exceptions.OssError as e:
        check(e.code == code, f"expected {code}, got {e.code} ({e.status}): {e.details}")
        if status is not None:
            check(e.status == status, f"expected HTTP {status} for {code}, got {e.status}")
        check(e.request_id, "error without x-oss-request-id")
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


def full_oss2(version):
    b = oss2_bucket(version)
    b.create_bucket()
    b.create_bucket()  # a repeated create by the owner succeeds
    info = b.get_bucket_info()
    check(info.name == bucket_name and info.location == f"oss-{region}", f"bucket info {info.name} {info.location}")
    check(b.get_bucket_location().location == f"oss-{region}", "bucket location")
    for bad_name in ("Bad_Name", "ab", "-abc"):
        bad = oss2_bucket(version, "placeholder")
        bad.bucket_name = bad_name  # oss2 checks names itself; the server must refuse them too
        expect_oss2_error(bad.create_bucket, "InvalidBucketName", 400)
    expect_oss2_error(lambda: oss2_bucket(version, "no-such-bucket-x").get_bucket_info(), "NoSuchBucket", 404)

    # Objects, with keys that need encoding.
    keys = ["dir/a b+c~*.txt", "dir/sub/x.bin", "dir/sub/y.bin", "top.txt", "zz/é.txt"]
    bodies = {k: pattern(1000 + i * 777, k) for i, k in enumerate(keys)}
    for k in keys:
        r = b.put_object(k, bodies[k], headers={"Content-Type": "text/plain", "x-oss-meta-owner": "imgport"})
        check(r.etag == hashlib.md5(bodies[k]).hexdigest().upper(), f"etag {r.etag}")
        check(r.crc == crc64_of(bodies[k]), "put crc")
    k = keys[0]
    data = bodies[k]
    got = b.get_object(k).read()
    check(got == data, "get whole object")
    check(b.get_object(k, byte_range=(10, 19)).read() == data[10:20], "range 10-19")
    r = b.get_object(k, byte_range=(10, 19))
    check(r.status == 206 and r.headers.get("Content-Range") == f"bytes 10-19/{len(data)}", "206 + Content-Range")
    check(b.get_object(k, byte_range=(len(data) - 5, None)).read() == data[-5:], "open range")
    check(b.get_object(k, byte_range=(None, 7)).read() == data[-7:], "suffix range")
    # Out of range: OSS ignores the Range and returns the whole object (200) ...
    r = b.get_object(k, byte_range=(len(data), len(data) + 10))
    check(r.status == 200 and r.read() == data, "out of range -> whole object")
    # ... unless standard behaviour is asked for.
    expect_oss2_error(
        lambda: b.get_object(k, byte_range=(len(data), len(data) + 10), headers={"x-oss-range-behavior": "standard"}),
        "InvalidRange", 416)
    h = b.head_object(k)
    check(h.content_length == len(data) and h.etag == hashlib.md5(data).hexdigest().upper(), "head")
    check(h.headers.get("x-oss-meta-owner") == "imgport" and h.content_type == "text/plain", "metadata kept")
    check(int(h.headers["x-oss-hash-crc64ecma"]) == crc64_of(data), "head crc")
    check(b.get_object_meta(k).content_length == len(data), "object meta")
    expect_oss2_error(lambda: b.get_object("nope"), "NoSuchKey", 404)
    try:
        b.head_object("nope")
        raise AssertionError("head of a missing key succeeded")
    except oss2.exceptions.NotFound:
        pass
    check(b.object_exists(k) and not b.object_exists("nope"), "object_exists")

    # Content-MD5: right, wrong, malformed.
    md5 = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    b.put_object("md5.txt", b"abc", headers={"Content-MD5": md5})
    expect_oss2_error(lambda: b.put_object("md5.txt", b"abd", headers={"Content-MD5": md5}), "InvalidDigest", 400)
    expect_oss2_error(lambda: b.put_object("md5.txt", b"abd", headers={"Content-MD5": "not-md5"}), "InvalidDigest", 400)
    check(b.get_object("md5.txt").read() == b"abc", "a rejected put leaves the old object")

    # Listings: v1 and v2, prefix, delimiter, paging.
    listed = [o.key for o in oss2.ObjectIterator(b, max_keys=2)]
    check(listed == sorted(keys + ["md5.txt"]), f"list all {listed}")
    r = b.list_objects(prefix="dir/", delimiter="/")
    check([o.key for o in r.object_list] == ["dir/a b+c~*.txt"] and r.prefix_list == ["dir/sub/"], "delimiter")
    r = b.list_objects(prefix="dir/sub/", max_keys=1)
    check(r.is_truncated and r.next_marker == "dir/sub/x.bin", "v1 paging")
    r = b.list_objects(prefix="dir/sub/", marker=r.next_marker)
    check([o.key for o in r.object_list] == ["dir/sub/y.bin"] and not r.is_truncated, "v1 marker")
    listed = [o.key for o in oss2.ObjectIteratorV2(b, max_keys=2)]
    check(listed == sorted(keys + ["md5.txt"]), f"list v2 {listed}")
    r = b.list_objects_v2(delimiter="/", max_keys=2)
    check(r.prefix_list == ["dir/"] and [o.key for o in r.object_list] == ["md5.txt"] and r.is_truncated, "v2 page")
    r = b.list_objects_v2(delimiter="/", max_keys=2, continuation_token=r.next_continuation_token)
    check([o.key for o in r.object_list] == ["top.txt"] and r.prefix_list == ["zz/"] and not r.is_truncated, "v2 next")
    tops = [o.key for o in oss2.ObjectIteratorV2(b, delimiter="/")]
    check(tops == ["dir/", "md5.txt", "top.txt", "zz/"], f"v2 tops {tops}")

    # Multipart with CRC checking (enable_crc makes oss2 compare each part's and the object's CRC-64).
    key = "big/object.bin"
    sizes = [100 * KIB, 150 * KIB, 33 * KIB]
    parts_data = [pattern(s, i) for i, s in enumerate(sizes)]
    upload_id = b.init_multipart_upload(key, headers={"Content-Type": "application/x-disk"}).upload_id
    parts = []
    for i, pd in enumerate(parts_data, start=1):
        r = b.upload_part(key, upload_id, i, pd)
        check(r.crc == crc64_of(pd), "part crc")
        parts.append(oss2.models.PartInfo(i, r.etag, size=len(pd), part_crc=r.crc))
    # ListParts, paged one part per page.
    seen, marker = [], ""
    while True:
        r = b.list_parts(key, upload_id, marker=marker, max_parts=1)
        seen += [(p.part_number, p.etag, p.size) for p in r.parts]
        if not r.is_truncated:
            break
        marker = r.next_marker
    check(seen == [(p.part_number, p.etag, p.size) for p in parts], f"list parts {seen}")
    ups = b.list_multipart_uploads()
    check([u.upload_id for u in ups.upload_list] == [upload_id], "list uploads")
    # Completion errors.
    # oss2 sorts the parts itself, so send a descending list as raw XML.
    descending = "<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{p.part_number}</PartNumber><ETag>\"{p.etag}\"</ETag></Part>" for p in reversed(parts)
    ) + "</CompleteMultipartUpload>"
    expect_oss2_error(lambda: b._Bucket__do_object("POST", key, data=descending, params={"uploadId": upload_id}),
                      "InvalidPartOrder", 400)
    expect_oss2_error(lambda: b._Bucket__do_object("POST", key, data="<Complete", params={"uploadId": upload_id}),
                      "MalformedXML", 400)
    bad = [oss2.models.PartInfo(1, "0" * 32, size=1, part_crc=0)] + parts[1:]
    expect_oss2_error(lambda: b.complete_multipart_upload(key, upload_id, bad), "InvalidPart", 400)
    expect_oss2_error(lambda: b.complete_multipart_upload(key, "F" * 32, parts), "NoSuchUpload", 404)
    expect_oss2_error(lambda: b.upload_part(key, upload_id, 10001, b"x"), "InvalidArgument", 400)
    expect_oss2_error(lambda: b.upload_part(key, upload_id, 0, b"x"), "InvalidArgument", 400)
    r = b.complete_multipart_upload(key, upload_id, parts)
    whole = b"".join(parts_data)
    check(r.crc == crc64_of(whole), "complete crc")
    md5s = b"".join(hashlib.md5(p).digest() for p in parts_data)
    check(r.etag == hashlib.md5(md5s).hexdigest().upper() + "-3", f"multipart etag {r.etag}")
    got = b.get_object(key)
    check(got.read() == whole, "multipart object content")  # oss2 checks the CRC of the download too
    check(got.headers.get("x-oss-object-type") == "Multipart", "object type")
    check(b.get_object(key, byte_range=(100 * KIB - 3, 100 * KIB + 2)).read() == whole[100 * KIB - 3:100 * KIB + 3],
          "range across parts")
    check(b.head_object(key).content_type == "application/x-disk", "content type from initiate")

    # EntityTooSmall: a part other than the last under 100 KiB.
    up2 = b.init_multipart_upload("small.bin").upload_id
    small = [b.upload_part("small.bin", up2, i, pattern(10 * KIB, i)) for i in (1, 2)]
    expect_oss2_error(lambda: b.complete_multipart_upload(
        "small.bin", up2, [oss2.models.PartInfo(i + 1, r.etag) for i, r in enumerate(small)]), "EntityTooSmall", 400)
    # Abort, then the upload is gone.
    b.abort_multipart_upload("small.bin", up2)
    expect_oss2_error(lambda: b.list_parts("small.bin", up2), "NoSuchUpload", 404)
    expect_oss2_error(lambda: b.abort_multipart_upload("small.bin", up2), "NoSuchUpload", 404)
    check(b.list_multipart_uploads().upload_list == [], "no uploads left")

    # Uploads listed with a delimiter, one entry a page: each folder and upload comes once, and paging ends.
    folder = [b.init_multipart_upload(k).upload_id for k in ("dir/a", "dir/b", "top")]
    seen, km, im = [], "", ""
    for _ in range(10):
        page = b.list_multipart_uploads(delimiter="/", key_marker=km, upload_id_marker=im, max_uploads=1)
        seen += page.prefix_list + [u.key for u in page.upload_list]
        if not page.is_truncated:
            break
        km, im = page.next_key_marker, page.next_upload_id_marker
    check(seen == ["dir/", "top"], f"uploads paged with a delimiter: {seen}")
    for k, u in zip(("dir/a", "dir/b", "top"), folder):
        b.abort_multipart_upload(k, u)

    # Delete: a non-empty bucket refuses.
    expect_oss2_error(lambda: b.delete_bucket(), "BucketNotEmpty", 409)
    pending = b.init_multipart_upload("pending").upload_id
    for k in keys + ["md5.txt", key]:
        b.delete_object(k)
    b.delete_object("never-existed")  # deleting a missing key succeeds
    expect_oss2_error(lambda: b.delete_bucket(), "BucketNotEmpty", 409)  # an upload still in progress
    b.abort_multipart_upload("pending", pending)
    b.delete_bucket()
    expect_oss2_error(lambda: b.get_bucket_info(), "NoSuchBucket", 404)


def v2_client(region_name=None, retries=None, creds=None):
    import alibabacloud_oss_v2 as oss
    cfg_ = oss.config.load_default()
    if creds is None:
        creds = (ak, sk, token)
    cfg_.credentials_provider = oss.credentials.StaticCredentialsProvider(creds[0], creds[1], creds[2])
    cfg_.region = region_name or region
    cfg_.endpoint = endpoint
    cfg_.use_path_style = True
    if retries is not None:
        cfg_.retry_max_attempts = retries
    return oss, oss.Client(cfg_)


def v2_code(err):
    inner = err.unwrap() if hasattr(err, "unwrap") else err
    return getattr(inner, "code", None), getattr(inner, "status_code", None), inner


def full_v2():
    oss, c = v2_client()
    bk = bucket_name
    c.put_bucket(oss.PutBucketRequest(bucket=bk, create_bucket_configuration=oss.CreateBucketConfiguration(
        storage_class="Standard")))
    data = pattern(300 * KIB + 17, "v2")
    r = c.put_object(oss.PutObjectRequest(bucket=bk, key="v2/obj", body=data))
    check(int(r.hash_crc64) == crc64_of(data), "v2 put crc")
    r = c.get_object(oss.GetObjectRequest(bucket=bk, key="v2/obj", range_header="bytes=5-14"))
    check(r.body.read() == data[5:15] and r.status_code == 206, "v2 range")
    h = c.head_object(oss.HeadObjectRequest(bucket=bk, key="v2/obj"))
    check(h.content_length == len(data), "v2 head")
    r = c.list_objects_v2(oss.ListObjectsV2Request(bucket=bk, prefix="v2/"))
    check([o.key for o in r.contents] == ["v2/obj"], "v2 list")
    # Multipart (the SDK checks CRC-64 of parts and of the completed object by default).
    init = c.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=bk, key="v2/mp"))
    chunks = [pattern(120 * KIB, "a"), pattern(5 * KIB, "b")]
    done = []
    for i, ch in enumerate(chunks, start=1):
        up = c.upload_part(oss.UploadPartRequest(bucket=bk, key="v2/mp", upload_id=init.upload_id, part_number=i,
                                                 body=ch))
        check(int(up.hash_crc64) == crc64_of(ch), "v2 part crc")
        done.append(oss.UploadPart(part_number=i, etag=up.etag))
    lp = c.list_parts(oss.ListPartsRequest(bucket=bk, key="v2/mp", upload_id=init.upload_id))
    check([p.part_number for p in lp.parts] == [1, 2], "v2 list parts")
    comp = c.complete_multipart_upload(oss.CompleteMultipartUploadRequest(
        bucket=bk, key="v2/mp", upload_id=init.upload_id,
        complete_multipart_upload=oss.CompleteMultipartUpload(parts=done)))
    check(int(comp.hash_crc64) == crc64_of(b"".join(chunks)), "v2 complete crc")
    got = c.get_object(oss.GetObjectRequest(bucket=bk, key="v2/mp")).body.read()
    check(got == b"".join(chunks), "v2 multipart content")
    # Abort and list uploads.
    init2 = c.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=bk, key="v2/aborted"))
    lu = c.list_multipart_uploads(oss.ListMultipartUploadsRequest(bucket=bk))
    check([u.upload_id for u in lu.uploads] == [init2.upload_id], "v2 list uploads")
    c.abort_multipart_upload(oss.AbortMultipartUploadRequest(bucket=bk, key="v2/aborted", upload_id=init2.upload_id))
    # The uploader helper: concurrent multipart with its own CRC checks.
    big = pattern(700 * KIB + 3, "uploader")
    import io
    up = c.uploader(part_size=200 * KIB, parallel_num=3)
    res = up.upload_from(oss.PutObjectRequest(bucket=bk, key="v2/uploader"), io.BytesIO(big))
    check(c.get_object(oss.GetObjectRequest(bucket=bk, key="v2/uploader")).body.read() == big, "uploader content")
    for k in ["v2/obj", "v2/mp", "v2/uploader"]:
        c.delete_object(oss.DeleteObjectRequest(bucket=bk, key=k))
    c.delete_bucket(oss.DeleteBucketRequest(bucket=bk))


def wrong_secret():
    oss2_bucket(1).create_bucket()
    # Every client, with a secret the emulator does not know: SignatureDoesNotMatch with the server's StringToSign.
    for version in (1, 4):
        b = oss2.Bucket(oss2.Auth(ak, "a-wrong-secret") if version == 1 else oss2.AuthV4(ak, "a-wrong-secret"),
                        endpoint, bucket_name, region=region)
        e = expect_oss2_error(lambda: b.put_object("k", b"x"), "SignatureDoesNotMatch", 403)
        check(e.details.get("StringToSign") and e.details.get("OSSAccessKeyId") == ak, f"details {e.details}")
        check(e.ec == "0002-00000040", f"EC {e.ec}")
        check("a-wrong-secret" not in e.body.decode(errors="replace"), "secret echoed")
    oss, c = v2_client(creds=(ak, "a-wrong-secret", None), retries=1)
    try:
        c.put_object(oss.PutObjectRequest(bucket=bucket_name, key="k", body=b"x"))
        raise AssertionError("v2 with a wrong secret succeeded")
    except Exception as err:  # noqa: BLE001 - the SDK wraps service errors
        code, status, _ = v2_code(err)
        check(code == "SignatureDoesNotMatch" and status == 403, f"v2 got {code} {status}")
    b = oss2.Bucket(oss2.Auth("LTAInobodyknowsthis1", sk), endpoint, bucket_name)
    expect_oss2_error(lambda: b.put_object("k", b"x"), "InvalidAccessKeyId", 403)
    # Anonymous requests are refused.
    b = oss2.Bucket(oss2.AnonymousAuth(), endpoint, bucket_name)
    expect_oss2_error(lambda: b.get_object("k"), "AccessDenied", 403)
    # Presigned URLs (V1 and V4): a good one works, a tampered one does not, an expired one is refused.
    import requests
    for version in (1, 4):
        b = oss2_bucket(version)
        b.put_object("presigned", b"via url")
        url = b.sign_url("GET", "presigned", 60)
        check(requests.get(url).content == b"via url", f"presigned v{version}")
        r = requests.get(url.replace("presigned", "presignee"))
        check(r.status_code == 403 and b"SignatureDoesNotMatch" in r.content, f"tampered v{version}: {r.status_code}")
    b = oss2_bucket(1)
    url = b.sign_url("GET", "presigned", -10)
    r = requests.get(url)
    check(r.status_code == 403 and b"Request has expired" in r.content, f"expired presign: {r.status_code} {r.content}")


def sts_ok():
    for version in (1, 4):
        b = oss2_bucket(version)
        b.put_object(f"sts-{version}", b"with a token")
        check(b.get_object(f"sts-{version}").read() == b"with a token", "sts get")
    oss, c = v2_client()
    c.put_object(oss.PutObjectRequest(bucket=bucket_name, key="sts-v2", body=b"x"))


def sts_expired():
    for version in (1, 4):
        e = expect_oss2_error(lambda: oss2_bucket(version).put_object("k", b"x"), "SecurityTokenExpired", 403)
        check(e.ec == "0002-00000007", f"EC {e.ec}")


def sts_missing_token():
    b = oss2.Bucket(oss2.Auth(ak, sk), endpoint, bucket_name)
    expect_oss2_error(lambda: b.put_object("k", b"x"), "InvalidSecurityToken", 403)


def expect_code():
    # One request that must fail with the configured error (no retries): cfg["code"], cfg["status"].
    b = oss2_bucket(cfg.get("version", 1))
    e = expect_oss2_error(lambda: b.put_object("fault", b"x" * 10), cfg["code"], cfg["status"])
    print("message", e.message)


def v2_retrying_put():
    # alibabacloud-oss-v2 retries 5xx and throttling itself; the put must succeed and the object be right.
    oss, c = v2_client(retries=cfg.get("attempts", 5))
    data = pattern(200 * KIB, "retry")
    c.put_object(oss.PutObjectRequest(bucket=bucket_name, key="retried", body=data))
    check(c.get_object(oss.GetObjectRequest(bucket=bucket_name, key="retried")).body.read() == data, "retried content")


def retrying_multipart():
    # A client that retries each request itself (as imgport's uploader will): a multipart upload under faults
    # must end with the right object; prints how many retries it took.
    b = oss2_bucket(4)
    retries = 0

    def attempt(fn):
        nonlocal retries
        for _ in range(60):
            try:
                return fn()
            except (oss2.exceptions.ServerError, oss2.exceptions.RequestError, oss2.exceptions.InconsistentError) as e:
                if isinstance(e, oss2.exceptions.ServerError) and e.status < 500 and e.code != "RequestTimeTooSkewed":
                    raise
                retries += 1
                time.sleep(0.01)
        raise AssertionError("too many retries")

    key = "faulty/object.bin"
    chunks = [pattern(100 * KIB + i, i) for i in range(8)]
    upload_id = attempt(lambda: b.init_multipart_upload(key).upload_id)
    parts = []
    for i, ch in enumerate(chunks, start=1):
        r = attempt(lambda: b.upload_part(key, upload_id, i, ch))
        parts.append(oss2.models.PartInfo(i, r.etag, size=len(ch), part_crc=r.crc))
    attempt(lambda: b.complete_multipart_upload(key, upload_id, parts))
    whole = b"".join(chunks)
    got = attempt(lambda: b.get_object(key).read())
    check(got == whole, "content after faults")
    print("retries", retries)


def dropped_get():
    # The response is cut after a few bytes: the client must notice (never a short read taken as success),
    # then resume with a range request.
    b = oss2_bucket(1)
    data = pattern(256 * KIB, "drop")
    key = cfg.get("key", "drop.bin")
    try:
        got = b.get_object(key).read()
        raise AssertionError(f"a dropped response read as success ({len(got)} bytes)")
    except (oss2.exceptions.RequestError, oss2.exceptions.InconsistentError, Exception) as e:  # noqa: BLE001
        if isinstance(e, AssertionError):
            raise
        print("client saw", type(e).__name__)
    got = b.get_object(key).read()
    check(got == data, "second read")


def dropped_put():
    b = oss2_bucket(1)
    data = pattern(256 * KIB, "dropput")
    try:
        b.put_object("dropput.bin", data)
        raise AssertionError("a dropped request reported success")
    except oss2.exceptions.RequestError as e:
        print("client saw", type(e).__name__)
    b.put_object("dropput.bin", data)
    check(b.get_object("dropput.bin").read() == data, "put after drop")


def skew():
    # The server's clock is off by cfg["skew"] seconds: a normal client gets RequestTimeTooSkewed, whose Date
    # header gives the offset; signing with the corrected time then works.
    b = oss2_bucket(1)
    e = expect_oss2_error(lambda: b.put_object("skew", b"x"), "RequestTimeTooSkewed", 403)
    server = email.utils.parsedate_to_datetime(e.headers["Date"]).timestamp()
    offset = server - time.time()
    check(abs(offset - cfg["skew"]) < 5, f"offset from Date {offset} vs {cfg['skew']}")
    check(e.details.get("ServerTime") and e.details.get("RequestTime"), "times in the body")
    oss, c = v2_client(retries=1)
    try:
        c.put_object(oss.PutObjectRequest(bucket=bucket_name, key="skew", body=b"x"))
        raise AssertionError("v2 put with a skewed clock succeeded")
    except Exception as err:  # noqa: BLE001
        code, _, _ = v2_code(err)
        check(code == "RequestTimeTooSkewed", f"v2 saw {code}")
    date = email.utils.formatdate(time.time() + offset, usegmt=True)
    c.put_object(oss.PutObjectRequest(bucket=bucket_name, key="skew", body=b"fixed", headers={"x-oss-date": date}))
    r = c.get_object(oss.GetObjectRequest(bucket=bucket_name, key="skew",
                                          headers={"x-oss-date": email.utils.formatdate(time.time() + offset,
                                                                                          usegmt=True)}))
    check(r.body.read() == b"fixed", "put with corrected clock")


def persist_write():
    b = oss2_bucket(4)
    b.create_bucket()
    b.put_object("kept.txt", b"survives a restart", headers={"x-oss-meta-a": "b"})
    up = b.init_multipart_upload("resumable.bin").upload_id
    r = b.upload_part("resumable.bin", up, 1, pattern(100 * KIB, 1))
    print(json.dumps({"upload_id": up, "etag": r.etag, "crc": r.crc}))


def persist_check():
    b = oss2_bucket(1)
    check(b.get_object("kept.txt").read() == b"survives a restart", "object after restart")
    check(b.head_object("kept.txt").headers.get("x-oss-meta-a") == "b", "metadata after restart")
    up = cfg["upload_id"]
    parts = b.list_parts("resumable.bin", up).parts
    check([(p.part_number, p.etag) for p in parts] == [(1, cfg["etag"])], "parts after restart")
    r = b.upload_part("resumable.bin", up, 2, b"tail")
    done = b.complete_multipart_upload("resumable.bin", up, [oss2.models.PartInfo(1, cfg["etag"], size=100 * KIB,
                                                                                  part_crc=cfg["crc"]),
                                                               oss2.models.PartInfo(2, r.etag, size=4, part_crc=r.crc)])
    check(b.get_object("resumable.bin").read() == pattern(100 * KIB, 1) + b"tail", "completed after restart")
    check(done.crc is not None, "crc")


def setup():
    b = oss2_bucket(1)
    b.create_bucket()
    if cfg.get("put"):
        b.put_object(cfg["put"], pattern(cfg.get("size", 256 * KIB), cfg.get("seed", "drop")))


SCENARIOS = {
    "full-oss2-v1": lambda: full_oss2(1),
    "full-oss2-v4": lambda: full_oss2(4),
    "full-v2": full_v2,
    "wrong-secret": wrong_secret,
    "sts-ok": sts_ok,
    "sts-expired": sts_expired,
    "sts-missing-token": sts_missing_token,
    "expect-code": expect_code,
    "v2-retrying-put": v2_retrying_put,
    "retrying-multipart": retrying_multipart,
    "dropped-get": dropped_get,
    "dropped-put": dropped_put,
    "skew": skew,
    "persist-write": persist_write,
    "persist-check": persist_check,
    "setup": setup,
}

SCENARIOS[scenario]()
print("ok", scenario)
