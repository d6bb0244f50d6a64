//! The `hetsched` command line.

mod cli;

// Activation buffers are allocated and freed on every run; mimalloc keeps freed pages for reuse
// instead of returning them to the OS, which saves a page fault per 4 KiB on each run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`,
    // `| grep -q`) instead of panicking on the broken pipe: Rust ignores SIGPIPE by default.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    // One command, one calling thread: its runs start where they are called.
    hetsched::backend::cpu::threads::adopt_calling_thread(args.cpu_threads());
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
