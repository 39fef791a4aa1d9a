//! The Merkle tree as C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): tile geometry and
//! paths, the rightmost tiles of a growing tree, and the nodes proofs need, hashed from tiles.
//!
//! A tile of tile level `L` and index `N` holds up to 256 consecutive hashes of tree level
//! `8 * L`, starting at hash `N * 256`: at level 0 the leaf hashes, at level 1 the roots of
//! the 256-leaf subtrees, and so on. A full tile holds 256 hashes and never changes; the
//! rightmost tile of each level is *partial* (width `W` < 256) until it fills, and the partial
//! tile of an older tree size is a prefix of a newer one. Any node of heights 1..=7 above a
//! tile's level is the RFC 6962 hash of a power-of-two run of the tile's hashes, so every node
//! an inclusion or consistency proof needs comes from a handful of tiles ([`TileNodes`]).
//!
//! Pure: whatever holds the tiles (the store's sled tree today, an HTTP tile server later)
//! implements [`TileReader`].

use super::tree::{Hash, NodeSource, TreeSize, node_hash};
use std::fmt;
use thiserror::Error;

/// Tree levels one tile spans (C2SP tlog-tiles: 8).
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile: `2^TILE_HEIGHT`.
pub const TILE_WIDTH: u16 = 1 << TILE_HEIGHT;
/// Tile levels a tree of at most `u64::MAX` leaves has (tile level 7 holds level-56 hashes).
pub const TILE_LEVELS: u8 = 64 / TILE_HEIGHT;

/// One tile: `width` consecutive hashes of tree level `8 * level`, the first being hash
/// `index * 256` of that tree level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    level: u8,
    index: u64,
    width: u16,
}

impl TileId {
    /// The tile `(level, index)` of width `width`; `None` unless `level < 8`,
    /// `1 <= width <= 256` and the tile lies inside a tree of at most `u64::MAX` leaves.
    pub fn new(level: u8, index: u64, width: u16) -> Option<Self> {
        let fits =
            level < TILE_LEVELS && (1..=TILE_WIDTH).contains(&width) && index <= max_index(level);
        fits.then_some(TileId {
            level,
            index,
            width,
        })
    }

    /// Tile `(level, index)` as it stands in a tree of `size` leaves (full, or the partial
    /// rightmost tile of its level); `None` if that tree has no hash in it yet.
    pub fn at(level: u8, index: u64, size: TreeSize) -> Option<Self> {
        let hashes = level_hashes(level, size);
        let first = index.checked_mul(u64::from(TILE_WIDTH))?;
        let width = hashes.checked_sub(first)?.min(u64::from(TILE_WIDTH));
        TileId::new(level, index, u16::try_from(width).ok()?)
    }

    /// The tile level (0: leaf hashes).
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The tile's index within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Hashes in the tile (256 when full).
    pub fn width(&self) -> u16 {
        self.width
    }

    /// True for a partial tile (fewer than 256 hashes).
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// Size of the tile's contents: 32 bytes per hash.
    pub fn byte_len(&self) -> usize {
        usize::from(self.width) * Hash::LEN
    }

