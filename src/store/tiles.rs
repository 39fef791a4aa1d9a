//! The log's Merkle tree stored as C2SP tlog-tiles in the `log` tree: one key per tile (value:
//! its hashes, 32 bytes each), full tiles written once, the rightmost partial tile of each
//! level rewritten as it grows; and the one-time upgrade from the earlier layout of one key per
//! Merkle node.

use super::{Store, StoreError};
use crate::log::{ShortTile, TileEdge, TileId, TileNodes, TileReader, TreeSize, tiles};

/// Key prefix of tiles in the `log` tree: `T`, tile level (1 byte), tile index (8 bytes,
/// big-endian).
pub(super) const TILE: u8 = b'T';
/// Key of the layout marker in the `log` tree; its value names the layout.
const FORMAT: &[u8] = b"F";
/// The layout this version writes: Merkle tree as tiles.
const TILES_FORMAT: &[u8] = b"tiles-1";
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
        match self.0.get(tile_key(tile.level(), tile.index()))? {
            Some(bytes) if bytes.len() >= tile.byte_len() => Ok(bytes),
            other => Err(ShortTile {
                tile,
                got: other.map_or(0, |b| b.len()),
            }
            .into()),
        }
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
    let changed = edge.take_changed();
    let count = changed.len();
    for (tile, bytes) in changed {
        batch.insert(&tile_key(tile.level(), tile.index())[..], bytes);
    }
    count
}

/// Marks, in `batch`, the data directory as holding its tree as tiles.
pub(super) fn mark_tiles_format(batch: &mut sled::Batch) {
    batch.insert(FORMAT, TILES_FORMAT);
}

/// Brings a data directory of `size` entries to the tile layout, once. Crash-safe at every
/// step: (1) the tiles are computed from the legacy node keys and written in batches, the
/// layout marker with the last batch, then flushed; a crash before the marker redoes this
/// at the next start (rewriting the same tiles). (2) With the marker present, leftover legacy
/// node keys are removed in batches and flushed; a crash here resumes the removal. Memory:
/// one batch ([`UPGRADE_BATCH`] tiles).
pub(super) fn upgrade(db: &sled::Db, log: &sled::Tree, size: u64) -> Result<(), StoreError> {
    match log.get(FORMAT)? {
        Some(format) if format == TILES_FORMAT => {}
        Some(format) => {
            return Err(StoreError::Corrupt {
                key: "layout marker".into(),
                reason: format!(
                    "unknown layout {:?} (this version writes {:?}): was the data directory \
                     written by a newer version of the hub?",
                    String::from_utf8_lossy(&format),
                    String::from_utf8_lossy(TILES_FORMAT)
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
                batch.insert(
                    &tile_key(tile.level(), tile.index())[..],
                    legacy_tile(log, tile)?,
                );
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
    let mut removed = 0u64;
    loop {
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for key in log.scan_prefix([LEGACY_NODE]).keys().take(UPGRADE_BATCH) {
            batch.remove(key?);
            in_batch += 1;
        }
        if in_batch == 0 {
            break;
        }
        log.apply_batch(batch)?;
        removed += in_batch as u64;
    }
    if removed > 0 {
        db.flush()?;
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
