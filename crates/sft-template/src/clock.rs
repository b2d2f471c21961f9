//! The clock behind `strftime_now`, which templates such as Llama 3.2 and SmolLM3 use to
//! write today's date. Injectable, so renders can be reproduced (and compared with
//! transformers' at a frozen instant).

use std::time::{SystemTime, UNIX_EPOCH};

/// A calendar date and time without a time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaiveDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl NaiveDateTime {
    /// `YYYY-MM-DDTHH:MM:SS` (or a space for the `T`, seconds optional, or a date alone).
    pub fn parse(text: &str) -> Result<NaiveDateTime, String> {
        let bad = || format!("{text}: expected YYYY-MM-DDTHH:MM:SS, such as 2025-03-07T09:05:00");
        let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00:00"));
        let d: Vec<&str> = date.split('-').collect();
        let t: Vec<&str> = time.split(':').collect();
        if d.len() != 3 || t.len() < 2 || t.len() > 3 {
            return Err(bad());
        }
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let dt = NaiveDateTime {
            year: d[0].parse::<i64>().map_err(|_| bad())?,
            month: num(d[1])?,
            day: num(d[2])?,
            hour: num(t[0])?,
            minute: num(t[1])?,
            second: if t.len() == 3 { num(t[2])? } else { 0 },
        };
        if !(1..=12).contains(&dt.month)
            || !(1..=31).contains(&dt.day)
            || dt.hour > 23
            || dt.minute > 59
            || dt.second > 60
        {
            return Err(bad());
        }
        Ok(dt)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The current time in UTC.
    #[default]
    System,
    Fixed(NaiveDateTime),
}

impl Clock {
    pub fn now(&self) -> NaiveDateTime {
        match self {
            Clock::Fixed(t) => *t,
            Clock::System => {
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                NaiveDateTime::from_unix(secs)
            }
        }
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl NaiveDateTime {
    pub fn from_unix(secs: i64) -> NaiveDateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
        NaiveDateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// 0 = Monday.
    fn weekday(&self) -> usize {
        (days_from_civil(self.year, self.month, self.day) + 3).rem_euclid(7) as usize
    }

    fn day_of_year(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) - days_from_civil(self.year, 1, 1) + 1
    }

    /// Python's `datetime.strftime` for the directives templates use.
    pub fn strftime(&self, format: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(d) = chars.next() else {
                out.push('%');
                break;
            };
            let month = MONTHS[(self.month - 1) as usize];
            let weekday = WEEKDAYS[self.weekday()];
            match d {
                'Y' => out.push_str(&self.year.to_string()),
                'y' => out.push_str(&format!("{:02}", self.year.rem_euclid(100))),
                'm' => out.push_str(&format!("{:02}", self.month)),
                'd' => out.push_str(&format!("{:02}", self.day)),
                'e' => out.push_str(&format!("{:>2}", self.day)),
                '-' => match chars.next() {
                    Some('d') => out.push_str(&self.day.to_string()),
                    Some('m') => out.push_str(&self.month.to_string()),
                    Some('H') => out.push_str(&self.hour.to_string()),
                    other => {
                        return Err(format!(
                            "strftime_now: unsupported directive %-{}",
                            other.unwrap_or(' ')
                        ))
                    }
                },
                'H' => out.push_str(&format!("{:02}", self.hour)),
                'I' => out.push_str(&format!("{:02}", (self.hour + 11) % 12 + 1)),
                'M' => out.push_str(&format!("{:02}", self.minute)),
                'S' => out.push_str(&format!("{:02}", self.second)),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'B' => out.push_str(month),
                'b' | 'h' => out.push_str(&month[..3]),
                'A' => out.push_str(weekday),
                'a' => out.push_str(&weekday[..3]),
                'j' => out.push_str(&format!("{:03}", self.day_of_year())),
                'F' => out.push_str(&format!("{}-{:02}-{:02}", self.year, self.month, self.day)),
                'T' => out.push_str(&format!(
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                )),
                '%' => out.push('%'),
                other => return Err(format!("strftime_now: unsupported directive %{other}")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn datetimes_parse_with_or_without_seconds_and_bad_ones_say_the_shape() {
        let t = NaiveDateTime::parse("2025-03-07T09:05:00").unwrap();
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2025, 3, 7, 9, 5, 0)
        );
        assert_eq!(NaiveDateTime::parse("2025-03-07 09:05").unwrap(), t);
        assert_eq!(NaiveDateTime::parse("2025-03-07").unwrap().hour, 0);
        for bad in ["2025-13-01", "2025-03-07T25:00", "yesterday", "2025-03"] {
            let e = NaiveDateTime::parse(bad).unwrap_err();
            assert!(e.contains("YYYY-MM-DDTHH:MM:SS") && e.contains(bad), "{e}");
        }
    }

    use super::*;

    #[test]
    fn dates_and_formats() {
        // 2025-03-07 09:05:00 UTC, a Friday.
        let t = NaiveDateTime::from_unix(1_741_338_300);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute),
            (2025, 3, 7, 9, 5)
        );
        assert_eq!(t.strftime("%d %b %Y").unwrap(), "07 Mar 2025");
        assert_eq!(
            t.strftime("%A %d %B %Y, %H:%M").unwrap(),
            "Friday 07 March 2025, 09:05"
        );
        assert_eq!(t.strftime("%j %y %I%p %%").unwrap(), "066 25 09AM %");
        assert_eq!(
            NaiveDateTime::from_unix(0).strftime("%F %T %a").unwrap(),
            "1970-01-01 00:00:00 Thu"
        );
        assert!(t.strftime("%Q").is_err());
    }
}