    /// The C2SP path `tile/<L>/<N>[.p/<W>]`, `N` in 3-digit groups, all but the last
    /// prefixed with `x` (index 1234067 is `x001/x234/067`).
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, self.suffix())
    }

    /// The C2SP path of the entry bundle with the same index and width,
    /// `tile/entries/<N>[.p/<W>]` (meaningful for level-0 tiles: bundle `N` holds the
    /// entries whose leaf hashes tile `(0, N)` holds).
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}", self.suffix())
    }

    /// Parses a C2SP hash-tile path (`tile/<L>/<N>[.p/<W>]`); only the canonical spelling
    /// that [`TileId::path`] writes is accepted.
    pub fn from_path(path: &str) -> Result<Self, TilePathError> {
        let bad = |reason: &'static str| TilePathError {
            path: crate::text::escape_control(&path.chars().take(80).collect::<String>())
                .into_owned(),
            reason,
        };
        if path.len() > MAX_PATH_LEN {
            return Err(bad("longer than any tile path"));
        }
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("does not start with tile/"))?;
        let (level, rest) = rest
            .split_once('/')
            .ok_or_else(|| bad("has no tile index"))?;
        let level: u8 = level
            .parse()
            .map_err(|_| bad("the level is not a number from 0 to 7"))?;
        let (number, width) = match rest.split_once(".p/") {
            Some((number, width)) => {
                let width: u16 = width
                    .parse()
                    .map_err(|_| bad("the partial width is not a number from 1 to 255"))?;
                (number, width)
            }
            None => (rest, TILE_WIDTH),
        };
        let mut index = 0u64;
        for group in number.split('/') {
            let digits = group.strip_prefix('x').unwrap_or(group);
            let value: u64 = digits
                .parse()
                .map_err(|_| bad("an index group is not 3 digits"))?;
            index = index
                .checked_mul(1000)
                .and_then(|i| i.checked_add(value))
                .ok_or_else(|| bad("the index is too large"))?;
        }
        let tile = TileId::new(level, index, width)
            .ok_or_else(|| bad("level, index or width out of range"))?;
        if tile.path() != path {
            return Err(bad("not the canonical tile path"));
        }
        Ok(tile)
    }

    /// `<N>[.p/<W>]`.
    fn suffix(&self) -> String {
        let mut groups = vec![format!("{:03}", self.index % 1000)];
        let mut n = self.index / 1000;
        while n > 0 {
            groups.push(format!("x{:03}", n % 1000));
            n /= 1000;
        }
        groups.reverse();
        let mut out = groups.join("/");
        if self.is_partial() {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A tile path that is not a C2SP hash-tile path.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("\"{path}\" is not a tile path (tile/<level>/<index>[.p/<width>]): it {reason}")]
pub struct TilePathError {
    /// The path, escaped and shortened.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A tile whose stored contents are shorter than the hashes asked for.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "tile {tile} holds {got} bytes, fewer than the {} its {} hashes need",
    tile.byte_len(),
    tile.width()
)]
pub struct ShortTile {
    /// The tile asked for.
    pub tile: TileId,
    /// Bytes found.
    pub got: usize,
}

/// Read access to stored tiles: what [`TileNodes`] and [`TileEdge::from_tiles`] read, and
/// what a tile server answers.
pub trait TileReader {
    /// Error when a tile cannot be read; a tile shorter than asked for is one.
    type Error: From<ShortTile>;
    /// The tile's contents.
    type Bytes: AsRef<[u8]>;

    /// At least the first `tile.width()` hashes of tile `(tile.level(), tile.index())`,
    /// 32 bytes each, in order. More is allowed: the same tile at a larger width, of which
    /// the one asked for is a prefix. A missing tile is an error.
    fn read_tile(&self, tile: TileId) -> Result<Self::Bytes, Self::Error>;
}

impl<T: TileReader + ?Sized> TileReader for &T {
    type Error = T::Error;
    type Bytes = T::Bytes;

    fn read_tile(&self, tile: TileId) -> Result<Self::Bytes, Self::Error> {
        (**self).read_tile(tile)
    }
}

/// The tiles of a tree of `size` leaves, tile level by tile level, in index order.
pub fn tiles(size: TreeSize) -> impl Iterator<Item = TileId> {
    tiles_between(TreeSize(0), size)
}

/// The tiles a tree of `new` leaves has that one of `old` leaves does not have at the same
/// width: what to (re)publish when the tree grows from `old` to `new` (the new full tiles,
/// and the rightmost partial tile of each level that changed). Empty unless `old < new`.
pub fn tiles_between(old: TreeSize, new: TreeSize) -> impl Iterator<Item = TileId> {
    (0..TILE_LEVELS).flat_map(move |level| {
        let (before, after) = (level_hashes(level, old), level_hashes(level, new));
        let range = if after > before {
            before / u64::from(TILE_WIDTH)..after.div_ceil(u64::from(TILE_WIDTH))
        } else {
            0..0
        };
        range.filter_map(move |index| TileId::at(level, index, new))
    })
}

