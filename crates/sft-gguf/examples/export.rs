//! Exports a model folder to GGUF from the command line, for the fixture script and for
//! trying the library out (the `sft-train --export_gguf` flag is the way users get it):
//!
//!     cargo run --release -p sft-gguf --example export -- MODEL_DIR OUT_DIR Q4_K_M,Q8_0 [NAME [TOKENIZER_PRE]]

use std::path::PathBuf;
use std::process::ExitCode;

use sft_gguf::{export_with_progress, ExportEvent, ExportOptions, GgufType};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args.len() > 5 {
        eprintln!("usage: export MODEL_DIR OUT_DIR TYPE[,TYPE...] [NAME [TOKENIZER_PRE]]");
        return ExitCode::from(2);
    }
    let types = match GgufType::parse_list(&args[2]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = ExportOptions {
        name: args.get(3).cloned(),
        tokenizer_pre: args.get(4).cloned(),
        ..ExportOptions::default()
    };
    let result = export_with_progress(
        &PathBuf::from(&args[0]),
        &PathBuf::from(&args[1]),
        &types,
        &options,
        &mut |event| match event {
            ExportEvent::FileDone(f) => println!(
                "wrote {} ({}, {} bytes, {:.2} s)",
                f.path.display(),
                f.gguf_type,
                f.bytes,
                f.seconds
            ),
            ExportEvent::ModelfileWritten(p) => println!("wrote {}", p.display()),
            _ => {}
        },
    );
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
