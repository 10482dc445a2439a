# The HCL2 form of golden-image.json (Packer 1.6.6 reads both): a `file` builder makes the disk image, then the
# post-processor sequence `manifest` -> `shell-local` hands it to imgport. See README.md.

variable "source_image" {
  type        = string
  default     = ""
  description = "The disk image the file builder copies [default: ../demo-debian12.qcow2 beside this template]."
}
variable "output" {
  type    = string
  default = "output/debian12.qcow2"
}
variable "image_name" {
  type        = string
  default     = ""
  description = "The custom image's name [default: debian12-packer-TIMESTAMP]."
}
variable "cloud" {
  type    = string
  default = "alibaba"
}
variable "region" {
  type        = string
  default     = ""
  description = "[default: imgport's: ALIBABA_CLOUD_REGION_ID, else cn-hangzhou]"
}
variable "bucket" {
  type        = string
  default     = ""
  description = "An OSS bucket in the region (required for --cloud alibaba)."
}
variable "imgport" {
  type    = string
  default = "imgport"
}

locals {
  source_image = var.source_image != "" ? var.source_image : "${path.root}/../demo-debian12.qcow2"
  image_name   = var.image_name != "" ? var.image_name : "debian12-packer-${formatdate("YYYYMMDDhhmmss", timestamp())}"
}

source "file" "debian12" {
  source = local.source_image
  target = var.output
}

build {
  sources = ["source.file.debian12"]

  post-processors {
    post-processor "manifest" {
      output = "packer-manifest.json"
    }
    post-processor "shell-local" {
      environment_vars = [
        "IMGPORT=${var.imgport}",
        "IMAGE_NAME=${local.image_name}",
        "CLOUD=${var.cloud}",
        "REGION=${var.region}",
        "BUCKET=${var.bucket}",
      ]
      inline = [
        "\"$IMGPORT\" import --packer-manifest packer-manifest.json --name \"$IMAGE_NAME\" --cloud \"$CLOUD\" $${REGION:+--region \"$REGION\"} $${BUCKET:+--bucket \"$BUCKET\"} --tag built-by=packer --tag packer-build=\"$PACKER_BUILD_NAME\"",
      ]
    }
  }
}