/// The RFC 6962 root of a run of `2^h` hashes (32 bytes each), `h <= 8`.
pub fn subtree_root(hashes: &[u8]) -> Option<Hash> {
    let count = hashes.len() / Hash::LEN;
    if count == 0 || !count.is_power_of_two() || !hashes.len().is_multiple_of(Hash::LEN) {
        return None;
    }
    let mut level: Vec<Hash> = hashes
        .chunks_exact(Hash::LEN)
        .filter_map(Hash::from_slice)
        .collect();
    while level.len() > 1 {
        for i in 0..level.len() / 2 {
            level[i] = node_hash(&level[2 * i], &level[2 * i + 1]);
        }
        level.truncate(level.len() / 2);
    }
    level.pop()
}

/// Merkle nodes of a tree of `size` leaves, read from its tiles: node `(level, index)` is
/// hash `index` of tile level `level / 8` when `level` is a multiple of 8, else the root of
/// `2^(level % 8)` consecutive hashes of one tile. Each node is one tile read.
#[derive(Clone, Debug)]
pub struct TileNodes<R> {
    reader: R,
    size: TreeSize,
}

impl<R: TileReader> TileNodes<R> {
    /// Nodes of the tree of the first `size` leaves held by `reader`.
    pub fn new(reader: R, size: TreeSize) -> Self {
        TileNodes { reader, size }
    }
}

impl<R: TileReader> NodeSource for TileNodes<R> {
    type Error = R::Error;

    fn node(&self, level: u8, index: u64) -> Result<Hash, R::Error> {
        let tile_level = level / TILE_HEIGHT;
        let height = level % TILE_HEIGHT;
        let first = index << height; // first hash of tree level 8 * tile_level under the node
        let tile_index = first >> TILE_HEIGHT;
        let offset = (first % u64::from(TILE_WIDTH)) as usize;
        let count = 1usize << height;
        let needed = (offset + count) as u16; // ≤ 256: a node never spans two tiles
        // The tile as the tree of `size` has it (what a tile server publishes); a node outside
        // that tree asks for the width that would hold it, which the reader then lacks.
        let width =
            TileId::at(tile_level, tile_index, self.size).map_or(needed, |t| t.width().max(needed));
        let short = |got| ShortTile {
            tile: TileId {
                level: tile_level,
                index: tile_index,
                width,
            },
            got,
        };
        let tile = TileId::new(tile_level, tile_index, width).ok_or_else(|| short(0))?;
        let bytes = self.reader.read_tile(tile)?;
        let bytes = bytes.as_ref();
        let run = bytes
            .get(offset * Hash::LEN..(offset + count) * Hash::LEN)
            .ok_or_else(|| short(bytes.len()))?;
        Ok(subtree_root(run).ok_or_else(|| short(bytes.len()))?)
    }
}

/// The rightmost tile of every tile level of a growing tree: what a writer keeps to turn
/// appended leaves into tiles without reading any (≤ 8 × 255 hashes, 64 KiB at most).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TileEdge {
    size: u64,
    /// `levels[L]`: the hashes of the unfinished rightmost tile of tile level `L` (< 256).
    levels: Vec<Vec<Hash>>,
    /// Full tiles completed since the last [`TileEdge::take_changed`], with their contents.
    completed: Vec<(TileId, Vec<u8>)>,
    /// The size at the last [`TileEdge::take_changed`].
    taken: u64,
}

impl TileEdge {
    /// The tiles of an empty tree.
    pub fn new() -> Self {
        TileEdge::default()
    }

    /// Leaves appended.
    pub fn size(&self) -> TreeSize {
        TreeSize(self.size)
    }

