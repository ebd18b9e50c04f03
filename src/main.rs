//! helpline binary: parses the command line and hands over to `helpline::cli`, and picks the global
//! allocator: jemalloc (default feature), mimalloc (`--features mimalloc`, which wins over jemalloc),
//! or the system's (`--no-default-features`).

// glibc keeps the high-water mark of a burst of calls; jemalloc's background thread gives it back
// (BENCHMARKS.md, G5b), and costs less CPU per call. The load harness measures all three.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    helpline::cli::main()
}
