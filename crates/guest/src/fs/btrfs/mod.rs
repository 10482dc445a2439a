//! btrfs, read-only and written here (docs/dependencies.md says why no crate is used): the superblock, the chunk
//! map (SINGLE and DUP profiles, one device), b-tree searches, subvolumes and snapshots, and file data in inline,
//! regular and preallocated extents, compressed with zlib, LZO or zstd.
//!
//! An instance reads one subvolume, as a mount with `subvol=` would show it: nested subvolumes met on a path are
//! entered (shown as directories), and the empty directory Linux shows for a subvolume that a snapshot did not
//! copy is shown the same way. The log tree (fsyncs since the last commit) is not replayed. The image is hostile:
//! every structure is checked before use and all reads go through the [`Region`] and its budgets.

mod chunks;
mod extents;
mod files;
mod items;
mod subvolumes;
mod superblock;
mod tree;

#[cfg(test)]
mod tests;

use super::{
    components, guarded, read_chunks, DirEntry, FileType, FsError, FsResult, GuardedReader, GuestFs, Metadata,
    MAX_DIR_ENTRIES,
};
use crate::probe::FsKind;
use crate::reader::Region;
use items::{Inode, Key, DIR_INDEX, DIR_ITEM, EMPTY_SUBVOL_DIR, INODE_ITEM, ROOT_ITEM, ROOT_REF};
use std::collections::HashMap;
use tree::{TreeRoot, Trees};

/// Which subvolume to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subvol {
    /// The one the root tree names as default (`btrfs subvolume set-default`), else the top level.
    Default,
    /// By id; 5 is the top level.
    Id(u64),
    /// By path from the top level, e.g. "root" or "@/.snapshots/1/snapshot" (a leading '/' is allowed).
    Path(String),
}

/// A subvolume or snapshot, as `btrfs subvolume list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolInfo {
    pub id: u64,
    pub parent_id: u64,
    /// From the top level, without a leading slash.
    pub path: String,
    pub read_only: bool,
}

/// Subvolume roots remembered at once (cleared when full).
const MAX_CACHED_ROOTS: usize = 1024;
/// Longest symlink target read (Linux's PATH_MAX).
const MAX_LINK: usize = 4096;

fn corrupt(m: impl std::fmt::Display) -> FsError {
    FsError::Corrupt(format!("btrfs: {m}"))
}

/// A subvolume's tree and root directory.
#[derive(Debug, Clone, Copy)]
struct SubvolRoot {
    tree: TreeRoot,
    root_dirid: u64,
}

/// An inode: the tree it lives in and its number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ino {
    tree: u64,
    ino: u64,
}

/// Cache key of the last decompressed extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtentTag {
    /// Leaf address and slot: leaves of a read-only image never change.
    Inline {
        leaf: u64,
        slot: usize,
    },
    Regular {
        disk_bytenr: u64,
        disk_num_bytes: u64,
        ram_bytes: u64,
        compression: u8,
    },
}

pub struct BtrfsFs {
    trees: Trees,
    subvol: SubvolRoot,
    default_id: u64,
    roots: HashMap<u64, SubvolRoot>,
    /// Sequential reads of a compressed file ask for a few KiB at a time; its 128 KiB extents are decompressed
    /// once, not once per read.
    last_extent: Option<(ExtentTag, Vec<u8>)>,
    /// Bytes decompressed so far (capped: see `files::MAX_DECOMPRESSED_TOTAL`).
    decompressed_total: u64,
}

impl BtrfsFs {
    /// Open the btrfs in `region` and the subvolume `subvol` of it; `NotFound` when that subvolume does not exist.
    pub fn open(region: Region, subvol: &Subvol) -> FsResult<Self> {
        guarded("btrfs open", || Self::open_inner(region, subvol))
    }

    fn open_inner(mut region: Region, subvol: &Subvol) -> FsResult<Self> {
        let sb = superblock::read(&mut region)?;
        let sys_array = sb.sys_chunk_array.clone();
        let mut trees = Trees::new(region, sb);
        trees.chunks.add_sys_array(&sys_array)?;
        chunks::load_chunk_tree(&mut trees)?;
        let mut fs = BtrfsFs {
            trees,
            subvol: SubvolRoot { tree: TreeRoot { id: 0, bytenr: 0, level: 0, generation: 0 }, root_dirid: 0 },
            default_id: items::FS_TREE,
            roots: HashMap::new(),
            last_extent: None,
            decompressed_total: 0,
        };
        fs.default_id = fs.find_default_id()?;
        let id = match subvol {
            Subvol::Default => fs.default_id,
            Subvol::Id(id) => *id,
            Subvol::Path(p) => fs.subvolume_by_path(p)?,
        };
        fs.subvol = fs.subvol_root(id)?.ok_or(FsError::NotFound)?;
        Ok(fs)
    }