    /// The rightmost tiles of the tree of `size` leaves held by `reader` (one read per
    /// partial tile, ≤ 8): fails if one is missing or short.
    pub fn from_tiles<R: TileReader>(reader: &R, size: TreeSize) -> Result<Self, R::Error> {
        let mut levels = Vec::new();
        for level in 0..TILE_LEVELS {
            let hashes = level_hashes(level, size);
            if hashes == 0 {
                break;
            }
            let mut partial = Vec::with_capacity(usize::from(TILE_WIDTH));
            if let Some(tile) = TileId::at(level, hashes / u64::from(TILE_WIDTH), size) {
                let bytes = reader.read_tile(tile)?;
                let bytes = bytes.as_ref();
                let wanted = bytes.get(..tile.byte_len()).ok_or(ShortTile {
                    tile,
                    got: bytes.len(),
                })?;
                partial.extend(wanted.chunks_exact(Hash::LEN).filter_map(Hash::from_slice));
            }
            levels.push(partial);
        }
        Ok(TileEdge {
            size: size.0,
            levels,
            completed: Vec::new(),
            taken: size.0,
        })
    }

    /// Appends a leaf hash (`log::leaf_hash` of the leaf data). Amortized O(1): a full tile
    /// costs 255 node hashes once per 256 hashes of its level.
    pub fn append(&mut self, leaf: Hash) {
        self.size += 1;
        let mut hash = leaf;
        for level in 0..TILE_LEVELS {
            let l = usize::from(level);
            if self.levels.len() == l {
                self.levels
                    .push(Vec::with_capacity(usize::from(TILE_WIDTH)));
            }
            let buffer = &mut self.levels[l];
            buffer.push(hash);
            if buffer.len() < usize::from(TILE_WIDTH) {
                return;
            }
            // The tile is full: keep its contents for the store, and its root is the next
            // hash one tile level up.
            let bytes: Vec<u8> = buffer.iter().flat_map(|h| h.0).collect();
            buffer.clear();
            hash = subtree_root(&bytes).unwrap_or(hash); // 256 hashes: always a root
            let index = level_hashes(level, TreeSize(self.size)) / u64::from(TILE_WIDTH) - 1;
            self.completed.push((
                TileId {
                    level,
                    index,
                    width: TILE_WIDTH,
                },
                bytes,
            ));
        }
    }

    /// The size at the last [`TileEdge::take_changed`] (or at which the edge was made): the
    /// tree that the next changed tiles extend.
    pub fn taken_size(&self) -> TreeSize {
        TreeSize(self.taken)
    }

    /// The tiles whose contents changed since the last call (or since the edge was made),
    /// with their contents: every tile that filled up, then the rightmost partial tile of
    /// each level that grew. Storing them all turns the stored tiles of the earlier size
    /// into those of the current one.
    pub fn take_changed(&mut self) -> Vec<(TileId, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.completed);
        let (old, new) = (TreeSize(self.taken), TreeSize(self.size));
        for (level, partial) in self.levels.iter().enumerate() {
            let level = level as u8; // < TILE_LEVELS
            if level_hashes(level, old) == level_hashes(level, new) || partial.is_empty() {
                continue;
            }
            let index = level_hashes(level, new) / u64::from(TILE_WIDTH);
            if let Some(tile) = TileId::new(level, index, partial.len() as u16) {
                out.push((tile, partial.iter().flat_map(|h| h.0).collect()));
            }
        }
        self.taken = self.size;
        out
    }
}

/// Longest tile path: `tile/7/` and 7 groups of `x999/`, `.p/255` (well below 64).
const MAX_PATH_LEN: usize = 64;

/// Hashes of tree level `8 * level` in a tree of `size` leaves.
fn level_hashes(level: u8, size: TreeSize) -> u64 {
    size.0
        .checked_shr(u32::from(level) * u32::from(TILE_HEIGHT))
        .unwrap_or(0)
}

