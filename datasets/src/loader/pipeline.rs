//! The prefetching pipeline: one reader thread reads row groups in plan order and
//! hands records to decode workers; results come back tagged with their position so
//! the consumer can restore plan order (output does not depend on the worker count).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::plan::ClipRef;
use crate::error::{DatasetError, RowError};
use crate::reader::ShardReader;
use crate::schema::ClipRecord;

/// A unit of work: the clip at plan position `pos`.
pub(crate) struct Job {
    pub pos: u64,
    pub clip: ClipRef,
    pub record: Result<ClipRecord, RowError>,
}

/// What a worker sends back.
pub(crate) enum Output<T> {
    /// The processed clip (or its row error) at `pos`.
    Item(u64, Result<T, RowError>),
    /// A shard-level failure (unreadable file): stops the epoch.
    Fatal(DatasetError),
}

/// Running threads; dropping it stops them.
pub(crate) struct Pipeline<T> {
    pub rx: Receiver<Output<T>>,
    stop: Sender<()>,
    handles: Vec<JoinHandle<()>>,
}

impl<T> Drop for Pipeline<T> {
    fn drop(&mut self) {
        // Closing `stop` and draining `rx` unblocks every thread.
        let (s, _) = bounded(0);
        drop(std::mem::replace(&mut self.stop, s));
        while self.rx.try_recv().is_ok() {}
        for h in self.handles.drain(..) {
            while !h.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = h.join();
        }
    }
}

/// Starts the reader and `workers` processing threads over `items` (positions and refs).
/// The per-row work a pipeline worker runs (decode + transform).
pub(crate) type ProcessFn<T> = Arc<dyn Fn(&Job) -> Result<T, RowError> + Send + Sync>;

pub(crate) fn start<T: Send + 'static>(
    shards: Arc<Vec<ShardReader>>,
    columns: Arc<Vec<&'static str>>,
    items: Vec<(u64, ClipRef)>,
    window: usize,
    workers: usize,
    capacity: usize,
    process: ProcessFn<T>,
) -> Pipeline<T> {
    let (job_tx, job_rx) = bounded::<Job>(capacity.max(1));
    let (out_tx, out_rx) = bounded::<Output<T>>(capacity.max(1));
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let mut handles = Vec::new();
    {
        let out_tx = out_tx.clone();
        let stop_rx = stop_rx.clone();
        handles.push(std::thread::spawn(move || {
            read_loop(
                &shards,
                &columns,
                &items,
                window.max(1),
                &job_tx,
                &out_tx,
                &stop_rx,
            )
        }));
    }
    for _ in 0..workers.max(1) {
        let (job_rx, out_tx, stop_rx, process) = (
            job_rx.clone(),
            out_tx.clone(),
            stop_rx.clone(),
            process.clone(),
        );
        handles.push(std::thread::spawn(move || {
            for job in job_rx.iter() {
                let res = match &job.record {
                    Ok(_) => process(&job),
                    Err(e) => Err(e.clone()),
                };
                crossbeam_channel::select! {
                    send(out_tx, Output::Item(job.pos, res)) -> r => if r.is_err() { return },
                    recv(stop_rx) -> _ => return,
                }
            }
        }));
    }
    Pipeline {
        rx: out_rx,
        stop: stop_tx,
        handles,
    }
}

fn read_loop<T>(
    shards: &[ShardReader],
    columns: &[&'static str],
    items: &[(u64, ClipRef)],
    window: usize,
    job_tx: &Sender<Job>,
    out_tx: &Sender<Output<T>>,
    stop_rx: &Receiver<()>,
) {
    let mut cache: HashMap<(u32, u32), Vec<Result<ClipRecord, RowError>>> = HashMap::new();
    for chunk in items.chunks(window) {
        // Row groups needed by this window; keep ones the previous window also used.
        let mut needed: Vec<(u32, u32)> =
            chunk.iter().map(|(_, c)| (c.shard, c.row_group)).collect();
        needed.sort_unstable();
        needed.dedup();
        cache.retain(|k, _| needed.binary_search(k).is_ok());
        for &(s, g) in &needed {
            if cache.contains_key(&(s, g)) {
                continue;
            }
            match shards[s as usize].read_records(g as usize, Some(columns)) {
                Ok(rows) => {
                    cache.insert((s, g), rows);
                }
                Err(e) => {
                    let _ = out_tx.send(Output::Fatal(e));
                    return;
                }
            }
        }
        for &(pos, clip) in chunk {
            let rows = &cache[&(clip.shard, clip.row_group)];
            let record = match rows.get(clip.row as usize) {
                Some(r) => r.clone(),
                None => Err(RowError {
                    location: shards[clip.shard as usize].location(
                        clip.row_group as usize,
                        clip.row as usize,
                        None,
                    ),
                    reason: "row is missing (shard changed since the loader started)".into(),
                }),
            };
            crossbeam_channel::select! {
                send(job_tx, Job { pos, clip, record }) -> r => if r.is_err() { return },
                recv(stop_rx) -> _ => return,
            }
        }
    }
}
