// Rows are many small allocations (JSON values, template contexts); mimalloc measured
// 10% faster than the system allocator on template rendering (benches/render_bench.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(sft_cli::data::main());
}
