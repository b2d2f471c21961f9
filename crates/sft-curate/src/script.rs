//! The writing system of a text, by Unicode blocks: enough to tell the languages of a
//! dataset apart at a glance (Latin, Cyrillic, Han, Japanese kana, Hangul, Arabic, ...).

/// The script most of the text's letters are written in; `none` for a text without
/// letters. Han with kana among it is `japanese`.
pub fn dominant_script(text: &str) -> &'static str {
    const NAMES: [&str; 14] = [
        "latin",
        "greek",
        "cyrillic",
        "armenian",
        "hebrew",
        "arabic",
        "devanagari",
        "bengali",
        "tamil",
        "thai",
        "georgian",
        "hangul",
        "kana",
        "han",
    ];
    let mut counts = [0u64; 15];
    for c in text.chars() {
        if !c.is_alphabetic() {
            continue;
        }
        let u = c as u32;
        let i = match u {
            0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => 0,
            0x370..=0x3FF | 0x1F00..=0x1FFF => 1,
            0x400..=0x52F => 2,
            0x530..=0x58F => 3,
            0x590..=0x5FF => 4,
            0x600..=0x6FF | 0x750..=0x77F | 0x8A0..=0x8FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => 5,
            0x900..=0x97F => 6,
            0x980..=0x9FF => 7,
            0xB80..=0xBFF => 8,
            0xE00..=0xE7F => 9,
            0x10A0..=0x10FF => 10,
            0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => 11,
            0x3040..=0x30FF | 0x31F0..=0x31FF => 12,
            0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF => 13,
            _ => 14,
        };
        counts[i] += 1;
    }
    let letters: u64 = counts.iter().sum();
    if letters == 0 {
        return "none";
    }
    // Japanese mixes kana and kanji: count them together.
    let (kana, han) = (counts[12], counts[13]);
    if kana > 0 && kana * 10 >= kana + han {
        counts[12] += han;
        counts[13] = 0;
    }
    let (best, _) = counts
        .iter()
        .enumerate()
        .max_by_key(|(i, &n)| (n, std::cmp::Reverse(*i)))
        .expect("not empty");
    match best {
        12 => "japanese",
        14 => "other",
        i => NAMES[i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts() {
        assert_eq!(dominant_script("Hello, world"), "latin");
        assert_eq!(dominant_script("Привет, мир"), "cyrillic");
        assert_eq!(dominant_script("你好世界"), "han");
        assert_eq!(dominant_script("こんにちは世界"), "japanese");
        assert_eq!(dominant_script("안녕하세요"), "hangul");
        assert_eq!(dominant_script("مرحبا"), "arabic");
        assert_eq!(dominant_script("123 !?"), "none");
    }
}
