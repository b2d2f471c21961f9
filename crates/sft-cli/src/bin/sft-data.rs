// Tokenization and JSON rows are many small allocations: mimalloc made `prepare` 27% faster
// (8.2 s to 6.0 s on 20,000 conversations, benches/prepare.sh), at the cost of more peak
// memory (check on 5 million short rows: 241 MB to 281 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    sft_cli::run(sft_cli::data::main);
}
