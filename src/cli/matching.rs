//! `coalition match`: look hashes up against the shared corpus, offline against a local
//! index file (nothing leaves the machine) or online against the hub. Both print the same
//! columns: with `--hub` each match carries its entry's state, tallies and the `seen` counts
//! the caller may read; offline, the entry index where the index file is sync output.
//! `--files` hashes image files first (as `coalition hash`) and names each match's file.

use crate::client::ClientError;
use crate::formats::{self, Row};
use crate::lifecycle::EntryState;
use crate::matching::{MAX_QUERIES, MatchOptions, Matcher, Query, VpdqRule, VpdqScore};
use crate::media::{self, FILE_HASH_TYPES, Limits};
use crate::membership::MemberId;
use crate::pb;
use crate::pki::CertDir;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Hashes to look up: sync output, a hash list, or one 64-hex PDQ hash per line.
    #[arg(long, required_unless_present = "files", conflicts_with = "files")]
    queries: Option<PathBuf>,
    /// Image or video files, or directories walked for them (as `coalition hash`), to hash
    /// (images: pdq, md5, sha1, sha256; videos: vpdq) and look up in one step; each match
    /// names its file (`query_file`).
    #[arg(long, num_args = 1.., value_name = "FILE|DIR")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    video: super::hash::VideoArgs,
    /// With --files: largest file hashed, in bytes.
    #[arg(long, default_value_t = media::DEFAULT_MAX_BYTES)]
    max_bytes: u64,
    /// With --files: most pixels of an image, checked before decoding.
    #[arg(long, default_value_t = media::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Match offline against this file (same formats as --queries); no hub needed.
    #[arg(long, conflicts_with = "hub", required_unless_present = "hub")]
    index: Option<PathBuf>,
    /// Match against the hub at this address instead.
    #[arg(long)]
    hub: Option<String>,
    /// Member id to act as with --hub.
    #[arg(long = "as", env = "COALITION_MEMBER", value_name = "ID")]
    member: Option<String>,
    /// Development PKI directory (with --hub).
    #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
    certs: PathBuf,
    /// PDQ: largest Hamming distance that matches (0..=64).
    #[arg(long, default_value_t = crate::matching::DEFAULT_PDQ_THRESHOLD)]
    threshold: u32,
    /// PDQ: hashes below this quality do not match (0..=100).
    #[arg(long, default_value_t = crate::matching::DEFAULT_MIN_QUALITY.into())]
    min_quality: u32,
    /// vPDQ: share of the query video's usable frames that must match (0..=100); frames obey
    /// --threshold and --min-quality.
    #[arg(long, default_value_t = crate::matching::vpdq::DEFAULT_VPDQ_QUERY_PERCENT)]
    vpdq_query_percent: u32,
    /// vPDQ: share of the indexed video's usable frames that must match (0..=100).
    #[arg(long, default_value_t = crate::matching::vpdq::DEFAULT_VPDQ_COMPARED_PERCENT)]
    vpdq_compared_percent: u32,
    /// With --hub: the entry states wanted, comma-separated (active, disputed, quarantined,
    /// retracted, compromised, expired). Default: active,disputed (what matches).
    #[arg(long, value_delimiter = ',', value_name = "STATES")]
    states: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: OutputFormat,
}

/// Opinions on an entry or a hash value, as printed (`seen`: those the caller may read).
#[derive(Debug, Default, Serialize)]
struct TallyLine {
    confirmed: u32,
    false_positive: u32,
    disputed: u32,
    seen: u32,
}

impl TallyLine {
    fn of(tally: Option<pb::Tally>, seen: u32) -> Self {
        let t = tally.unwrap_or_default();
        TallyLine {
            confirmed: t.confirmed,
            false_positive: t.false_positive,
            disputed: t.disputed,
            seen,
        }
    }

