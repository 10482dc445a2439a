//! GUIDs and UUIDs as text, in the two byte layouts disk formats use.

/// Bytes in file order (VHD unique id; the ext4/XFS/btrfs UUIDs): `00112233-4455-6677-8899-aabbccddeeff`.
pub fn big_endian(b: &[u8; 16]) -> String {
    let h = imgport_wire::hex(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Microsoft's mixed-endian layout (GPT, VHDX): the first three fields are little-endian. Lower-case.
pub fn mixed_endian(b: &[u8; 16]) -> String {
    let mut swapped = *b;
    swapped[0..4].reverse();
    swapped[4..6].reverse();
    swapped[6..8].reverse();
    big_endian(&swapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        // The ESP type GUID as stored on disk.
        let esp = [0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b];
        assert_eq!(mixed_endian(&esp), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(big_endian(&esp), "28732ac1-1ff8-d211-ba4b-00a0c93ec93b");
        assert_eq!(big_endian(&[0xab; 16]), "abababab-abab-abab-abab-abababababab");
    }
}
