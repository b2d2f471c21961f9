//! One flag language for the three binaries: TRL's and Hugging Face's names are accepted
//! with underscores and with dashes alike (`--max_length` and `--max-length`), as
//! `HfArgumentParser` does, and TRL flags this project does not support are refused with
//! the reason instead of clap's nearest unrelated suggestion.

/// TRL / transformers flags that are not supported, with why and what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("lora_modules_to_save", "fully trained copies of modules next to the adapters are not supported: LoRA trains the adapters of --lora_target_modules only"),
    ("use_dora", "DoRA adapters are not supported: use LoRA (--use_peft) or rsLoRA (--use_rslora)"),
    ("lora_target_parameters", "adapters on raw parameters (MoE experts) are not supported: name projections with --lora_target_modules"),
    ("load_in_4bit", "quantized (bitsandbytes) models are not supported: weights are loaded in float32"),
    ("load_in_8bit", "quantized (bitsandbytes) models are not supported: weights are loaded in float32"),
    ("torch_dtype", "the CPU computes in float32: bf16 and f16 weight files are converted when loaded, and checkpoints are written in float32"),
    ("dtype", "the CPU computes in float32: bf16 and f16 weight files are converted when loaded, and checkpoints are written in float32"),
    ("fp16", "the CPU trains in float32; there is no half-precision mode"),
    ("attn_implementation", "there is one attention implementation (eager attention with a fused masked softmax); flash_attention_2 and sdpa are PyTorch kernels"),
    ("deepspeed", "there is no distributed training: one process uses every core"),
    ("fsdp", "there is no distributed training: one process uses every core"),
    ("use_liger_kernel", "Liger kernels are Triton kernels for GPUs; the CPU path has its own fused loss"),
    ("torch_compile", "there is no PyTorch here; the model code is compiled Rust"),
];

/// `--flag_name` and `--flag-name` to the spelling the binary declares (`'_'` for
/// sft-train, `'-'` for sft-data and sft-eval), values kept as they are; an unsupported
/// TRL flag is an error with its reason. Arguments after a bare `--` are left alone.
pub fn normalise(args: Vec<String>, separator: char) -> Result<Vec<String>, String> {
    let other = if separator == '_' { '-' } else { '_' };
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || rest {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        let Some(flag) = arg.strip_prefix("--") else {
            out.push(arg);
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        let canonical = name.replace('-', "_");
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == canonical) {
            return Err(format!("--{canonical} is not supported: {why}"));
        }
        let name = name.replace(other, &separator.to_string());
        out.push(match value {
            Some(v) => format!("--{name}={v}"),
            None => format!("--{name}"),
        });
    }
    Ok(out)
}

