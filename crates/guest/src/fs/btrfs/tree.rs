//! B-tree nodes and searches. Each node read is checked before use: checksum (CRC32C), filesystem UUID, its own
//! address, the level and generation its parent expects, the first key its parent records, an item count that
//! fits the node, and strictly increasing keys. A child must sit exactly one level below its parent, so a search
//! descends at most eight levels and a pointer cycle is caught at the first repeated node.

use super::chunks::ChunkMap;
use super::corrupt;
use super::items::{Key, KEY_SIZE};
use super::superblock::{Superblock, CSUM_CRC32C, MAX_LEVEL};
use crate::bytes::{le32, le64, slice, u8_at};
use crate::fs::FsResult;
use crate::reader::Region;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

const HEADER_SIZE: usize = 101;
const LEAF_ITEM_SIZE: usize = KEY_SIZE + 8;
const KEY_PTR_SIZE: usize = KEY_SIZE + 16;
/// Bytes of decoded nodes kept in memory.
const CACHE_BYTES: usize = 4 << 20;
/// Nodes one search or scan may read: a 100 000-entry directory spans about 500 leaves, a fully read 512 MiB
/// file of 4 KiB extents about 700.
const MAX_NODES_PER_SCAN: usize = 100_000;

pub(super) const ROOT_TREE: u64 = 1;
pub(super) const CHUNK_TREE: u64 = 3;

/// Where a tree starts: its root node and what that node must say of itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct TreeRoot {
    pub id: u64,
    pub bytenr: u64,
    pub level: u8,
    pub generation: u64,
}

/// Names a tree in error messages.
struct TreeName(u64);

impl fmt::Display for TreeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ROOT_TREE => f.write_str("root tree"),
            CHUNK_TREE => f.write_str("chunk tree"),
            id => write!(f, "fs tree {id}"),
        }
    }
}

pub(super) struct Node {
    pub logical: u64,
    pub level: u8,
    pub generation: u64,
    pub nritems: usize,
    data: Box<[u8]>,
}

impl Node {
    fn key(&self, i: usize) -> Key {
        let size = if self.level == 0 { LEAF_ITEM_SIZE } else { KEY_PTR_SIZE };
        Key::parse(&self.data, HEADER_SIZE + i * size)
    }
    /// Child node address and the generation it must carry.
    fn child(&self, i: usize) -> (u64, u64) {
        let at = HEADER_SIZE + i * KEY_PTR_SIZE + KEY_SIZE;
        (le64(&self.data, at), le64(&self.data, at + 8))
    }
    /// Address of child `i` (interior nodes).
    #[cfg(test)]
    pub(super) fn child_ptr(&self, i: usize) -> u64 {
        self.child(i).0
    }
    fn item_range(&self, i: usize) -> (usize, usize) {
        let at = HEADER_SIZE + i * LEAF_ITEM_SIZE + KEY_SIZE;
        (le32(&self.data, at) as usize, le32(&self.data, at + 4) as usize)
    }
    fn item_data(&self, i: usize) -> &[u8] {
        let (off, size) = self.item_range(i);
        slice(&self.data, HEADER_SIZE + off, size)
    }
    /// First slot whose key is >= `key` (`nritems` when none).
    fn lower_bound(&self, key: &Key) -> usize {
        let (mut lo, mut hi) = (0, self.nritems);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < *key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
    /// Last slot whose key is <= `key`.
    fn last_le(&self, key: &Key) -> Option<usize> {
        let first_gt = {
            let (mut lo, mut hi) = (0, self.nritems);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.key(mid) <= *key {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        first_gt.checked_sub(1)
    }
}

/// An item found by a search: its key and its node, which keeps the payload alive.
pub(super) struct Item {
    pub key: Key,
    node: Arc<Node>,
    slot: usize,
}

impl Item {
    pub fn data(&self) -> &[u8] {
        self.node.item_data(self.slot)
    }
    /// Logical address of the leaf holding the item (for messages, and to identify inline extents).
    pub fn logical(&self) -> u64 {
        self.node.logical
    }
    pub fn slot(&self) -> usize {
        self.slot
    }
}

/// A position in a tree for scans: the nodes from the root to a leaf, with the slot taken in each (in the leaf,
/// the next item to return).
pub(super) struct Cursor {
    tree: u64,
    stack: Vec<(Arc<Node>, usize)>,
    visited: usize,
}

/// Nodes kept decoded, least recently used first out.
struct NodeCache {
    nodes: HashMap<u64, (u64, Arc<Node>)>,
    capacity: usize,
    tick: u64,
}

impl NodeCache {
    fn get(&mut self, logical: u64) -> Option<Arc<Node>> {
        self.tick += 1;
        let tick = self.tick;
        self.nodes.get_mut(&logical).map(|e| {
            e.0 = tick;
            e.1.clone()
        })
    }
    fn put(&mut self, node: Arc<Node>) {
        if self.nodes.len() >= self.capacity {
            if let Some(oldest) = self.nodes.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k) {
                self.nodes.remove(&oldest);
            }
        }
        self.tick += 1;
        self.nodes.insert(node.logical, (self.tick, node));
    }
}

/// The device, its chunk map and the node cache: everything needed to read any tree.
pub(super) struct Trees {
    region: Region,
    pub sb: Superblock,
    pub chunks: ChunkMap,
    cache: NodeCache,
}

impl Trees {
    pub fn new(region: Region, sb: Superblock) -> Trees {
        let chunks = ChunkMap::new(sb.devid, region.len());
        let capacity = (CACHE_BYTES / sb.nodesize as usize).max(16);
        Trees { region, sb, chunks, cache: NodeCache { nodes: HashMap::new(), capacity, tick: 0 } }
    }

    pub fn root_tree(&self) -> TreeRoot {
        TreeRoot { id: ROOT_TREE, bytenr: self.sb.root, level: self.sb.root_level, generation: self.sb.generation }
    }

    pub fn chunk_root(&self) -> TreeRoot {
        TreeRoot {
            id: CHUNK_TREE,
            bytenr: self.sb.chunk_root,
            level: self.sb.chunk_root_level,
            generation: self.sb.chunk_root_generation,
        }
    }

    /// Fill `buf` from logical address `logical`, across chunks if need be.
    pub fn read_logical(&mut self, logical: u64, buf: &mut [u8]) -> FsResult<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = logical
                .checked_add(done as u64)
                .ok_or_else(|| corrupt(format!("logical address {logical:#x} + {done} overflows")))?;
            let (physical, run) = self.chunks.map(at)?;
            let n = (buf.len() - done).min(usize::try_from(run).unwrap_or(usize::MAX));
            let Some(part) = buf.get_mut(done..done + n) else { break };
            self.region
                .read_at(part, physical)
                .map_err(|e| corrupt(format!("logical {at:#x} at device offset {physical:#x}: {e}")))?;
            done += n;
        }
        Ok(())
    }

