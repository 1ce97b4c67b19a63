//! Batches on their way to the GPU. Each batch is written into a pinned host buffer and copied on a
//! stream of its own, so the copy runs while the training stream computes the previous step; the
//! training stream waits for the copy (on the device, not the host) before its first read. The
//! device memory of a slot is reused once the tensor holding it is dropped: the drop marks the
//! point of the training stream after which the slot's next copy may overwrite it.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::Result;
use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, DriverError, PinnedHostSlice};

use super::gpu::wrap;
use super::slots::SlotBook;

/// One slot's buffers and the two points that guard them.
struct Slot {
    host: PinnedHostSlice<f32>,
    /// Owns the device memory (reached through `ptr`).
    _device: CudaSlice<f32>,
    ptr: u64,
    /// Recorded on the copy stream after the copy out of `host`.
    copied: CudaEvent,
    /// Recorded on the training stream when the batch in the slot was dropped.
    released: CudaEvent,
}

/// A slot's buffers, locked on their own: a busy slot is touched only by its batch, so the ring's
/// lock is held just long enough to choose a slot, never across a copy.
type Cell = Arc<Mutex<Option<Slot>>>;

struct Ring {
    book: SlotBook,
    slots: Vec<Cell>,
}

/// The staging ring of one GPU.
pub(super) struct Staging {
    ctx: Arc<CudaContext>,
    copy: Arc<CudaStream>,
    compute: Arc<CudaStream>,
    ring: Mutex<Ring>,
}

/// A batch's hold on its slot; dropping it frees the slot for a later batch.
pub(super) struct Lease {
    staging: Arc<Staging>,
    index: usize,
    cell: Cell,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(slot) = &*lock(&self.cell) {
            // Without the mark the slot cannot be proven free on the device: keep it busy.
            if slot.released.record(&self.staging.compute).is_err() {
                return;
            }
        }
        lock(&self.staging.ring).book.give_back(self.index);
    }
}

impl Staging {
    pub(super) fn new(
        ctx: &Arc<CudaContext>,
        compute: &Arc<CudaStream>,
    ) -> std::result::Result<Arc<Self>, DriverError> {
        let copy = ctx.new_stream()?;
        let ring = Mutex::new(Ring { book: SlotBook::default(), slots: Vec::new() });
        Ok(Arc::new(Self { ctx: ctx.clone(), copy, compute: compute.clone(), ring }))
    }

    fn allocate(&self, len: usize) -> Result<Slot> {
        // SAFETY: pinned memory is only written by `upload` after the previous copy out of it
        // finished (`copied` is synchronised first).
        let host = unsafe { self.ctx.alloc_pinned::<f32>(len) }.map_err(wrap)?;
        // SAFETY: every value is written by the copy before the training stream reads it.
        let device = unsafe { self.copy.alloc::<f32>(len) }.map_err(wrap)?;
        let (ptr, _) = device.device_ptr(&self.copy);
        let copied = self.ctx.new_event(None).map_err(wrap)?;
        let released = self.ctx.new_event(None).map_err(wrap)?;
        Ok(Slot { host, _device: device, ptr, copied, released })
    }

    /// Copies `src` into a slot's device memory on the copy stream and makes the training stream
    /// wait for the copy. Returns the slot's device address and the lease that keeps it.
    pub(super) fn upload(self: &Arc<Self>, src: &[f32]) -> Result<(u64, Lease)> {
        let (taken, cell) = {
            let mut ring = lock(&self.ring);
            let taken = ring.book.take(src.len().max(1));
            if ring.slots.len() <= taken.index {
                ring.slots.resize_with(taken.index + 1, Cell::default);
            }
            (taken, ring.slots[taken.index].clone())
        };
        let filled = self.fill(&mut lock(&cell), taken.allocate, src);
        match filled {
            Ok(ptr) => Ok((ptr, Lease { staging: self.clone(), index: taken.index, cell })),
            Err(e) => {
                lock(&self.ring).book.give_back(taken.index);
                Err(e)
            }
        }
    }

    fn fill(&self, cell: &mut Option<Slot>, allocate: bool, src: &[f32]) -> Result<u64> {
        if allocate || cell.is_none() {
            if let Some(old) = cell.take() {
                // The old device memory is freed on the copy stream: only after the training
                // stream is done with it.
                self.copy.wait(&old.released).map_err(wrap)?;
                drop(old);
            }
            *cell = Some(self.allocate(src.len().max(1))?);
        }
        let slot = cell.as_mut().ok_or_else(|| candle_core::Error::Msg("no staging slot".into()))?;
        slot.copied.synchronize().map_err(wrap)?;
        slot.host.as_mut_slice().map_err(wrap)?[..src.len()].copy_from_slice(src);
        self.copy.wait(&slot.released).map_err(wrap)?;
        self.ctx.bind_to_thread().map_err(wrap)?;
        let pinned = &slot.host.as_slice().map_err(wrap)?[..src.len()];
        if !pinned.is_empty() {
            // SAFETY: the slot's device memory holds at least `src.len()` values; the pinned
            // source stays untouched until `copied` has passed (synchronised before the next write).
            unsafe { cudarc::driver::result::memcpy_htod_async(slot.ptr, pinned, self.copy.cu_stream()) }
                .map_err(wrap)?;
        }
        slot.copied.record(&self.copy).map_err(wrap)?;
        self.compute.wait(&slot.copied).map_err(wrap)?;
        Ok(slot.ptr)
    }
}
