//! Bit layouts of L1, L2 and refcount table entries, and the compressed cluster descriptor.

/// Refcount is exactly one (L1 and standard L2 entries).
pub(crate) const OFLAG_COPIED: u64 = 1 << 63;
pub(crate) const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Standard cluster reads as zeros (v3 without extended L2 entries).
pub(crate) const OFLAG_ZERO: u64 = 1;
pub(crate) const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub(crate) const L1E_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
pub(crate) const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub(crate) const L2E_STD_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
pub(crate) const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
pub(crate) const REFT_RESERVED_MASK: u64 = 0x1ff;

/// Subclusters per cluster with extended L2 entries.
pub(crate) const SUBCLUSTERS: u32 = 32;
/// Compressed cluster sizes are counted in 512-byte sectors.
pub(crate) const SECTOR: u64 = 512;

/// What one L2 entry (its first 64 bits) says about a guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cluster {
    /// Nothing stored: reads from the backing file, or zeros.
    Unallocated,
    /// Reads as zeros, no host cluster.
    ZeroPlain,
    /// Reads as zeros, with a preallocated host cluster.
    ZeroAlloc(u64),
    /// Data at this host offset (for extended L2 entries, subject to the subcluster bitmap).
    Normal(u64),
    /// Compressed data: `size` bytes starting at host byte `offset` (not aligned).
    Compressed { offset: u64, size: u64 },
}

/// Classify an L2 entry the way qemu does: the zero flag only exists without extended L2 entries.
pub(crate) fn classify(entry: u64, extended_l2: bool, cluster_bits: u32) -> Cluster {
    if entry & OFLAG_COMPRESSED != 0 {
        let (offset, size) = parse_compressed(entry, cluster_bits);
        return Cluster::Compressed { offset, size };
    }
    let offset = entry & L2E_OFFSET_MASK;
    if entry & OFLAG_ZERO != 0 && !extended_l2 {
        return if offset != 0 { Cluster::ZeroAlloc(offset) } else { Cluster::ZeroPlain };
    }
    if offset == 0 {
        Cluster::Unallocated
    } else {
        Cluster::Normal(offset)
    }
}

/// Bit position of the sector count in a compressed descriptor.
fn csize_shift(cluster_bits: u32) -> u32 {
    62 - (cluster_bits - 8)
}

/// Host byte offset and byte length (to the end of its last sector) of a compressed cluster.
pub(crate) fn parse_compressed(entry: u64, cluster_bits: u32) -> (u64, u64) {
    let shift = csize_shift(cluster_bits);
    let offset = entry & ((1u64 << shift) - 1);
    let sectors = ((entry >> shift) & ((1u64 << (cluster_bits - 8)) - 1)) + 1;
    (offset, sectors * SECTOR - (offset % SECTOR))
}

/// The L2 entry for `len` compressed bytes stored at host byte `offset`.
pub(crate) fn compressed_entry(offset: u64, len: u64, cluster_bits: u32) -> u64 {
    let extra_sectors = (offset + len - 1) / SECTOR - offset / SECTOR;
    OFLAG_COMPRESSED | (extra_sectors << csize_shift(cluster_bits)) | offset
}

/// Largest host offset a compressed descriptor can hold.
pub(crate) fn max_compressed_offset(cluster_bits: u32) -> u64 {
    (1u64 << csize_shift(cluster_bits)).min(1 << 56) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_descriptor_round_trips_for_every_cluster_size() {
        for bits in 9..=21 {
            let cs = 1u64 << bits;
            for (offset, len) in [(0x50000u64, 1u64), (0x686f5, 700), (0x1234_5601, cs - 1), (cs * 3 + 511, cs - 1)] {
                if len > cs {
                    continue;
                }
                let entry = compressed_entry(offset, len, bits);
                assert_eq!(
                    classify(entry, false, bits),
                    Cluster::Compressed { offset, size: parse_compressed(entry, bits).1 }
                );
                let (o, size) = parse_compressed(entry, bits);
                assert_eq!(o, offset);
                // The stated sectors cover the data and end on a sector boundary.
                assert!(size >= len);
                assert_eq!((o + size) % SECTOR, 0);
                assert!(size < len + SECTOR);
            }
        }
    }

    #[test]
    fn qemu_descriptor_decodes() {
        // From a qemu-img convert -c image with 64 KiB clusters: 68 sectors at 0x60000.
        let (o, s) = parse_compressed(0x50c0_0000_0006_0000 & !OFLAG_COPIED, 16);
        assert_eq!((o, s), (0x60000, 68 * 512));
        let (o, s) = parse_compressed(0x4040_0000_0006_86f5, 16);
        assert_eq!((o, s), (0x686f5, 2 * 512 - 0xf5));
    }

    #[test]
    fn classify_zero_flag_only_without_extended_l2() {
        assert_eq!(classify(1, false, 16), Cluster::ZeroPlain);
        assert_eq!(classify(0x50001, false, 16), Cluster::ZeroAlloc(0x50000));
        assert_eq!(classify(1, true, 16), Cluster::Unallocated);
        assert_eq!(classify(OFLAG_COPIED | 0x50000, true, 16), Cluster::Normal(0x50000));
        assert_eq!(classify(OFLAG_COPIED, false, 16), Cluster::Unallocated);
    }
}