    /// The node at `logical` of tree `tree`, checked against what its parent (or the root's record) expects.
    fn read_node(
        &mut self,
        tree: u64,
        logical: u64,
        level: u8,
        generation: u64,
        first_key: Option<Key>,
        parent_level: Option<u8>,
    ) -> FsResult<Arc<Node>> {
        let name = TreeName(tree);
        let what = if level == 0 { "leaf" } else { "node" };
        let bad = |m: String| corrupt(format!("{name} {what} at logical {logical:#x}: {m}"));
        if level > MAX_LEVEL {
            return Err(bad(format!("level {level} exceeds btrfs's maximum of {MAX_LEVEL}")));
        }
        let node = match self.cache.get(logical) {
            Some(n) => n,
            None => {
                let node = Arc::new(self.load_node(logical).map_err(|e| match e {
                    crate::fs::FsError::Corrupt(m) => bad(m),
                    other => other,
                })?);
                self.cache.put(node.clone());
                node
            }
        };
        if node.level != level {
            return Err(match parent_level {
                Some(p) => bad(format!("level {} under a level-{p} node", node.level)),
                None => bad(format!("level {}, its root record says {level}", node.level)),
            });
        }
        if node.generation != generation {
            return Err(bad(format!("generation {}, its parent expects {generation}", node.generation)));
        }
        if let Some(k) = first_key {
            if node.nritems == 0 {
                return Err(bad("empty, below a parent that points to it".into()));
            }
            if node.key(0) != k {
                return Err(bad(format!("first key {} differs from its parent's {k}", node.key(0))));
            }
        }
        Ok(node)
    }