/// The largest tile index of a tile level in a tree of at most `u64::MAX` leaves.
fn max_index(level: u8) -> u64 {
    level_hashes(level, TreeSize(u64::MAX)) >> TILE_HEIGHT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tree::{MemoryTree, leaf_hash};
    use crate::log::{self, LeafIndex};
    use std::collections::HashMap;

    /// Tiles in memory, as a store keeps them: one value per (level, index), the widest.
    #[derive(Default)]
    struct Stored(HashMap<(u8, u64), Vec<u8>>);

    impl Stored {
        fn put(&mut self, changed: Vec<(TileId, Vec<u8>)>) {
            for (tile, bytes) in changed {
                assert_eq!(bytes.len(), tile.byte_len(), "{tile}");
                self.0.insert((tile.level(), tile.index()), bytes);
            }
        }
    }

    impl TileReader for Stored {
        type Error = ShortTile;
        type Bytes = Vec<u8>;
        fn read_tile(&self, tile: TileId) -> Result<Vec<u8>, ShortTile> {
            let bytes = self.0.get(&(tile.level(), tile.index()));
            match bytes {
                Some(b) if b.len() >= tile.byte_len() => Ok(b[..tile.byte_len()].to_vec()),
                other => Err(ShortTile {
                    tile,
                    got: other.map_or(0, Vec::len),
                }),
            }
        }
    }

    fn check_path(level: u8, index: u64, width: u16, path: &str) {
        let tile = TileId::new(level, index, width).expect("valid tile");
        assert_eq!(tile.path(), path);
        assert_eq!(TileId::from_path(path), Ok(tile), "{path}");
    }

    #[test]
    fn paths_follow_the_spec() {
        check_path(0, 0, 256, "tile/0/000");
        check_path(0, 1, 1, "tile/0/001.p/1");
        check_path(0, 1234067, 256, "tile/0/x001/x234/067");
        check_path(2, 1234067, 8, "tile/2/x001/x234/067.p/8");
        check_path(1, 1000, 255, "tile/1/x001/000.p/255");
        check_path(0, max_index(0), 256, "tile/0/x072/x057/x594/x037/x927/935");
        let entries = TileId::new(0, 1234067, 5).expect("valid");
        assert_eq!(entries.entries_path(), "tile/entries/x001/x234/067.p/5");
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in [
            "",
            "tile/0",
            "tile/0/",
            "tile/8/000",
            "tile/0/1",
            "tile/0/0001",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/0/x001",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/01",
            "tile/0/000.p/",
            "tile/-1/000",
            "tile/entries/000",
            "tiles/0/000",
            "tile/0/x072/x057/x594/x037/x927/936",
            "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
            "tile/0/\u{7}00",
        ] {
            let err = TileId::from_path(bad).expect_err(bad);
            assert!(err.to_string().contains("is not a tile path"), "{err}");
        }
        let long = "tile/0/".to_owned() + &"x001/".repeat(100) + "000";
        assert!(TileId::from_path(&long).is_err());
    }

    #[test]
    fn tile_ids_stay_inside_the_tree() {
        assert_eq!(TileId::new(8, 0, 1), None);
        assert_eq!(TileId::new(0, 0, 0), None);
        assert_eq!(TileId::new(0, 0, 257), None);
        assert_eq!(TileId::new(7, 1, 1), None);
        assert!(TileId::new(7, 0, 255).is_some());
        assert_eq!(TileId::at(0, 0, TreeSize(0)), None);
        assert_eq!(TileId::at(0, 0, TreeSize(3)), TileId::new(0, 0, 3));
        assert_eq!(TileId::at(0, 1, TreeSize(600)), TileId::new(0, 1, 256));
        assert_eq!(TileId::at(0, 2, TreeSize(600)), TileId::new(0, 2, 88));
        assert_eq!(TileId::at(1, 0, TreeSize(600)), TileId::new(1, 0, 2));
        assert_eq!(TileId::at(0, 3, TreeSize(600)), None);
        assert_eq!(TileId::at(0, u64::MAX, TreeSize(u64::MAX)), None);
    }

    #[test]
    fn tiles_of_a_tree() {
        let all = |n| tiles(TreeSize(n)).map(|t| t.path()).collect::<Vec<_>>();
        assert!(all(0).is_empty());
        assert_eq!(all(1), ["tile/0/000.p/1"]);
        assert_eq!(all(256), ["tile/0/000", "tile/1/000.p/1"]);
        assert_eq!(
            all(600),
            [
                "tile/0/000",
                "tile/0/001",
                "tile/0/002.p/88",
                "tile/1/000.p/2"
            ]
        );
        let grown = |a, b| {
            tiles_between(TreeSize(a), TreeSize(b))
                .map(|t| t.path())
                .collect::<Vec<_>>()
        };
        assert_eq!(grown(600, 600), Vec::<String>::new());
        assert_eq!(grown(600, 601), ["tile/0/002.p/89"]);
        assert_eq!(grown(255, 256), ["tile/0/000", "tile/1/000.p/1"]);
        assert_eq!(grown(256, 257), ["tile/0/001.p/1"]);
    }

    #[test]
    fn subtree_roots_need_a_power_of_two() {
        assert_eq!(subtree_root(&[]), None);
        assert_eq!(subtree_root(&[0; 96]), None);
        assert_eq!(subtree_root(&[0; 33]), None);
        let a = Hash([1; 32]);
        assert_eq!(subtree_root(&a.0), Some(a));
        let two: Vec<u8> = [a.0, a.0].concat();
        assert_eq!(subtree_root(&two), Some(node_hash(&a, &a)));
    }

    /// Appends leaves one at a time, storing the changed tiles after each, and checks roots
    /// and proofs from the tiles against the in-memory tree at every size.
    #[test]
    fn tiles_answer_like_the_memory_tree_at_every_size() {
        let mut memory = MemoryTree::new();
        let mut edge = TileEdge::new();
        let mut stored = Stored::default();
        for n in 1u64..=600 {
            let data = n.to_be_bytes();
            memory.append(&data);
            edge.append(leaf_hash(&data));
            // Store in groups of varying size, as the writer's group commit does.
            if n % 7 == 0 || n % 256 < 3 || n > 500 {
                stored.put(edge.take_changed());
            } else {
                continue;
            }
            let size = TreeSize(n);
            let nodes = TileNodes::new(&stored, size);
            assert_eq!(log::root(&nodes, size), Ok(memory.root()), "size {n}");
            for index in [0, n / 2, n - 1] {
                assert_eq!(
                    log::inclusion_proof(&nodes, LeafIndex(index), size).map_err(|_| ()),
                    log::inclusion_proof(&memory, LeafIndex(index), size).map_err(|_| ()),
                    "leaf {index} of {n}"
                );
            }
            for old in [1, n / 3, n - 1] {
                assert_eq!(
                    log::consistency_proof(&nodes, TreeSize(old), size).map_err(|_| ()),
                    log::consistency_proof(&memory, TreeSize(old), size).map_err(|_| ()),
                    "{old} -> {n}"
                );
            }
            // The writer reloaded from the stored tiles continues where this one is.
            let reloaded = TileEdge::from_tiles(&stored, size).expect("edge");
            assert_eq!(reloaded.levels, edge.levels, "size {n}");
            assert_eq!(reloaded.size(), size);
        }
        // Older sizes still answer from the wider stored tiles (a partial tile of an older
        // size is a prefix of the stored one).
        for n in [1u64, 255, 256, 257, 511, 512, 513] {
            let nodes = TileNodes::new(&stored, TreeSize(n));
            assert_eq!(
                log::root(&nodes, TreeSize(n)),
                Ok(log::root(&memory, TreeSize(n)).expect("root"))
            );
        }
        // A node beyond what is stored is an error, not a wrong hash.
        let nodes = TileNodes::new(&stored, TreeSize(600));
        assert!(nodes.node(0, 600).is_err());
        assert!(nodes.node(3, 75).is_err());
        assert!(TileEdge::from_tiles(&stored, TreeSize(601)).is_err());
    }

    // ---- Cross-check against an independent implementation: Cloudflare's tlog_tiles, a
    // port of Go's golang.org/x/mod/sumdb/tlog (tiles of height 8, paths `tile/8/L/N`).

    /// Go's hash storage for a tree, as its tests build it.
    struct GoStorage(Vec<tlog_tiles::tlog::Hash>);

    impl tlog_tiles::tlog::HashReader for GoStorage {
        fn read_hashes(
            &self,
            indexes: &[u64],
        ) -> Result<Vec<tlog_tiles::tlog::Hash>, tlog_tiles::tlog::Error> {
            Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
        }
    }

    fn go_storage(n: u64) -> GoStorage {
        let mut storage = GoStorage(Vec::new());
        for i in 0..n {
            let hashes = tlog_tiles::stored_hashes(i, &i.to_be_bytes(), &storage).expect("go");
            storage.0.extend(hashes);
        }
        storage
    }

    #[test]
    fn tiles_match_go_tlog() {
        let n = 70_000u64; // three tile levels, partial tiles on each
        let go = go_storage(n);
        let mut edge = TileEdge::new();
        let mut stored = Stored::default();
        let mut sizes = vec![
            1u64, 2, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537, n,
        ];
        sizes.extend((0..20).map(|i| 1 + i * 3_499));
        sizes.sort_unstable();
        let mut previous = 0u64;
        for &size in &sizes {
            while edge.size().0 < size {
                let i = edge.size().0;
                edge.append(leaf_hash(&i.to_be_bytes()));
            }
            let changed = edge.take_changed();
            // The tiles that changed are exactly Go's "new tiles", with Go's contents.
            let theirs = tlog_tiles::Tile::new_tiles(TILE_HEIGHT, previous, size);
            let ours: Vec<&TileId> = changed.iter().map(|(t, _)| t).collect();
            let mut ours_sorted = ours.clone();
            ours_sorted.sort();
            let mut theirs_ids: Vec<TileId> = theirs
                .iter()
                .map(|t| TileId::new(t.level(), t.level_index(), t.width() as u16).expect("valid"))
                .collect();
            theirs_ids.sort();
            assert_eq!(
                ours_sorted.into_iter().copied().collect::<Vec<_>>(),
                theirs_ids
            );
            assert_eq!(
                tiles_between(TreeSize(previous), TreeSize(size))
                    .collect::<Vec<_>>()
                    .len(),
                theirs.len()
            );
            for t in &theirs {
                let ours =
                    TileId::new(t.level(), t.level_index(), t.width() as u16).expect("valid");
                assert_eq!(t.path().replacen("tile/8/", "tile/", 1), ours.path());
                let (_, bytes) = changed.iter().find(|(id, _)| *id == ours).expect("changed");
                assert_eq!(&t.read_data(&go).expect("go tile"), bytes, "{ours}");
            }
            stored.put(changed);
            previous = size;
            // Roots and proofs from our tiles equal Go's.
            let nodes = TileNodes::new(&stored, TreeSize(size));
            let root = log::root(&nodes, TreeSize(size)).expect("root");
            assert_eq!(root.0, tlog_tiles::tree_hash(size, &go).expect("go root").0);
            let index = size / 3;
            let ours = log::inclusion_proof(&nodes, LeafIndex(index), TreeSize(size)).expect("p");
            let theirs = tlog_tiles::prove_record(size, index, &go).expect("go proof");
            assert_eq!(
                ours.iter().map(|h| h.0).collect::<Vec<_>>(),
                theirs.iter().map(|h| h.0).collect::<Vec<_>>()
            );
            let old = size / 2 + 1;
            if old < size {
                let ours =
                    log::consistency_proof(&nodes, TreeSize(old), TreeSize(size)).expect("p");
                let theirs = tlog_tiles::prove_tree(size, old, &go).expect("go proof");
                assert_eq!(
                    ours.iter().map(|h| h.0).collect::<Vec<_>>(),
                    theirs.iter().map(|h| h.0).collect::<Vec<_>>()
                );
            }
        }
        // Go's own tile parser reads our paths (with its height element).
        for tile in tiles(TreeSize(n)) {
            let theirs = tlog_tiles::Tile::from_path(&tile.path().replacen("tile/", "tile/8/", 1))
                .expect("go parses our path");
            assert_eq!(
                (theirs.level(), theirs.level_index(), theirs.width()),
                (tile.level(), tile.index(), u32::from(tile.width()))
            );
        }
    }
}
