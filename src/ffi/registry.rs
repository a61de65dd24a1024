//! Handles that C may keep past their validity. A handle is not a pointer
//! but a token: a cell index and a generation, disguised as a pointer and
//! never dereferenced. Cells live in chunks that are never freed, so looking
//! up a stale token is always safe: its generation no longer matches and the
//! call fails with WDPOOL_STALE_HANDLE instead of touching freed memory.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;

use crossbeam_queue::SegQueue;

use crate::error::{Error, ErrorKind, Result};

const CHUNK_SIZE: usize = 256;
const CHUNKS: usize = 4096;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("wdpool's handle tokens need 64-bit pointers");

struct Cell<T> {
    state: Mutex<(u32, Option<T>)>,
}

pub(crate) struct Registry<T> {
    chunks: [AtomicPtr<Cell<T>>; CHUNKS],
    next: AtomicU32,
    free: SegQueue<u32>,
    what: &'static str,
}

impl<T> Registry<T> {
    pub(crate) const fn new(what: &'static str) -> Self {
        Registry {
            chunks: [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS],
            next: AtomicU32::new(0),
            free: SegQueue::new(),
            what,
        }
    }

    fn cell(&self, index: u32) -> Option<&Cell<T>> {
        let (chunk, offset) = (index as usize / CHUNK_SIZE, index as usize % CHUNK_SIZE);
        let base = self.chunks.get(chunk)?.load(Ordering::Acquire);
        // SAFETY: chunks are arrays of CHUNK_SIZE cells, published once and
        // never freed.
        (!base.is_null()).then(|| unsafe { &*base.add(offset) })
    }

    fn cell_or_alloc(&self, index: u32) -> Result<&Cell<T>> {
        let chunk = index as usize / CHUNK_SIZE;
        let slot = self.chunks.get(chunk).ok_or_else(|| {
            Error::new(ErrorKind::InvalidArgument, format!("too many live {} handles", self.what))
        })?;
        if slot.load(Ordering::Acquire).is_null() {
            let cells: Box<[Cell<T>]> = (0..CHUNK_SIZE).map(|_| Cell { state: Mutex::new((0, None)) }).collect();
            let fresh = Box::into_raw(cells) as *mut Cell<T>;
            if slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // SAFETY: we just made it and lost the race to publish it.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, CHUNK_SIZE)) });
            }
        }
        Ok(self.cell(index).expect("chunk published"))
    }

    fn decode(token: usize) -> Option<(u32, u32)> {
        let token = token as u64;
        let index = (token & 0xffff_ffff) as u32;
        (index != 0).then(|| (index - 1, (token >> 32) as u32))
    }

    /// Stores `value`; returns its token (never 0).
    pub(crate) fn insert(&self, value: T) -> Result<usize> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => self.next.fetch_add(1, Ordering::Relaxed),
        };
        let cell = self.cell_or_alloc(index)?;
        let mut state = cell.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = Some(value);
        Ok((((state.0 as u64) << 32) | (index as u64 + 1)) as usize)
    }

    fn stale(&self) -> Error {
        Error::new(
            ErrorKind::StaleHandle,
            format!("the {} handle is no longer valid: its callback returned or it was checked in", self.what),
        )
    }

    /// Runs `f` on the live value behind `token`.
    pub(crate) fn with<R>(&self, token: usize, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let (index, generation) = Self::decode(token).ok_or_else(|| self.stale())?;
        let cell = self.cell(index).ok_or_else(|| self.stale())?;
        let mut state = cell.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            (g, Some(value)) if *g == generation => Ok(f(value)),
            _ => Err(self.stale()),
        }
    }

    /// Takes the value out when `keep` says so; the token is stale from then on.
    pub(crate) fn remove_if(&self, token: usize, take: impl FnOnce(&T) -> Result<()>) -> Result<T> {
        let (index, generation) = Self::decode(token).ok_or_else(|| self.stale())?;
        let cell = self.cell(index).ok_or_else(|| self.stale())?;
        let mut state = cell.state.lock().unwrap_or_else(|e| e.into_inner());
        match &*state {
            (g, Some(value)) if *g == generation => take(value)?,
            _ => return Err(self.stale()),
        }
        let value = state.1.take().expect("checked above");
        state.0 = state.0.wrapping_add(1);
        drop(state);
        self.free.push(index);
        Ok(value)
    }

    pub(crate) fn remove(&self, token: usize) -> Result<T> {
        self.remove_if(token, |_| Ok(()))
    }
}

/// Removes a registered value when dropped: a callback's handle goes stale
/// however the callback ends.
pub(crate) struct Registered<'r, T: 'static> {
    registry: &'r Registry<T>,
    pub(crate) token: usize,
}

impl<'r, T> Registered<'r, T> {
    pub(crate) fn new(registry: &'r Registry<T>, value: T) -> Result<Self> {
        Ok(Registered { registry, token: registry.insert(value)? })
    }

    /// Ends the registration, returning the value.
    pub(crate) fn take(self) -> Option<T> {
        let token = self.token;
        let registry = self.registry;
        std::mem::forget(self);
        registry.remove(token).ok()
    }
}

impl<T> Drop for Registered<'_, T> {
    fn drop(&mut self) {
        let _ = self.registry.remove(self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static R: Registry<u32> = Registry::new("test");

    #[test]
    fn stale_tokens_are_refused_even_after_reuse() {
        let a = R.insert(1).unwrap();
        assert_eq!(R.with(a, |v| *v).unwrap(), 1);
        assert_eq!(R.remove(a).unwrap(), 1);
        assert_eq!(R.with(a, |v| *v).unwrap_err().kind, ErrorKind::StaleHandle);
        let b = R.insert(2).unwrap();
        assert_ne!(a, b, "a reused cell gets a new generation");
        assert_eq!(R.with(a, |v| *v).unwrap_err().kind, ErrorKind::StaleHandle);
        assert_eq!(R.with(b, |v| *v).unwrap(), 2);
        assert!(R.remove(a).is_err());
        assert_eq!(R.remove(b).unwrap(), 2);
    }

    #[test]
    fn garbage_tokens_are_refused() {
        for token in [0usize, 1, 0xdead_beef, usize::MAX] {
            assert!(R.with(token, |_| ()).is_err());
        }
    }

    #[test]
    fn many_handles_span_chunks() {
        let tokens: Vec<_> = (0..1000).map(|i| R.insert(i).unwrap()).collect();
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(R.with(*t, |v| *v).unwrap(), i as u32);
        }
        for t in tokens {
            R.remove(t).unwrap();
        }
    }
}
