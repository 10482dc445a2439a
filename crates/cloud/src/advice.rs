//! What an ECS, RAM or import-task error code means for the user, and what fixes it: every ImportImage, CopyImage
//! and RAM code in Alibaba's API reference that a user can act on. A code not listed gets no advice, and the caller
//! shows the service's own message with its RequestId.

use serde::Serialize;

/// The cause of an error in plain words, and the fix: a command or a console page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Advice {
    pub cause: &'static str,
    pub fix: &'static str,
    /// Trying again later may succeed without any change (throttling, a busy service, a role still propagating).
    pub transient: bool,
}

const fn fixed(cause: &'static str, fix: &'static str) -> Advice {
    Advice { cause, fix, transient: false }
}

const fn later(cause: &'static str, fix: &'static str) -> Advice {
    Advice { cause, fix, transient: true }
}

/// The advice for an error `code`, if there is any.
pub fn for_code(code: &str) -> Option<Advice> {
    Some(match code {
        // The import role.
        "NoSetRoletoECSServiceAcount" | "NoSetRoletoECSServiceAccount" => fixed(
            "ECS may not read your bucket: the role AliyunECSImageImportDefaultRole is missing, does not trust \
             ecs.aliyuncs.com, or lacks the policy AliyunECSImageImportRolePolicy",
            "rerun with --create-role, or authorise it once at https://ram.console.aliyun.com/role/authorize?request=\
             %7B%22Services%22%3A%5B%7B%22Service%22%3A%22ECS%22%2C%22Roles%22%3A%5B%7B%22RoleName%22%3A%22\
             AliyunECSImageImportDefaultRole%22%2C%22TemplateId%22%3A%22ECSImportRole%22%7D%5D%7D%5D%7D",
        ),
        "InvalidOSS.NotAuthorized" => fixed(
            "the import role may not read the OSS object",
            "attach AliyunECSImageImportRolePolicy to AliyunECSImageImportDefaultRole (or rerun with --create-role), \
             and check the bucket policy does not deny it",
        ),
        "EntityNotExist.Role" => fixed(
            "the RAM role does not exist",
            "rerun with --create-role, or create AliyunECSImageImportDefaultRole in the RAM console",
        ),
        "EntityAlreadyExists.Role" => {
            fixed("a RAM role of that name already exists", "use the existing role, or pick another name")
        }
        "NoPermission" | "Forbidden.RAM" | "Forbidden" | "Forbidden.NotAuthorized" => fixed(
            "your credentials are not allowed to make this call",
            "grant the RAM user AliyunECSFullAccess and AliyunRAMFullAccess (or the narrower actions the docs list), \
             or use other credentials (imgport auth whoami shows which are in use)",
        ),
        "InvalidAccessKeyId.NotFound" | "InvalidAccessKeyId" => fixed(
            "the AccessKey ID is not known to Alibaba Cloud",
            "check ALIBABA_CLOUD_ACCESS_KEY_ID or the profile (imgport auth whoami)",
        ),
        "SignatureDoesNotMatch" | "IncompleteSignature" => fixed(
            "the AccessKey secret does not match the AccessKey ID",
            "check ALIBABA_CLOUD_ACCESS_KEY_SECRET or the profile (imgport auth whoami)",
        ),
        "InvalidSecurityToken.Expired" | "InvalidSecurityToken.Expired.Token" => {
            fixed("the temporary credentials expired", "refresh them (or use a source that refreshes itself)")
        }
        // The uploaded object and its bucket.
        "InvalidOSSObject.NotFound" => fixed(
            "the OSS object to import does not exist",
            "check --bucket and --key; the object may have been deleted before the import read it",
        ),
        "InvalidOSSObject.Size" => fixed("the OSS object is empty", "upload the image again"),
        "InvalidOSSObject.NeedRestore" => fixed(
            "the OSS object is in the Archive or Cold Archive class and must be restored before ECS can read it",
            "restore it (ossutil restore oss://BUCKET/KEY) and wait, or upload it to a Standard-class bucket",
        ),
        "UnsupportedSuffix.OSSObject" => {
            fixed("ECS refuses the object's name suffix", "upload it under a key ending in .qcow2, .raw or .vhd")
        }
        "InvalidOSSBucket.NotFound" => fixed(
            "the OSS bucket does not exist, or not in the import region",
            "create the bucket in the import region (ossutil mb oss://BUCKET --region REGION) or pick another",
        ),
        "InvalidOSSBucket.NotMatched" | "InvalidOSSBucket.RegionNotMatched" => fixed(
            "the OSS bucket is in another region than the import",
            "use a bucket in the import region, or import in the bucket's region and --copy-to the target",
        ),
        "InvalidOSSBucket.FlowLimit" => {
            later("the bucket is throttled by a traffic limit", "retry later, or lift the bucket's flow limit")
        }
        "InvalidOSSBucket.EncryptUnsupported" => fixed(
            "ECS cannot read an object encrypted this way (KMS server-side encryption)",
            "upload to a bucket without KMS default encryption, or with OSS-managed (AES256) encryption",
        ),
        // The image's parameters.
        "InvalidImageName.Duplicated" => fixed(
            "an image of that name already exists in the region",
            "pick another --name, or delete the other image first (imgport images delete ID)",
        ),
        "InvalidImageName.Malformed" => fixed(
            "the image name is not allowed: 2-128 characters, starting with a letter, not with aliyun or acs: or \
             http(s)://, of letters, digits, '.', '_', '-', ':', ',', '(', ')', '[', ']' and spaces",
            "pick a name that follows these rules",
        ),
        "InvalidDescription.Malformed" => {
            fixed("the description is not allowed (2-256 characters, not starting with http(s)://)", "shorten it")
        }
        "InvalidImageFamily.Malformed" => fixed(
            "the image family is not allowed: 2-128 characters, starting with a letter, not with aliyun or acs:",
            "pick another --family",
        ),
        "InvalidImageFormat.Malformed" | "InvalidParameter.Format" => fixed(
            "ECS does not accept the declared image format",
            "import QCOW2, RAW or VHD; imgport converts other formats unless told not to",
        ),
        "InvalidImageFormat.RegionNotSupported" => {
            fixed("this region does not accept the image format", "import as RAW or VHD, or into another region")
        }
        "InvalidImageSize" | "InvalidSystemDiskSize" | "InvalidSystemDiskSize.ValueNotSupported" => fixed(
            "the system disk size is outside what ECS accepts (at least the image's virtual size, 1-2048 GiB)",
            "set --disk-size to at least the image's virtual size in GiB",
        ),
        "InvalidDataDiskSize" => {
            fixed("a data disk's size is outside 5-32768 GiB or below its image", "set the data disk's size")
        }
        "InvalidVHDImage.IncorrectSize" => fixed(
            "ECS rejects a VHD whose virtual size is not a whole number of MiB",
            "let imgport rewrite it (the default), or convert it: qemu-img convert -O qcow2",
        ),
        "InvalidBootMode.NotSupport" | "InvalidBootMode.NotSupported" => fixed(
            "the boot mode is not supported with this architecture or OS",
            "drop --boot-mode to let imgport derive it from the image, or choose BIOS/UEFI to match it",
        ),
        "InvalidArchitecture.PlatformUnsupported" | "InvalidArchitecture.Malformed" => fixed(
            "the architecture does not fit the platform",
            "drop --arch to derive it from the image, or choose x86_64/arm64 to match it",
        ),
        "InvalidPlatform.ValueNotSupported" | "InvalidParameter.Platform" => {
            fixed("ECS does not know this platform", "drop --platform to derive it, or use a listed value")
        }
        "InvalidLicenseType.BYOLOnly" | "InvalidLicenseType.NotSupported" => {
            fixed("this OS may only be imported with its own licence", "add --license-type BYOL")
        }
        "InvalidTagKey.Malformed" | "InvalidTagValue.Malformed" | "InvalidTag.Malformed" => fixed(
            "a tag is not allowed: keys 1-128 and values up to 128 characters, neither starting with aliyun or acs: \
             nor containing http(s)://",
            "change the tag",
        ),
        "TagKey.Duplication" | "InvalidTagKey.Duplicated" => fixed("a tag key is given twice", "give each key once"),
        "InvalidTagCount" | "InvalidTag.Count" => fixed("at most 20 tags fit on a resource", "use fewer tags"),
        "IdempotentParameterMismatch" => fixed(
            "a request with the same ClientToken but other parameters was made before",
            "rerun with the same parameters; for other parameters use another --name",
        ),
        // Quotas, account and service state.
        "QuotaExceed.Image" => fixed(
            "the region's custom image quota is used up",
            "delete old images (imgport images list --owner self) or raise the quota at \
             https://quotas.console.aliyun.com/products/ecs/quotas",
        ),
        "Account.Arrearage" | "InvalidAccountStatus.NotEnoughBalance" => {
            fixed("the account has an overdue payment", "settle it in the billing console")
        }
        "ImageIsImporting" | "InvalidStatus.ImageIsCreating" => later(
            "the image is still being imported",
            "wait for it (imgport images wait ID) or cancel it (imgport images cancel ID)",
        ),
        "OperationDenied.ImageCopying" => {
            later("the image is being copied", "cancel the copy (imgport images cancel ID) or wait for it")
        }
        "ImageUsingByInstance" => fixed(
            "instances run this image",
            "release or re-image them, or `imgport images delete ID --force` (the instances keep running but cannot re-initialise their disk)",
        ),
        "ImageUseShared" => fixed(
            "the image is shared with other accounts",
            "stop sharing it first (imgport images unshare ID --account ACCOUNT)",
        ),
        "IncorrectImageStatus" | "IncorrectImageStatus.ImageNotAvailable" => {
            fixed("the image is not Available", "wait for it, or check why it failed (imgport images show ID)")
        }
        "IncorrectDestinationRegion" => {
            fixed("a copy into the image's own region", "copy into another region, or use the image as it is")
        }
        "InvalidRegionId.NotFound" | "DestinationRegion.NotFound" | "InvalidRegionId.MalFormed" => {
            fixed("the region is not an ECS region this account can use", "check --region / --copy-to")
        }
        "InvalidImageId.NotFound" => fixed("the image does not exist in that region", "check the id and the region"),
        "InvalidAccount.NotFound" | "InvalidAccount.NotExist" => {
            fixed("an account to share with does not exist", "check the account id (a number)")
        }
        "Throttling" | "Throttling.User" | "Throttling.Api" | "ServiceUnavailable" | "InternalError" => {
            later("the service is busy or failed for a moment", "retry later; imgport retries a few times itself")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_documented_import_code_has_advice() {
        // The codes the reference lists for ImportImage and the role (alibaba-cloud.md).
        for code in [
            "NoSetRoletoECSServiceAcount",
            "InvalidOSS.NotAuthorized",
            "InvalidOSSObject.NotFound",
            "InvalidOSSObject.Size",
            "InvalidOSSObject.NeedRestore",
            "UnsupportedSuffix.OSSObject",
            "InvalidOSSBucket.NotFound",
            "InvalidOSSBucket.NotMatched",
            "InvalidOSSBucket.FlowLimit",
            "InvalidOSSBucket.EncryptUnsupported",
            "InvalidImageName.Duplicated",
            "InvalidImageName.Malformed",
            "InvalidImageFormat.Malformed",
            "InvalidImageFormat.RegionNotSupported",
            "InvalidImageSize",
            "InvalidDataDiskSize",
            "InvalidVHDImage.IncorrectSize",
            "InvalidBootMode.NotSupport",
            "InvalidArchitecture.PlatformUnsupported",
            "InvalidLicenseType.BYOLOnly",
            "ImageIsImporting",
            "QuotaExceed.Image",
            "Account.Arrearage",
            "IdempotentParameterMismatch",
        ] {
            let a = super::for_code(code).unwrap_or_else(|| panic!("{code} has no advice"));
            assert!(!a.cause.is_empty() && !a.fix.is_empty(), "{code}");
        }
        assert!(super::for_code("Throttling.User").is_some_and(|a| a.transient));
        assert!(super::for_code("SomethingNew").is_none());
    }
}
