fn main() {
    std::process::exit(sft_cli::data::main());
}
