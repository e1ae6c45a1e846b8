//! The thread that owns the file: it appends compressed tiles as they arrive and writes the
//! IFD chain at the end.
//!
//! Why a thread: the `tiff` crate only writes bytes through a `DirectoryEncoder`, which
//! borrows the `TiffEncoder` for as long as it lives. Keeping one open across the caller's
//! `write_tile_row` calls would make the writer a self-referential struct; a thread that
//! owns both on its stack does not, and it overlaps disk writes with compression.

use super::codec::PixelKey;
use super::tags::{TagTemplate, TileTable};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};
use tiff::encoder::TiffEncoder;
use tiff::{TiffError, TiffResult};

pub(crate) enum Chunk {
    Data(Vec<u8>),
    /// A tile shared by every constant tile of this pixel value, in all levels; `first`
    /// carries its bytes the first time the key is sent.
    Shared {
        key: PixelKey,
        first: Option<Vec<u8>>,
    },
}

enum Message {
    Tiles { level: usize, chunks: Vec<Chunk> },
    Finish,
}

/// Tile rows in flight: enough to keep the thread busy, few enough to bound memory.
const QUEUE: usize = 2;

pub(crate) struct Sink {
    sender: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<TiffResult<()>>>,
}

impl Sink {
    pub(crate) fn spawn(file: File, dims: Vec<(u32, u32)>, tags: TagTemplate) -> io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let thread = thread::Builder::new()
            .name("tiff-writer".into())
            .spawn(move || run(file, &dims, &tags, receiver))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Queues the tiles of one tile row of `level`, in order.
    pub(crate) fn send(&mut self, level: usize, chunks: Vec<Chunk>) -> TiffResult<()> {
        self.message(Message::Tiles { level, chunks })
    }

    /// Writes the IFDs and flushes; the file is complete when this returns `Ok`.
    pub(crate) fn finish(mut self) -> TiffResult<()> {
        self.message(Message::Finish)?;
        self.sender = None;
        self.join()
    }

    fn message(&mut self, message: Message) -> TiffResult<()> {
        let sender = self.sender.as_ref().expect("sink used after finish");
        match sender.send(message) {
            Ok(()) => Ok(()),
            // The thread hung up: it failed, and its result says why.
            Err(_) => {
                self.sender = None;
                self.join()
                    .and(Err(io::Error::other("TIFF writer thread stopped").into()))
            }
        }
    }

    fn join(&mut self) -> TiffResult<()> {
        let thread = self.thread.take().expect("sink joined twice");
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("TIFF writer thread panicked").into()))
    }
}

impl Drop for Sink {
    /// Cancels: the thread sees the channel close before `Finish` and stops writing.
    fn drop(&mut self) {
        self.sender = None;
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

fn run(
    file: File,
    dims: &[(u32, u32)],
    tags: &TagTemplate,
    receiver: Receiver<Message>,
) -> TiffResult<()> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut tables: Vec<TileTable> = dims.iter().map(|_| TileTable::default()).collect();
    let mut shared: HashMap<PixelKey, (u64, u64)> = HashMap::new();
    {
        let mut encoder = TiffEncoder::new_big(&mut out)?;
        {
            // Level 0's directory is open while tiles of every level stream in: its
            // `write_data` is the crate's way to append raw bytes.
            let mut dir = encoder.image_directory()?;
            loop {
                let (level, chunks) = match receiver.recv() {
                    Ok(Message::Tiles { level, chunks }) => (level, chunks),
                    Ok(Message::Finish) => break,
                    Err(_) => return Err(io::Error::other("TIFF writing cancelled").into()),
                };
                let table = &mut tables[level];
                for chunk in chunks {
                    let (offset, len) = match chunk {
                        Chunk::Data(bytes) => (dir.write_data(&bytes[..])?, bytes.len() as u64),
                        Chunk::Shared { key, first } => match first {
                            Some(bytes) => {
                                let place = (dir.write_data(&bytes[..])?, bytes.len() as u64);
                                shared.insert(key, place);
                                place
                            }
                            None => shared[&key],
                        },
                    };
                    table.offsets.push(offset);
                    table.byte_counts.push(len);
                }
            }
            tags.write(&mut dir, 0, dims[0], &tables[0])?;
            dir.finish()?;
        }
        // Reduced levels follow in the main IFD chain: OpenSlide ignores SubIFDs.
        for (level, (&size, table)) in dims.iter().zip(&tables).enumerate().skip(1) {
            let mut dir = encoder.image_directory()?;
            tags.write(&mut dir, level, size, table)?;
            dir.finish()?;
        }
    }
    out.flush().map_err(TiffError::from)
}
