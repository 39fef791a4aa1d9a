//! The log's Merkle tree stored as C2SP tlog-tiles in the `log` tree: one key per full tile
//! (value: its 256 hashes, 32 bytes each), written once; the rightmost partial tile of each
//! level as chunks of 16 hashes, of which a group commit rewrites only those it grows (a whole
//! 8 KiB partial tile rewritten per small group tripled sled's garbage); and the one-time
//! upgrade from the earlier layout of one key per Merkle node.

use super::{Store, StoreError};
use crate::log::{ShortTile, TileEdge, TileId, TileNodes, TileReader, TreeSize, tiles};

/// Key prefix of full tiles in the `log` tree: `T`, tile level (1 byte), tile index (8 bytes,
/// big-endian).
pub(super) const TILE: u8 = b'T';
/// Key prefix of partial-tile chunks: `P`, tile level, tile index (8 bytes, big-endian), chunk
/// number (1 byte) → up to [`CHUNK`] hashes. Removed when the tile fills up.
const PARTIAL: u8 = b'P';
/// Hashes per partial-tile chunk (512 bytes).
const CHUNK: u16 = 16;
/// Key of the layout marker in the `log` tree; its value names the layout.
const FORMAT: &[u8] = b"F";
/// The layout with the Merkle tree as tiles and the entries' records still as sled keys: what
/// [`upgrade`] writes before the records move to files (`entry_files.rs`).
const TILES_FORMAT: &[u8] = b"tiles-1";
/// The layout with tiles and the records in the entry files, the id index still as sled keys:
/// written with the durable log size when the records moved there, so an earlier version
/// refuses the directory instead of reading it as empty.
const ENTRY_FILES_FORMAT: &[u8] = b"tiles-1+entry-files-1";
/// The layout this version writes: tiles, the records in the entry files, the id index in
/// sorted runs (`id_index.rs`). Written once the runs index the whole log, so an earlier
/// version (which would look ids up in sled, find none and log duplicates) refuses it.
const CURRENT_FORMAT: &[u8] = b"tiles-1+entry-files-1+id-runs-1";
/// Key prefix of the earlier layout (no marker): `N`, tree level, node index (8 bytes,
/// big-endian) → the node's 32-byte hash. Only read and removed by [`upgrade`].
const LEGACY_NODE: u8 = b'N';
/// Tiles written (or legacy node keys removed) per batch by the upgrade: bounds its memory
/// (1,024 tiles are 8 MiB).
const UPGRADE_BATCH: usize = 1024;

/// Tiles as stored in the `log` tree.
pub(super) struct Tiles<'a>(pub(super) &'a sled::Tree);

impl TileReader for Tiles<'_> {
    type Error = StoreError;
    type Bytes = sled::IVec;

    fn read_tile(&self, tile: TileId) -> Result<sled::IVec, StoreError> {
        // A full tile, or one that has filled up since the size asked about.
        let mut got = 0;
        if let Some(bytes) = self.0.get(tile_key(tile.level(), tile.index()))? {
            if bytes.len() >= tile.byte_len() {
                return Ok(bytes);
            }
            got = bytes.len();
        }
        if tile.is_partial() {
            // The rightmost tile of its level: its chunks, in order (≤ 16 keys).
            let mut bytes = Vec::with_capacity(tile.byte_len());
            let prefix = chunk_key(tile.level(), tile.index(), 0);
            for chunk in self.0.scan_prefix(&prefix[..10]).values() {
                bytes.extend_from_slice(&chunk?);
                if bytes.len() >= tile.byte_len() {
                    return Ok(bytes.into());
                }
            }
            got = got.max(bytes.len());
        }
        Err(ShortTile { tile, got }.into())
    }
}

impl From<ShortTile> for StoreError {
    fn from(e: ShortTile) -> Self {
        StoreError::Corrupt {
            key: e.tile.path(),
            reason: e.to_string(),
        }
    }
}

/// The Merkle nodes of the first `size` entries, read from the stored tiles.
pub(super) fn nodes(log: &sled::Tree, size: u64) -> TileNodes<Tiles<'_>> {
    TileNodes::new(Tiles(log), TreeSize(size))
}

/// Puts the tiles that the leaves appended since the last call changed into `batch`; returns
/// how many.
pub(super) fn stage(edge: &mut TileEdge, batch: &mut sled::Batch) -> usize {
    let before = edge.taken_size();
    let changed = edge.take_changed();
    let count = changed.len();
    for (tile, bytes) in changed {
        // Hashes the tile already had, stored as chunks by an earlier batch.
        let stored = TileId::at(tile.level(), tile.index(), before).map_or(0, |t| t.width());
        put_tile(batch, tile, &bytes, stored);
    }
    count
}

/// Stages `tile` (its `bytes`), of which the first `stored` hashes are stored already as
/// chunks: a full tile replaces its chunks; a partial one rewrites the chunks from the one
/// holding hash `stored` on.
fn put_tile(batch: &mut sled::Batch, tile: TileId, bytes: &[u8], stored: u16) {
    let (level, index) = (tile.level(), tile.index());
    if !tile.is_partial() {
        batch.insert(&tile_key(level, index)[..], bytes);
        for chunk in 0..stored.div_ceil(CHUNK) {
            batch.remove(&chunk_key(level, index, chunk as u8)[..]);
        }
        return;
    }
    let chunk_bytes = usize::from(CHUNK) * 32;
    for chunk in stored / CHUNK..tile.width().div_ceil(CHUNK) {
        let start = usize::from(chunk) * chunk_bytes;
        let end = (start + chunk_bytes).min(bytes.len());
        batch.insert(
            &chunk_key(level, index, chunk as u8)[..],
            bytes.get(start..end).unwrap_or_default(),
        );
    }
}

