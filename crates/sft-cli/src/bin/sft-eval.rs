#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    sft_cli::keep_freed_memory();
    sft_cli::run(sft_cli::eval::main);
}