    /// Read and check a node's self-contained fields; the caller names the node in errors.
    pub(super) fn load_node(&mut self, logical: u64) -> FsResult<Node> {
        let nodesize = self.sb.nodesize as usize;
        let mut data = vec![0u8; nodesize].into_boxed_slice();
        self.read_logical(logical, &mut data)?;
        if self.sb.csum_type == CSUM_CRC32C {
            let want = le32(&data, 0);
            let got = crc32c::crc32c(slice(&data, 32, nodesize - 32));
            if want != got {
                return Err(corrupt(format!("checksum {want:#010x} does not match the contents ({got:#010x})")));
            }
        }
        if slice(&data, 32, 16) != self.sb.metadata_fsid {
            return Err(corrupt("belongs to another filesystem (fsid differs)"));
        }
        let bytenr = le64(&data, 48);
        if bytenr != logical {
            return Err(corrupt(format!("records its address as {bytenr:#x}")));
        }
        let generation = le64(&data, 80);
        let nritems = le32(&data, 96) as usize;
        let level = u8_at(&data, 100);
        let room = nodesize - HEADER_SIZE;
        let per = if level == 0 { LEAF_ITEM_SIZE } else { KEY_PTR_SIZE };
        if nritems > room / per {
            return Err(corrupt(format!("{nritems} items cannot fit in a {nodesize}-byte node")));
        }
        if level > 0 && nritems == 0 {
            return Err(corrupt("interior node without children"));
        }
        let node = Node { logical, level, generation, nritems, data };
        for i in 1..nritems {
            if node.key(i - 1) >= node.key(i) {
                return Err(corrupt(format!(
                    "keys out of order at slot {i}: {} then {}",
                    node.key(i - 1),
                    node.key(i)
                )));
            }
        }
        if level == 0 {
            // Item payloads lie after the item headers and inside the node.
            let headers = nritems * LEAF_ITEM_SIZE;
            for i in 0..nritems {
                let (off, size) = node.item_range(i);
                if off < headers || off.checked_add(size).is_none_or(|e| e > room) {
                    return Err(corrupt(format!("item {i} payload [{off}, +{size}) outside the leaf's data area")));
                }
            }
        }
        Ok(node)
    }

    fn root_node(&mut self, root: &TreeRoot) -> FsResult<Arc<Node>> {
        self.read_node(root.id, root.bytenr, root.level, root.generation, None, None)
    }

    fn child_of(&mut self, tree: u64, parent: &Node, slot: usize) -> FsResult<Arc<Node>> {
        let (ptr, generation) = parent.child(slot);
        // Level 0 parents never reach here: callers descend only from interior nodes.
        let level = parent.level.saturating_sub(1);
        self.read_node(tree, ptr, level, generation, Some(parent.key(slot)), Some(parent.level))
    }

    /// A cursor whose next item is the first with a key >= `key`.
    pub fn seek(&mut self, root: &TreeRoot, key: Key) -> FsResult<Cursor> {
        let mut cursor = Cursor { tree: root.id, stack: Vec::new(), visited: 1 };
        let mut node = self.root_node(root)?;
        while node.level > 0 {
            // The child whose first key is the last <= key; the first child when key precedes them all.
            let slot = node.last_le(&key).unwrap_or(0);
            let child = self.child_of(root.id, &node, slot)?;
            cursor.stack.push((node, slot));
            cursor.visited += 1;
            node = child;
        }
        let slot = node.lower_bound(&key);
        cursor.stack.push((node, slot));
        Ok(cursor)
    }

    /// The item with the greatest key <= `key`, if any.
    pub fn seek_le(&mut self, root: &TreeRoot, key: Key) -> FsResult<Option<Item>> {
        let mut node = self.root_node(root)?;
        loop {
            let Some(slot) = node.last_le(&key) else { return Ok(None) };
            if node.level == 0 {
                return Ok(Some(Item { key: node.key(slot), node, slot }));
            }
            node = self.child_of(root.id, &node, slot)?;
        }
    }

    /// The exact item `key`, if present.
    pub fn get(&mut self, root: &TreeRoot, key: Key) -> FsResult<Option<Item>> {
        Ok(self.seek_le(root, key)?.filter(|i| i.key == key))
    }

    /// The cursor's next item, moving to the next leaf when one is used up.
    pub fn next(&mut self, c: &mut Cursor) -> FsResult<Option<Item>> {
        loop {
            let Some((leaf, slot)) = c.stack.last_mut() else { return Ok(None) };
            if *slot < leaf.nritems {
                let item = Item { key: leaf.key(*slot), node: leaf.clone(), slot: *slot };
                *slot += 1;
                return Ok(Some(item));
            }
            // Climb to the nearest ancestor with a next child, then take the leftmost path below it.
            c.stack.pop();
            loop {
                let Some((node, slot)) = c.stack.last_mut() else { return Ok(None) };
                *slot += 1;
                if *slot < node.nritems {
                    break;
                }
                c.stack.pop();
            }
            loop {
                let Some((node, slot)) = c.stack.last() else { return Ok(None) };
                if node.level == 0 {
                    break;
                }
                let (node, slot) = (node.clone(), *slot);
                c.visited += 1;
                if c.visited > MAX_NODES_PER_SCAN {
                    return Err(corrupt(format!(
                        "{}: a scan visited more than {MAX_NODES_PER_SCAN} nodes",
                        TreeName(c.tree)
                    )));
                }
                let child = self.child_of(c.tree, &node, slot)?;
                c.stack.push((child, 0));
            }
        }
    }
}