/// Marks, in `batch`, the data directory as holding its tree as tiles.
fn mark_tiles_format(batch: &mut sled::Batch) {
    batch.insert(FORMAT, TILES_FORMAT);
}

/// Marks, in `batch`, the data directory as of the current layout (tiles, records in files).
pub(super) fn mark_current_format(batch: &mut sled::Batch) {
    batch.insert(FORMAT, CURRENT_FORMAT);
}

/// Records the current layout durably unless the marker says so already.
pub(super) fn mark_current_format_durably(
    db: &sled::Db,
    log: &sled::Tree,
) -> Result<(), StoreError> {
    if log.get(FORMAT)?.as_deref() != Some(CURRENT_FORMAT) {
        log.insert(FORMAT, CURRENT_FORMAT)?;
        db.flush()?;
    }
    Ok(())
}

/// Brings a data directory of `size` entries to the tile layout, once. Crash-safe at every
/// step: (1) the tiles are computed from the legacy node keys and written in batches, the
/// layout marker with the last batch, then flushed; a crash before the marker redoes this
/// at the next start (rewriting the same tiles). (2) With the marker present, leftover legacy
/// node keys are removed in batches and flushed; a crash here resumes the removal. Memory:
/// one batch ([`UPGRADE_BATCH`] tiles).
pub(super) fn upgrade(db: &sled::Db, log: &sled::Tree, size: u64) -> Result<(), StoreError> {
    match log.get(FORMAT)? {
        Some(format)
            if [TILES_FORMAT, ENTRY_FILES_FORMAT, CURRENT_FORMAT].contains(&&format[..]) => {}
        Some(format) => {
            return Err(StoreError::Corrupt {
                key: "layout marker".into(),
                reason: format!(
                    "unknown layout {:?} (this version writes {:?}): was the data directory \
                     written by a newer version of the hub?",
                    String::from_utf8_lossy(&format),
                    String::from_utf8_lossy(CURRENT_FORMAT)
                ),
            });
        }
        None => {
            if size > 0 {
                tracing::info!("store: converting the Merkle tree of {size} entries to tiles");
            }
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for tile in tiles::tiles(TreeSize(size)) {
                put_tile(&mut batch, tile, &legacy_tile(log, tile)?, 0);
                in_batch += 1;
                if in_batch == UPGRADE_BATCH {
                    log.apply_batch(std::mem::take(&mut batch))?;
                    in_batch = 0;
                }
            }
            mark_tiles_format(&mut batch);
            log.apply_batch(batch)?;
            db.flush()?;
        }
    }
    let removed = super::remove_prefix(db, log, LEGACY_NODE, UPGRADE_BATCH)?;
    if removed > 0 {
        tracing::info!("store: removed {removed} per-node Merkle keys of the earlier layout");
    }
    Ok(())
}

impl Store {
    /// The contents of tile `(level, index)` at `width` hashes (C2SP tlog-tiles, 32 bytes per
    /// hash): what a tile endpoint serves for `tile/<level>/<index>[.p/<width>]`. `None`
    /// unless the durable log has that tile at least that wide (a partial tile of an older
    /// size is a prefix of the stored one). One read.
    pub fn tile(&self, level: u8, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(tile) = TileId::new(level, index, width) else {
            return Ok(None);
        };
        match TileId::at(level, index, TreeSize(self.log_size())) {
            Some(current) if current.width() >= width => {}
            _ => return Ok(None),
        }
        let bytes = Tiles(&self.log).read_tile(tile)?;
        Ok(Some(bytes[..tile.byte_len()].to_vec()))
    }
}

fn tile_key(level: u8, index: u64) -> [u8; 10] {
    let mut k = [TILE; 10];
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn chunk_key(level: u8, index: u64, chunk: u8) -> [u8; 11] {
    let mut k = [PARTIAL; 11];
    k[1] = level;
    k[2..10].copy_from_slice(&index.to_be_bytes());
    k[10] = chunk;
    k
}

/// A tile's contents read from the legacy node keys (its hashes are the nodes of tree level
/// `8 * tile level`).
fn legacy_tile(log: &sled::Tree, tile: TileId) -> Result<Vec<u8>, StoreError> {
    let level = tile.level() * tiles::TILE_HEIGHT;
    let first = tile.index() * u64::from(tiles::TILE_WIDTH);
    let mut bytes = Vec::with_capacity(tile.byte_len());
    for index in first..first + u64::from(tile.width()) {
        let mut key = [LEGACY_NODE; 10];
        key[1] = level;
        key[2..].copy_from_slice(&index.to_be_bytes());
        match log.get(key)? {
            Some(hash) if hash.len() == 32 => bytes.extend_from_slice(&hash),
            _ => {
                return Err(StoreError::Corrupt {
                    key: format!("node {level}/{index}"),
                    reason: format!(
                        "missing or not 32 bytes while converting the Merkle tree to tile {tile}"
                    ),
                });
            }
        }
    }
    Ok(bytes)
}
