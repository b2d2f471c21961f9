//! The command-line front of the toolkit, on top of every other crate: flags in, library
//! calls, messages and exit codes out.
//!
//! Each binary is a thin wrapper around a module here, which parses flags with clap and
//! calls the library crates: `sft-data` ([`data`]: check, convert, render, prepare, show; mix, split, filter, dedupe and stats in `curate`),
//! `sft-train` ([`train`], over `sft-train`) and `sft-eval` ([`eval`], over `sft-eval`).
//! All three speak one flag language ([`flags`]). Exit codes are the same everywhere:
//! 0 success, 1 the data or the run has problems, 2 the command itself is wrong (bad flag,
//! missing path).

mod curate;
pub mod data;
pub mod eval;
pub mod flags;
mod inputs;
mod progress;
pub mod signals;
pub mod train;

/// Tells mimalloc (the binaries' allocator) to keep freed memory instead of returning it to
/// the kernel, and to commit its arenas up front.
///
/// A training or evaluation step frees and reallocates the same large tensors over and
/// over; with mimalloc's defaults each of them comes back from the kernel as fresh pages
/// that the kernel zeroes first (`clear_page_erms` was 18% of an `sft-eval` profile on
/// SmolLM2-135M). Keeping them made held-out scoring 31% and generation 31% faster
/// (`benches/eval.sh`, see the README). The cost: the process keeps its peak memory until
/// it exits, which a batch job does soon anyway. `MIMALLOC_PURGE_DELAY` or
/// `MIMALLOC_ARENA_EAGER_COMMIT` in the environment take precedence.
pub fn keep_freed_memory() {
    // Indices into mimalloc's `mi_option_t` (the same in its v2 and v3 headers; the
    // bindings name neither).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    for (option, var, value) in [
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", -1),
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 1),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: mi_option_set only stores the value in mimalloc's option table.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

/// Runs a command's `main` and exits with its code. A reader that goes away early
/// (`sft-data show ... | head`) is not a crash: the write to the closed pipe panics inside
/// `print!`, the panic unwinds (so temporary files are removed as everywhere else), and the
/// process exits quietly with [`EXIT_BROKEN_PIPE`], as a shell reports a command that
/// SIGPIPE stopped. Any other panic is reported as before.
pub fn run(main: fn() -> i32) -> ! {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe(info.payload()) {
            default_hook(info);
        }
    }));
    let code = match std::panic::catch_unwind(main) {
        Ok(code) => code,
        Err(payload) if is_broken_pipe(payload.as_ref()) => EXIT_BROKEN_PIPE,
        Err(_) => 101,
    };
    // What is still temporary now was not finished (or is the copy of standard input).
    sft_io::write::remove_temporaries();
    std::process::exit(code)
}

/// Whether a panic is the standard library's on printing to a closed stdout or stderr.
fn is_broken_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    message.starts_with("failed printing to") && message.contains("Broken pipe")
}

/// The reader of the output went away (128 + SIGPIPE, as a shell reports it).
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// The data or the run has problems.
pub const EXIT_PROBLEMS: i32 = 1;
/// The command line is wrong.
pub const EXIT_USAGE: i32 = 2;

/// Flags into `T`, or the exit code after clap has printed why not: 2 for a wrong command
/// line, 0 for `--help` and `--version`.
fn parse_flags<T: clap::Parser, I: Into<std::ffi::OsString> + Clone>(
    args: impl IntoIterator<Item = I>,
) -> Result<T, i32> {
    T::try_parse_from(args).map_err(|e| {
        let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
        let _ = e.print();
        code
    })
}
