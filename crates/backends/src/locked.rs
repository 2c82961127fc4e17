//! The one module with `unsafe`: keeping the master key's memory out of swap with `mlock`.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ops::Deref;
use std::sync::Once;

/// A value on pages of its own: page-aligned, and a whole number of pages long.
#[repr(C, align(4096))]
struct PageAligned<T>(T);

/// A value kept in locked memory where the OS allows (`mlock`), so it is never written to swap.
///
/// Where locking is refused (a low `RLIMIT_MEMLOCK`), the value still works and a warning is logged
/// once. The pages are never unlocked: a freed page stays locked until the process exits, a page or
/// two for each store opened.
pub(crate) struct Locked<T> {
    inner: Box<PageAligned<T>>,
    locked: bool,
}

impl<T> Locked<T> {
    pub(crate) fn new(value: T) -> Self {
        let inner = Box::new(PageAligned(value));
        let ptr = std::ptr::from_ref::<PageAligned<T>>(&inner)
            .cast::<c_void>()
            .cast_mut();
        // SAFETY: `inner` is one live allocation, page-aligned and a whole number of pages long
        // (both the alignment and the size of `PageAligned<T>` are multiples of 4096), so the page
        // range mlock covers is exactly memory this pointer may read. mlock only pins those pages in
        // RAM; it neither reads nor writes them.
        let result = unsafe { rustix::mm::mlock(ptr, size_of::<PageAligned<T>>()) };
        if let Err(err) = result {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| tracing::warn!(%err, "cannot lock the master key in memory (mlock); it may reach swap"));
        }
        Self {
            inner,
            locked: result.is_ok(),
        }
    }

    /// Whether the value's pages are locked.
    pub(crate) fn is_locked(&self) -> bool {
        self.locked
    }
}

impl<T> Deref for Locked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_where_allowed_and_reads_back() {
        let locked = Locked::new([7u8; 32]);
        assert_eq!(*locked, [7u8; 32]);
        let address = std::ptr::from_ref::<[u8; 32]>(&locked) as usize;
        assert_eq!(address % 4096, 0, "the value starts a page of its own");
        if rustix::process::geteuid().is_root() {
            assert!(locked.is_locked(), "root may always lock");
            let status = std::fs::read_to_string("/proc/self/status").expect("status");
            let vm_lck = status
                .lines()
                .find(|l| l.starts_with("VmLck:"))
                .expect("VmLck");
            assert_ne!(vm_lck.split_whitespace().nth(1), Some("0"), "{vm_lck}");
        }
    }
}
