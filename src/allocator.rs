//! Memory settings of pitlake's binaries, which run on mimalloc.

/// Turns transparent huge pages off for this process.
///
/// mimalloc asks the kernel for huge pages. Each first touch of one then
/// zeroes 2 MiB, and where memory is fragmented (a page cache full of
/// Parquet files) the kernel may compact it first, stalling the thread: on
/// this project's VM a join of 5M labels against 50M feature rows spent
/// between 0.1 and 8 s in the kernel from one run to the next with huge
/// pages, and 0.6 s every run without them, at 10-20% less peak memory (a
/// run with huge pages and nothing to compact was up to 10% faster).
pub fn disable_transparent_huge_pages() {
    // Failing (a kernel built without them) leaves nothing to turn off.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}