/// Range checks of numeric flags, as clap value parsers: a value out of range is a usage
/// error (exit 2) that names the flag and the range, checked before anything runs. The
/// ranges are those transformers' `TrainingArguments`, TRL's `SFTConfig`, PEFT's
/// `LoraConfig` and torch's AdamW enforce.
pub mod range {
    fn number<T: std::str::FromStr>(s: &str, kind: &str) -> Result<T, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("expected {kind}, got {s:?}"))
    }

    fn finite(s: &str) -> Result<f64, String> {
        let x: f64 = number(s, "a number")?;
        if x.is_finite() {
            Ok(x)
        } else {
            Err("must be a finite number".into())
        }
    }

    /// An integer of at least 1 (lengths, batch sizes, step counts).
    pub fn positive(s: &str) -> Result<usize, String> {
        match number::<usize>(s, "a whole number of at least 1")? {
            0 => Err("must be at least 1".into()),
            n => Ok(n),
        }
    }

    /// An integer of at least 1, as a u64.
    pub fn positive_u64(s: &str) -> Result<u64, String> {
        positive(s).map(|n| n as u64)
    }

    /// A step count of at least 1, or -1 for none (`--max_steps`).
    pub fn max_steps(s: &str) -> Result<i64, String> {
        match number::<i64>(s, "a whole number")? {
            n if n >= 1 || n == -1 => Ok(n),
            _ => Err("must be at least 1 (or -1: train for --num_train_epochs)".into()),
        }
    }

    /// A finite number of at least 0 (learning rate, weight decay, epsilon, clipping norm,
    /// warmup steps, temperature).
    pub fn non_negative(s: &str) -> Result<f64, String> {
        let x = finite(s)?;
        if x >= 0.0 {
            Ok(x)
        } else {
            Err("must be at least 0".into())
        }
    }

    /// A finite number above 0 (epochs, LoRA alpha, a loss gate).
    pub fn above_zero(s: &str) -> Result<f64, String> {
        let x = finite(s)?;
        if x > 0.0 {
            Ok(x)
        } else {
            Err("must be above 0".into())
        }
    }

    /// A ratio within [0, 1] (warmup ratio, rates and shares of gates, similarity).
    pub fn ratio(s: &str) -> Result<f64, String> {
        let x = finite(s)?;
        if (0.0..=1.0).contains(&x) {
            Ok(x)
        } else {
            Err("must be within [0, 1]".into())
        }
    }

    /// A probability within [0, 1) (dropout, Adam's betas).
    pub fn below_one(s: &str) -> Result<f64, String> {
        let x = finite(s)?;
        if (0.0..1.0).contains(&x) {
            Ok(x)
        } else {
            Err("must be within [0, 1)".into())
        }
    }

    /// A share within (0, 1] (nucleus sampling's top-p).
    pub fn top_p(s: &str) -> Result<f64, String> {
        let x = finite(s)?;
        if x > 0.0 && x <= 1.0 {
            Ok(x)
        } else {
            Err("must be within (0, 1]".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn both_spellings_become_the_declared_one_and_values_are_kept() {
        let got = normalise(
            args(&[
                "sft-eval",
                "--max_new_tokens",
                "8",
                "--chat-template=my_file.jinja",
                "-q",
                "x_y",
            ]),
            '-',
        )
        .unwrap();
        assert_eq!(
            got,
            args(&[
                "sft-eval",
                "--max-new-tokens",
                "8",
                "--chat-template=my_file.jinja",
                "-q",
                "x_y"
            ])
        );
        let got = normalise(args(&["sft-train", "--max-length=64", "--", "--a-b"]), '_').unwrap();
        assert_eq!(got, args(&["sft-train", "--max_length=64", "--", "--a-b"]));
    }

    #[test]
    fn unsupported_trl_flags_say_why() {
        for flag in [
            "--use_dora",
            "--lora-modules-to-save",
            "--torch_dtype=bfloat16",
            "--attn-implementation",
            "--fp16",
        ] {
            let err = normalise(args(&["sft-train", flag]), '_').unwrap_err();
            assert!(err.contains("is not supported:"), "{flag}: {err}");
        }
    }

    #[test]
    fn ranges_name_what_is_allowed() {
        assert_eq!(range::positive("3"), Ok(3));
        assert_eq!(range::positive("0").unwrap_err(), "must be at least 1");
        assert!(range::positive("-1").unwrap_err().contains("whole number"));
        assert_eq!(range::ratio("1.5").unwrap_err(), "must be within [0, 1]");
        assert_eq!(range::ratio("0.1"), Ok(0.1));
        assert_eq!(
            range::non_negative("-1e-4").unwrap_err(),
            "must be at least 0"
        );
        assert_eq!(
            range::non_negative("nan").unwrap_err(),
            "must be a finite number"
        );
        assert_eq!(range::below_one("1").unwrap_err(), "must be within [0, 1)");
        assert_eq!(range::top_p("0").unwrap_err(), "must be within (0, 1]");
        assert_eq!(range::above_zero("0").unwrap_err(), "must be above 0");
    }
}