    /// The subvolume (tree id) this instance reads.
    pub fn subvolume_id(&self) -> u64 {
        self.subvol.tree.id
    }

    /// The default subvolume: the root tree's "default" entry, 5 (the top level) when there is none.
    pub fn default_subvolume_id(&self) -> u64 {
        self.default_id
    }

    /// Every subvolume and snapshot reachable from the top level, with its path (at most
    /// [`subvolumes::MAX_SUBVOLUMES`]).
    pub fn subvolumes(&mut self) -> FsResult<Vec<SubvolInfo>> {
        guarded("btrfs subvolumes", || self.list_subvolumes())
    }

    /// The root of tree `id` when it is a subvolume (cached).
    fn subvol_root(&mut self, id: u64) -> FsResult<Option<SubvolRoot>> {
        if let Some(r) = self.roots.get(&id) {
            return Ok(Some(*r));
        }
        let Some(r) = self.load_subvol_root(id)? else { return Ok(None) };
        if self.roots.len() >= MAX_CACHED_ROOTS {
            self.roots.clear();
        }
        self.roots.insert(id, r);
        Ok(Some(r))
    }

    fn tree_of(&mut self, id: u64) -> FsResult<TreeRoot> {
        match self.subvol_root(id)? {
            Some(r) => Ok(r.tree),
            None => Err(corrupt(format!("subvolume {id} has no root item"))),
        }
    }

    fn inode(&mut self, ino: Ino) -> FsResult<Inode> {
        if ino.ino == EMPTY_SUBVOL_DIR {
            // Linux's stand-in for a subvolume a snapshot did not copy: an empty, read-only directory.
            return Ok(Inode { size: 0, mode: items::S_IFDIR | 0o555, flags: 0 });
        }
        let tree = self.tree_of(ino.tree)?;
        let key = Key::new(ino.ino, INODE_ITEM, 0);
        match self.trees.get(&tree, key)? {
            Some(item) => Inode::parse(&item.key, item.data()),
            None => Err(corrupt(format!("fs tree {}: inode {} has no inode item", ino.tree, ino.ino))),
        }
    }

    /// Look `name` up in directory `dir`: the inode it names (entering a subvolume it names) and its type.
    fn lookup(&mut self, dir: Ino, name: &[u8]) -> FsResult<Option<(Ino, FileType)>> {
        if dir.ino == EMPTY_SUBVOL_DIR || name.is_empty() || name.len() > items::NAME_MAX {
            return Ok(None);
        }
        let tree = self.tree_of(dir.tree)?;
        let key = Key::new(dir.ino, DIR_ITEM, items::name_hash(name));
        let Some(item) = self.trees.get(&tree, key)? else { return Ok(None) };
        let entries = items::dir_entries(&item.key, item.data())?;
        let Some(e) = entries.iter().find(|e| e.name == name) else { return Ok(None) };
        let found = match e.location.ty {
            INODE_ITEM => (Ino { tree: dir.tree, ino: e.location.objectid }, e.file_type()),
            ROOT_ITEM => (self.enter_subvolume(dir, e.location.objectid, name)?, FileType::Dir),
            t => {
                return Err(corrupt(format!(
                    "fs tree {}: directory {} entry {:?} points to a key of type {t}",
                    dir.tree,
                    dir.ino,
                    String::from_utf8_lossy(name)
                )))
            }
        };
        Ok(Some(found))
    }

    /// The root directory of subvolume `child`, named `name` in directory `dir`. As in Linux, the subvolume is
    /// entered only when the root tree records it there (ROOT_REF); a snapshot's copy of the entry, whose
    /// subvolume lives elsewhere, shows as an empty directory.
    fn enter_subvolume(&mut self, dir: Ino, child: u64, name: &[u8]) -> FsResult<Ino> {
        let root_tree = self.trees.root_tree();
        let placed_here = match self.trees.get(&root_tree, Key::new(dir.tree, ROOT_REF, child))? {
            Some(item) => {
                let r = items::RootRef::parse(&item.key, item.data())?;
                r.dirid == dir.ino && r.name == name
            }
            None => false,
        };
        if !placed_here {
            return Ok(Ino { tree: dir.tree, ino: EMPTY_SUBVOL_DIR });
        }
        match self.subvol_root(child)? {
            Some(r) => Ok(Ino { tree: child, ino: r.root_dirid }),
            None => Err(corrupt(format!("subvolume {child}, referenced from fs tree {}, has no root item", dir.tree))),
        }
    }

    /// Walk `path` from the opened subvolume's root directory.
    fn resolve(&mut self, path: &str) -> FsResult<Ino> {
        let top = Ino { tree: self.subvol.tree.id, ino: self.subvol.root_dirid };
        self.walk(top, path)
    }

