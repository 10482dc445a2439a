//! UTC calendar arithmetic and the timestamp formats the signatures use; no clock is read here except by [`now`].

/// Seconds since the Unix epoch, from the system clock (net's, the one clock reading of the network layer).
pub use imgport_net::skew::system_now as now;

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

// Days-from-civil and its inverse (proleptic Gregorian), exact for any i64 day count in range.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

impl UtcTime {
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86400);
        let rem = secs.rem_euclid(86400) as u32;
        let (year, month, day) = civil_from_days(days);
        UtcTime { year, month, day, hour: rem / 3600, minute: rem / 60 % 60, second: rem % 60 }
    }

    pub fn to_unix(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86400
            + (self.hour * 3600 + self.minute * 60 + self.second) as i64
    }

    /// `20231216T162057Z` (x-oss-date, x-amz-date).
    pub fn basic(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `20231216` (the date of a credential scope).
    pub fn date_basic(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// `2023-12-16T16:20:57Z` (RPC Timestamp, x-acs-date, STS and metadata Expiration).
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `Wed, 28 Dec 2022 10:27:41 GMT` (the HTTP Date header).
    pub fn http_date(&self) -> String {
        let days = self.to_unix().div_euclid(86400);
        let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            weekday,
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    fn checked(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<Self> {
        let t = UtcTime { year, month, day, hour, minute, second };
        let ok = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second < 61;
        // Reject dates such as 31 February that would silently roll over.
        (ok && UtcTime::from_unix(t.to_unix()).day == day).then_some(t)
    }
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ`, also with fractional seconds (`...:SS.123Z`).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let time = time.split_once('.').map_or(time, |(t, _)| t);
    let mut d = date.splitn(3, '-');
    let mut t = time.splitn(3, ':');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (h, mi, se) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    Some(UtcTime::checked(y as i64, mo, da, h, mi, se)?.to_unix())
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_basic(s: &str) -> Option<i64> {
    if s.len() != 16 || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let f = |a: usize, b: usize| s.get(a..b).and_then(num);
    Some(UtcTime::checked(f(0, 4)? as i64, f(4, 6)?, f(6, 8)?, f(9, 11)?, f(11, 13)?, f(13, 15)?)?.to_unix())
}

/// Parses an IMF-fixdate HTTP date (`Wed, 28 Dec 2022 10:27:41 GMT`).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day = num(parts.next()?)?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year = num(parts.next()?)?;
    let mut t = parts.next()?.splitn(3, ':');
    let (h, mi, se) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if parts.next()? != "GMT" {
        return None;
    }
    Some(UtcTime::checked(year as i64, month, day, h, mi, se)?.to_unix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = UtcTime::from_unix(1702743657);
        assert_eq!(t.basic(), "20231216T162057Z");
        assert_eq!(t.date_basic(), "20231216");
        assert_eq!(t.iso8601(), "2023-12-16T16:20:57Z");
        assert_eq!(UtcTime::from_unix(1672223261).http_date(), "Wed, 28 Dec 2022 10:27:41 GMT");
        assert_eq!(UtcTime::from_unix(0).http_date(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(UtcTime::from_unix(-1).iso8601(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses() {
        assert_eq!(parse_iso8601("2023-12-16T16:20:57Z"), Some(1702743657));
        assert_eq!(parse_iso8601("2023-12-16T16:20:57.250Z"), Some(1702743657));
        assert_eq!(parse_basic("20231216T162057Z"), Some(1702743657));
        assert_eq!(parse_http_date("Wed, 28 Dec 2022 10:27:41 GMT"), Some(1672223261));
        for bad in ["", "2023-02-31T00:00:00Z", "2023-12-16 16:20:57Z", "2023-12-16T16:20:57", "x-1-1T0:0:0Z"] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        assert_eq!(parse_basic("20231216T162057"), None);
        assert_eq!(parse_http_date("Wed, 28 Foo 2022 10:27:41 GMT"), None);
    }

    #[test]
    fn round_trip_many_days() {
        for secs in (-5_000_000_000i64..5_000_000_000).step_by(86_399 * 97) {
            assert_eq!(UtcTime::from_unix(secs).to_unix(), secs);
            assert_eq!(parse_iso8601(&UtcTime::from_unix(secs).iso8601()), Some(secs), "{secs}");
        }
    }
}
