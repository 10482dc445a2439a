//! Subvolumes: their root items, the default one, paths to them (ROOT_BACKREF up to the top level, then
//! INODE_REF up to each parent's root directory), and the list of all of them.

use super::items::{
    self, Key, RootItem, RootRef, DIR_ITEM, FIRST_FREE, FS_TREE, INODE_REF, LAST_FREE, ROOT_BACKREF, ROOT_ITEM,
    ROOT_SUBVOL_RDONLY, ROOT_TREE_DIR,
};
use super::tree::TreeRoot;
use super::{corrupt, BtrfsFs, Ino, SubvolInfo, SubvolRoot};
use crate::fs::{FsError, FsResult};
use std::collections::HashMap;

/// Subvolumes listed at most.
pub const MAX_SUBVOLUMES: usize = 10_000;
/// Longest subvolume path listed (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;
/// Subvolumes nested in one another at most on a path (ROOT_BACKREF chains may loop on a hostile image).
const MAX_NESTING: usize = 64;
/// Directories between a subvolume and its parent's root directory at most.
const MAX_DIR_DEPTH: usize = 1024;
/// Directory look-ups one listing makes at most (each a tree search): deep paths times many subvolumes.
const MAX_PATH_STEPS: usize = 200_000;

fn is_subvolume_id(id: u64) -> bool {
    id == FS_TREE || (FIRST_FREE..=LAST_FREE).contains(&id)
}

impl BtrfsFs {
    /// The root of subvolume `id` from its ROOT_ITEM; `None` when `id` is not a subvolume's or has no item.
    pub(super) fn load_subvol_root(&mut self, id: u64) -> FsResult<Option<SubvolRoot>> {
        if !is_subvolume_id(id) {
            return Ok(None);
        }
        let root_tree = self.trees.root_tree();
        // Snapshots' root items carry the creating transaction in the key's offset: take the last one for `id`.
        let Some(item) = self.trees.seek_le(&root_tree, Key::new(id, ROOT_ITEM, u64::MAX))? else {
            return Ok(None);
        };
        if item.key.objectid != id || item.key.ty != ROOT_ITEM {
            return Ok(None);
        }
        let r = RootItem::parse(&item.key, item.data())?;
        Ok(Some(SubvolRoot {
            tree: TreeRoot { id, bytenr: r.bytenr, level: r.level, generation: r.generation },
            root_dirid: r.root_dirid,
        }))
    }

    /// The subvolume the root tree's "default" entry names, else the top level.
    pub(super) fn find_default_id(&mut self) -> FsResult<u64> {
        let root_tree = self.trees.root_tree();
        let key = Key::new(ROOT_TREE_DIR, DIR_ITEM, items::name_hash(b"default"));
        let Some(item) = self.trees.get(&root_tree, key)? else { return Ok(FS_TREE) };
        let entries = items::dir_entries(&item.key, item.data())?;
        Ok(entries.iter().find(|e| e.name == b"default").map_or(FS_TREE, |e| e.location.objectid))
    }

    /// The id of the subvolume at `path` from the top level; `NotFound` when nothing is there or it is an
    /// ordinary directory.
    pub(super) fn subvolume_by_path(&mut self, path: &str) -> FsResult<u64> {
        let top = self.subvol_root(FS_TREE)?.ok_or_else(|| corrupt("the top-level subvolume has no root item"))?;
        let ino = self.walk(Ino { tree: FS_TREE, ino: top.root_dirid }, path)?;
        match self.subvol_root(ino.tree)? {
            Some(r) if r.root_dirid == ino.ino => Ok(ino.tree),
            _ => Err(FsError::NotFound),
        }
    }