    fn walk(&mut self, start: Ino, path: &str) -> FsResult<Ino> {
        // The directories walked through, for "..": btrfs stores no ".." entries.
        let mut trail = vec![start];
        let mut is_dir = true;
        for comp in components(path) {
            if !is_dir {
                return Err(FsError::NotADirectory);
            }
            if comp == ".." {
                if trail.len() > 1 {
                    trail.pop();
                }
                continue;
            }
            let Some(&dir) = trail.last() else { return Err(FsError::NotFound) };
            match self.lookup(dir, comp.as_bytes())? {
                Some((ino, t)) => {
                    is_dir = t == FileType::Dir;
                    trail.push(ino);
                }
                None => return Err(FsError::NotFound),
            }
        }
        trail.last().copied().ok_or(FsError::NotFound)
    }

    fn resolve_file(&mut self, path: &str) -> FsResult<(Ino, u64)> {
        let ino = self.resolve(path)?;
        let inode = self.inode(ino)?;
        if inode.file_type() != FileType::File {
            return Err(FsError::NotAFile);
        }
        Ok((ino, inode.size))
    }

    fn list_dir(&mut self, dir: Ino) -> FsResult<Vec<DirEntry>> {
        let mut out = Vec::new();
        if dir.ino == EMPTY_SUBVOL_DIR {
            return Ok(out);
        }
        let tree = self.tree_of(dir.tree)?;
        // DIR_INDEX items list a directory in creation order, one entry each, as readdir does.
        let mut cursor = self.trees.seek(&tree, Key::new(dir.ino, DIR_INDEX, 0))?;
        while let Some(item) = self.trees.next(&mut cursor)? {
            if item.key.objectid != dir.ino || item.key.ty != DIR_INDEX || out.len() >= MAX_DIR_ENTRIES {
                break;
            }
            for e in items::dir_entries(&item.key, item.data())? {
                out.push(DirEntry { name: String::from_utf8_lossy(e.name).into_owned(), file_type: e.file_type() });
            }
        }
        out.truncate(MAX_DIR_ENTRIES);
        Ok(out)
    }
}

impl GuestFs for BtrfsFs {
    fn kind(&self) -> FsKind {
        FsKind::Btrfs
    }

    fn lstat(&mut self, path: &str) -> FsResult<Metadata> {
        guarded("btrfs lstat", || {
            let ino = self.resolve(path)?;
            let inode = self.inode(ino)?;
            Ok(Metadata { file_type: inode.file_type(), size: inode.size, mode: inode.mode })
        })
    }

    fn read_link(&mut self, path: &str) -> FsResult<String> {
        guarded("btrfs readlink", || {
            let ino = self.resolve(path)?;
            let inode = self.inode(ino)?;
            if inode.file_type() != FileType::Symlink {
                return Err(FsError::NotAFile);
            }
            // The target is the symlink's file data: one inline extent.
            let target = read_chunks(inode.size, MAX_LINK, |buf, off| self.read_data(ino, inode.size, off, buf))?;
            Ok(String::from_utf8_lossy(&target).into_owned())
        })
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        guarded("btrfs read_dir", || {
            let ino = self.resolve(path)?;
            if self.inode(ino)?.file_type() != FileType::Dir {
                return Err(FsError::NotADirectory);
            }
            self.list_dir(ino)
        })
    }

    fn read_file(&mut self, path: &str, max: usize) -> FsResult<Vec<u8>> {
        guarded("btrfs read", || {
            let (ino, size) = self.resolve_file(path)?;
            read_chunks(size, max, |buf, off| self.read_data(ino, size, off, buf))
        })
    }

    fn open_reader<'a>(&'a mut self, path: &str) -> FsResult<Box<dyn std::io::Read + 'a>> {
        let (ino, size) = guarded("btrfs open", || self.resolve_file(path))?;
        let mut pos = 0u64;
        Ok(Box::new(GuardedReader(move |buf: &mut [u8]| {
            let got = self.read_data(ino, size, pos, buf)?;
            pos += got as u64;
            Ok(got)
        })))
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        guarded("btrfs read", || {
            let (ino, size) = self.resolve_file(path)?;
            let mut done = 0;
            while done < buf.len() {
                let Some(rest) = buf.get_mut(done..) else { break };
                let Some(at) = offset.checked_add(done as u64) else { break };
                let n = self.read_data(ino, size, at, rest)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(done)
        })
    }

    fn inode_flags(&mut self, path: &str) -> FsResult<Option<u32>> {
        guarded("btrfs inode flags", || {
            let ino = self.resolve(path)?;
            let flags = self.inode(ino)?.flags;
            let mut out = 0;
            if flags & files::INODE_IMMUTABLE != 0 {
                out |= super::FS_IMMUTABLE_FL;
            }
            if flags & files::INODE_APPEND != 0 {
                out |= super::FS_APPEND_FL;
            }
            Ok(Some(out))
        })
    }
}
