fn main() {
    std::process::exit(sft_cli::train::main());
}
