//! `cargo run -p sft-hub --example fetch -- model OWNER/NAME [REVISION]` or
//! `... -- dataset OWNER/NAME [CONFIG]`: resolves through the cache the environment names
//! (`HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`) and prints the local paths.
//! `tests/fixtures/hub/check_standin.py` uses it to have Python read a cache we wrote.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = (|| -> Result<(), sft_hub::HubError> {
        let client = sft_hub::HubClient::from_env()?;
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["model", id, rest @ ..] => {
                let dir = sft_hub::resolve_model(&client, id, rest.first().copied())?;
                println!("{}", dir.display());
            }
            ["dataset", id, rest @ ..] => {
                let files = sft_hub::resolve_dataset(
                    &client,
                    &sft_hub::DatasetRequest {
                        id: id.to_string(),
                        config: rest.first().map(|s| s.to_string()),
                        ..Default::default()
                    },
                )?;
                for (split, paths) in files.splits {
                    for p in paths {
                        println!("{split}\t{}", p.display());
                    }
                }
            }
            _ => {
                eprintln!(
                    "usage: fetch model OWNER/NAME [REVISION] | fetch dataset OWNER/NAME [CONFIG]"
                );
                std::process::exit(2);
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