    /// The path of directory `dirid` below the root directory of subvolume `tree` (empty for the root itself),
    /// counting each step against `steps`.
    fn dir_path(&mut self, tree: u64, dirid: u64, steps: &mut usize) -> FsResult<Vec<String>> {
        let root = self.subvol_root(tree)?.ok_or_else(|| corrupt(format!("subvolume {tree} has no root item")))?;
        let mut names = Vec::new();
        let mut ino = dirid;
        while ino != root.root_dirid {
            if names.len() >= MAX_DIR_DEPTH {
                return Err(corrupt(format!("fs tree {tree}: directory {dirid} is over {MAX_DIR_DEPTH} levels deep")));
            }
            *steps += 1;
            if *steps > MAX_PATH_STEPS {
                return Err(corrupt(format!("root tree: subvolume paths take over {MAX_PATH_STEPS} directory steps")));
            }
            let mut cursor = self.trees.seek(&root.tree, Key::new(ino, INODE_REF, 0))?;
            let item = self.trees.next(&mut cursor)?.filter(|i| i.key.objectid == ino && i.key.ty == INODE_REF);
            let Some(item) = item else {
                return Err(corrupt(format!("fs tree {tree}: directory {ino} has no inode ref")));
            };
            names.push(String::from_utf8_lossy(items::inode_ref_name(&item.key, item.data())?).into_owned());
            ino = item.key.offset;
        }
        names.reverse();
        Ok(names)
    }

    pub(super) fn list_subvolumes(&mut self) -> FsResult<Vec<SubvolInfo>> {
        // One pass over the root tree: which subvolumes have root items (and their flags), and where each one
        // is placed (ROOT_BACKREF: child, parent, directory in the parent, name).
        let root_tree = self.trees.root_tree();
        let mut flags: HashMap<u64, u64> = HashMap::new();
        let mut placed: HashMap<u64, (u64, u64, String)> = HashMap::new();
        let mut cursor = self.trees.seek(&root_tree, Key::new(FIRST_FREE, 0, 0))?;
        while let Some(item) = self.trees.next(&mut cursor)? {
            let id = item.key.objectid;
            if id > LAST_FREE {
                break;
            }
            match item.key.ty {
                ROOT_ITEM if flags.len() < MAX_SUBVOLUMES => {
                    flags.insert(id, RootItem::parse(&item.key, item.data())?.flags);
                }
                ROOT_BACKREF if placed.len() < MAX_SUBVOLUMES && !placed.contains_key(&id) => {
                    let r = RootRef::parse(&item.key, item.data())?;
                    placed.insert(id, (item.key.offset, r.dirid, String::from_utf8_lossy(r.name).into_owned()));
                }
                _ => {}
            }
        }
        let mut ids: Vec<u64> = flags.keys().copied().filter(|id| placed.contains_key(id)).collect();
        ids.sort_unstable();
        let mut paths: HashMap<u64, String> = HashMap::from([(FS_TREE, String::new())]);
        let mut out = Vec::new();
        let mut steps = 0usize;
        for id in ids {
            // Climb to the top level or to a subvolume whose path is known, then build the paths down.
            let mut chain = vec![id];
            while let Some(&cur) = chain.last() {
                if paths.contains_key(&cur) {
                    break;
                }
                let Some(&(parent, _, _)) = placed.get(&cur) else { break };
                if chain.len() > MAX_NESTING || chain.contains(&parent) {
                    return Err(corrupt(format!("root tree: subvolume {id}'s parents loop or nest too deep")));
                }
                chain.push(parent);
            }
            // A chain that ends without a known path leads to a deleted (or unreachable) parent: not listed.
            let Some(base) = chain.last().and_then(|c| paths.get(c)).cloned() else { continue };
            let mut path = base;
            for &cur in chain.iter().rev().skip(1) {
                let Some((parent, dirid, name)) = placed.get(&cur).cloned() else { break };
                let mut parts: Vec<String> = if path.is_empty() { Vec::new() } else { vec![path.clone()] };
                parts.extend(self.dir_path(parent, dirid, &mut steps)?);
                parts.push(name);
                path = parts.join("/");
                paths.insert(cur, path.clone());
            }
            // Nested deep enough, a path could grow to megabytes and be copied into every child's: a path no
            // mount could name (Linux's PATH_MAX) is not listed.
            if path.len() > MAX_PATH {
                continue;
            }
            let parent_id = placed.get(&id).map_or(FS_TREE, |p| p.0);
            let read_only = flags.get(&id).is_some_and(|f| f & ROOT_SUBVOL_RDONLY != 0);
            out.push(SubvolInfo { id, parent_id, path, read_only });
        }
        Ok(out)
    }
}
