//! helpline binary: parses the command line and hands over to `helpline::cli`; with the `mimalloc`
//! feature (off by default: the load harness's allocator trial) its global allocator is mimalloc.

// glibc keeps the high-water mark of a burst of calls (BENCHMARKS.md, G5b); the trial measures both.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    helpline::cli::main()
}