    /// The CSV cells: confirmed, false_positive, disputed, seen.
    fn cells(tally: Option<&TallyLine>) -> [String; 4] {
        match tally {
            Some(t) => [
                t.confirmed.to_string(),
                t.false_positive.to_string(),
                t.disputed.to_string(),
                t.seen.to_string(),
            ],
            None => Default::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per match.
    Json,
    /// CSV with a header row.
    Csv,
}

/// One match as printed.
#[derive(Debug, Serialize)]
struct MatchLine {
    /// The line of --queries; with --files, the file's position in the list (1-based).
    query_line: usize,
    /// With --files: the file hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    query_file: Option<String>,
    query_type: String,
    query: String,
    r#match: String,
    distance: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<u32>,
    labels: Vec<String>,
    source: Source,
    /// The matched entry's state (the hub's answer; offline: unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// Opinions on the matched entry (with --hub).
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_tally: Option<TallyLine>,
    /// Opinions on the matched hash value across every statement sharing it (with --hub).
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_tally: Option<TallyLine>,
    /// vPDQ: how much of each video matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    vpdq: Option<VpdqLine>,
}

/// How a vPDQ query matched, in percent of each side's usable frames.
#[derive(Debug, Serialize)]
struct VpdqLine {
    query_percent: f64,
    compared_percent: f64,
}

impl VpdqLine {
    fn of(score: VpdqScore) -> Self {
        VpdqLine {
            query_percent: f64::from(score.query_bp) / 100.0,
            compared_percent: f64::from(score.compared_bp) / 100.0,
        }
    }
}

/// Where the matched hash came from.
#[derive(Debug, Default, Serialize)]
struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    index_line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statement_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    /// The entry index in its statement (a hash set's entry, a risk signal's indicator): what
    /// `coalition opinion --entry` and `coalition retract --entry` name.
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    received_at_ms: Option<i64>,
}

pub async fn run(args: MatchArgs) -> Result<()> {
    let options = MatchOptions::new(Some(args.threshold), Some(args.min_quality))
        .and_then(|o| {
            VpdqRule::new(
                Some(args.vpdq_query_percent),
                Some(args.vpdq_compared_percent),
            )
            .map(|v| o.with_vpdq(v))
        })
        .map_err(anyhow::Error::msg)?;
    let states =
        EntryState::parse_list(&args.states).map_err(|e| anyhow::anyhow!("--states: {e}"))?;
    if !states.is_empty() && args.index.is_some() {
        bail!(
            "--states needs --hub: offline, only entries that match are matched (snapshot rows naming another state are skipped)"
        );
    }
    let (queries, files) = match &args.queries {
        Some(path) => (formats::read_rows(path)?, None),
        None => {
            let (rows, files) = file_queries(&args)?;
            (rows, Some(files))
        }
    };
    let mut lines = match &args.index {
        Some(index) => offline(index, &queries, &options)?,
        None => online(&args, &queries, &states).await?,
    };
    if let Some(files) = &files {
        for m in &mut lines {
            m.query_file = files.names.get(m.query_line - 1).cloned();
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        OutputFormat::Json => {
            for m in &lines {
                serde_json::to_writer(&mut out, m)?;
                writeln!(out)?;
            }
        }
        OutputFormat::Csv => {
            // Through a real CSV writer: labels and ids quoted from the index or the hub cannot
            // add a column or a row.
            let mut csv = csv::Writer::from_writer(&mut out);
            let file_column = files.is_some();
            let mut header = vec![
                "query_line",
                "query_type",
                "query",
                "match",
                "distance",
                "quality",
                "labels",
                "issuer",
                "statement_id",
                "seq",
                "index_line",
                "entry",
                "state",
                "confirmed",
                "false_positive",
                "disputed",
                "seen",
                "hash_confirmed",
                "hash_false_positive",
                "hash_disputed",
                "hash_seen",
                "vpdq_query_percent",
                "vpdq_compared_percent",
            ];
            if file_column {
                header.push("query_file");
            }
            csv.write_record(&header)?;
            for m in &lines {
                let [confirmed, false_positive, disputed, seen] =
                    TallyLine::cells(m.entry_tally.as_ref());
                let [h_confirmed, h_false_positive, h_disputed, h_seen] =
                    TallyLine::cells(m.hash_tally.as_ref());
                let mut record = vec![
                    m.query_line.to_string(),
                    m.query_type.clone(),
                    m.query.clone(),
                    m.r#match.clone(),
                    m.distance.to_string(),
                    opt(m.quality),
                    m.labels.join(";"),
                    m.source.issuer.clone().unwrap_or_default(),
                    m.source.statement_id.clone().unwrap_or_default(),
                    opt(m.source.seq),
                    opt(m.source.index_line),
                    opt(m.source.entry),
                    m.state.clone().unwrap_or_default(),
                    confirmed,
                    false_positive,
                    disputed,
                    seen,
                    h_confirmed,
                    h_false_positive,
                    h_disputed,
                    h_seen,
                    opt(m.vpdq.as_ref().map(|v| v.query_percent)),
                    opt(m.vpdq.as_ref().map(|v| v.compared_percent)),
                ];
                if file_column {
                    record.push(m.query_file.clone().unwrap_or_default());
                }
                csv.write_record(&record)?;
            }
            csv.flush()?;
        }
    }
    out.flush()?;
    let matched: std::collections::BTreeSet<usize> = lines.iter().map(|m| m.query_line).collect();
    let (total, noun) = match &files {
        Some(f) => (f.names.len(), "files"),
        None => (queries.len(), "queries"),
    };
    eprintln!(
        "{} of {total} {noun} matched ({} matches)",
        matched.len(),
        lines.len()
    );
    if let Some(files) = files.filter(|f| f.failed > 0) {
        bail!(
            "{} of {} files could not be hashed (see above)",
            files.failed,
            files.names.len()
        );
    }
    Ok(())
}

/// The files `--files` hashed: their names by position, and how many could not be hashed.
struct HashedFiles {
    names: Vec<String>,
    failed: usize,
}

/// Hashes `--files` into query rows (`line`: the file's 1-based position); a file that cannot
/// be hashed is one stderr line and has no rows.
fn file_queries(args: &MatchArgs) -> Result<(Vec<Row>, HashedFiles)> {
    let limits = Limits {
        max_bytes: args.max_bytes,
        max_pixels: args.max_pixels,
    };
    let video = args.video.options(args.max_pixels)?;
    let paths = media::collect_files(&args.files).context("listing the files to hash")?;
    let results = media::hash_inputs(&paths, true, &limits, &video);
    let mut rows = Vec::new();
    let mut failed = 0;
    for (i, (path, result)) in paths.iter().zip(results).enumerate() {
        match result {
            Ok(media::Hashed::Video(video)) => {
                let entry = formats::vpdq_entry(&video, &[])
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                rows.push(Row {
                    line: i + 1,
                    entry,
                    source: formats::HashLine::default(),
                });
            }
            Ok(media::Hashed::Image(hashes)) => {
                super::hash::note_missing_pdq(path, &hashes, &FILE_HASH_TYPES);
                rows.extend(
                    hashes
                        .entries(&FILE_HASH_TYPES, &[])
                        .into_iter()
                        .map(|entry| Row {
                            line: i + 1,
                            entry,
                            source: formats::HashLine::default(),
                        }),
                );
            }
            Err(e) => {
                failed += 1;
                super::hash::report(path, &e);
            }
        }
    }
    let names = paths.iter().map(|p| p.display().to_string()).collect();
    Ok((rows, HashedFiles { names, failed }))
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn query_of(row: &Row) -> Query {
    Query {
        hash_type: row.entry.hash_type,
        value: row.entry.value.clone(),
        quality: row.entry.quality,
    }
}

fn offline(
    index: &std::path::Path,
    queries: &[Row],
    options: &MatchOptions,
) -> Result<Vec<MatchLine>> {
    // Rows of sync output that must no longer be acted on (expired now, or signed with a key
    // declared compromised) are left out, so a snapshot drops them between syncs.
    let now = crate::store::now_ms();
    let rows: Vec<Row> = formats::read_rows(index)?
        .into_iter()
        .filter(|row| !row.source.withdrawn_at(now))
        .collect();
    let mut matcher = Matcher::new();
    for row in &rows {
        matcher
            .stage(row.entry.hash_type, &row.entry.value, row.entry.quality)
            .with_context(|| format!("index {}", index.display()))?;
    }
    matcher.commit();
    let mut out = Vec::new();
    for q in queries {
        for hit in matcher.lookup(&query_of(q), options) {
            let Some(row) = rows.get(hit.slot as usize) else {
                continue;
            };
            out.push(MatchLine {
                query_line: q.line,
                query_file: None,
                query_type: q.entry.hash_type.name().into(),
                query: hex::encode(&q.entry.value),
                r#match: hex::encode(&row.entry.value),
                distance: hit.distance,
                quality: row.entry.quality.map(u32::from),
                labels: row.entry.labels.iter().map(ToString::to_string).collect(),
                source: Source {
                    index_line: Some(row.line),
                    issuer: row.source.issuer.clone(),
                    statement_id: row.source.statement_id.clone(),
                    seq: row.source.seq,
                    entry: row.source.entry,
                    received_at_ms: row.source.received_at_ms,
                },
                state: None,
                entry_tally: None,
                hash_tally: None,
                vpdq: hit.vpdq.map(VpdqLine::of),
            });
        }
    }
    Ok(out)
}

async fn online(
    args: &MatchArgs,
    queries: &[Row],
    states: &[EntryState],
) -> Result<Vec<MatchLine>> {
    let Some(hub) = &args.hub else {
        bail!("give --index FILE to match offline or --hub ADDR to ask the hub");
    };
    let Some(member) = &args.member else {
        bail!("say which member you act as with --as ID");
    };
    let id = MemberId::parse(member)?;
    let tls = CertDir::new(&args.certs).member_tls(&id)?;
    let mut client = crate::client::Client::connect(hub, &tls).await?;
    let mut out = Vec::new();
    // Queries whose matches the hub cut short (its per-query and per-response caps).
    let mut truncated = Vec::new();
    for chunk in queries.chunks(MAX_QUERIES) {
        let request = pb::MatchRequest {
            queries: chunk
                .iter()
                .map(|q| pb::MatchQuery {
                    r#type: q.entry.hash_type.to_wire() as i32,
                    value: q.entry.value.clone(),
                    quality: q.entry.quality.map(u32::from),
                })
                .collect(),
            pdq_threshold: Some(args.threshold),
            min_quality: Some(args.min_quality),
            vpdq_query_percent: Some(args.vpdq_query_percent),
            vpdq_compared_percent: Some(args.vpdq_compared_percent),
            // Empty: what matches now (active, disputed), as the offline index from a snapshot.
            states: states.iter().map(|s| s.to_wire() as i32).collect(),
        };
        let response = client
            .hub
            .r#match(request)
            .await
            .map_err(ClientError::from)
            .context("matching at the hub")?
            .into_inner();
        for result in response.results {
            let Some(q) = chunk.get(result.query_index as usize) else {
                bail!(
                    "the hub answered for query {} of {}",
                    result.query_index,
                    chunk.len()
                );
            };
            if result.truncated {
                truncated.push(q.line);
            }
            for m in result.matches {
                out.push(MatchLine {
                    query_line: q.line,
                    query_file: None,
                    query_type: q.entry.hash_type.name().into(),
                    query: hex::encode(&q.entry.value),
                    r#match: hex::encode(&m.value),
                    distance: m.distance,
                    quality: m.quality,
                    labels: m.labels,
                    source: Source {
                        index_line: None,
                        issuer: Some(m.issuer),
                        statement_id: Some(hex::encode(&m.statement_id)),
                        seq: Some(m.seq),
                        entry: Some(m.hash_index),
                        received_at_ms: Some(m.received_at_ms),
                    },
                    state: Some(
                        EntryState::from_wire(m.state)
                            .map_or_else(|| format!("unknown ({})", m.state), |s| s.name().into()),
                    ),
                    entry_tally: Some(TallyLine::of(m.entry_tally, m.entry_seen)),
                    hash_tally: Some(TallyLine::of(m.hash_tally, m.hash_seen)),
                    vpdq: m.vpdq.map(|v| VpdqLine {
                        query_percent: f64::from(v.query_basis_points) / 100.0,
                        compared_percent: f64::from(v.compared_basis_points) / 100.0,
                    }),
                });
            }
        }
    }
    if let Some(first) = truncated.first() {
        eprintln!(
            "warning: results truncated: the hub returned only part of the matches for {} queries (first at line {first}); it returns at most {} per query and {} per request: query those hashes separately or with a lower --threshold",
            truncated.len(),
            crate::server::MAX_MATCHES_PER_QUERY,
            crate::server::MAX_MATCHES_PER_RESPONSE,
        );
    }
    Ok(out)
}
