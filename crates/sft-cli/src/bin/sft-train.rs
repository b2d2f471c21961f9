// Training allocates large, short-lived tensors; mimalloc keeps them off the kernel's
// page-fault path more than the system allocator does (benches/train_bench.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    sft_cli::keep_freed_memory();
    sft_cli::run(sft_cli::train::main);
}
