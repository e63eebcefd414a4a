//! Phone number normalisation: the one spelling every resolver, the cache and the history use.
//!
//! SPEC §4: digits only, and a national trunk prefix (Russia's leading 8) is read as the
//! country code, so `+7 916 123-45-67`, `89161234567` and `79161234567` are one client.
//! A small function instead of `phonenumber` (libphonenumber's metadata): deskhook must
//! match whatever the carrier and the CRM wrote, including numbers that crate would reject
//! as invalid (short internal numbers, test ranges), and it must stay cheap on the hot path.

use std::fmt;

/// Longest raw `phone` value accepted; anything longer is not a phone number.
const MAX_RAW_LEN: usize = 64;
/// E.164 allows 15 digits.
const MAX_DIGITS: usize = 15;
const MIN_DIGITS: usize = 2;

/// Why a value is not a phone number. Messages are one line without `&` or `=`, so they are
/// safe as a `/forward` 400 body that the dialplan's hashcompat parser might read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone is missing: expected the caller's number in the phone parameter")]
    Missing,
    #[error("phone is too long: expected at most 64 characters")]
    TooLong,
    #[error("phone has a character that is not part of a number: expected digits, spaces, + - ( ) .")]
    BadCharacter,
    #[error("phone has no digits: expected the caller's number (anonymous callers cannot be routed)")]
    NoDigits,
    #[error("phone has too few digits: expected at least 2")]
    TooShort,
    #[error("phone has too many digits: expected at most 15")]
    TooManyDigits,
}

/// How national numbers of the default country are written, so they can be made international.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNormalizer {
    country: String,
    /// Dialled before a national number inside the country (`8` in Russia, `0` in most of Europe).
    trunk_prefix: String,
    /// Dialled before an international number (`00`, `810` from Russia, `011` from North America).
    international_prefixes: &'static [&'static str],
    /// Digits of a national significant number, where the plan has one fixed length.
    national_len: Option<usize>,
}

impl Default for PhoneNormalizer {
    fn default() -> Self {
        Self::new("7")
    }
}

impl PhoneNormalizer {
    /// `country` is a calling code such as `"7"` or `"49"` (`forward.default_country`).
    pub fn new(country: &str) -> Self {
        let country: String = country.chars().filter(char::is_ascii_digit).collect();
        // Numbering plans deskhook's users meet most; other countries get the common `0` trunk prefix.
        let (trunk_prefix, international_prefixes, national_len): (&str, &'static [&'static str], Option<usize>) =
            match country.as_str() {
                "7" => ("8", &["810", "00"], Some(10)),
                "375" => ("80", &["810", "00"], Some(9)),
                "380" => ("0", &["00"], Some(9)),
                "1" => ("1", &["011"], Some(10)),
                "44" => ("0", &["00"], Some(10)),
                "33" => ("0", &["00"], Some(9)),
                "39" => ("", &["00"], None),
                _ => ("0", &["00"], None),
            };
        Self { country, trunk_prefix: trunk_prefix.into(), international_prefixes, national_len }
    }

    /// The canonical digits of `raw`, or why it is not a phone number.
    pub(crate) fn normalise(&self, raw: &str) -> Result<String, PhoneError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PhoneError::Missing);
        }
        if raw.len() > MAX_RAW_LEN {
            return Err(PhoneError::TooLong);
        }
        let mut digits = String::with_capacity(raw.len());
        let mut international = false;
        for (index, c) in raw.char_indices() {
            match c {
                '0'..='9' => digits.push(c),
                // A `+` only means "international" in front; a form-decoded `+` is a space.
                '+' if digits.is_empty() && index == 0 => international = true,
                ' ' | '-' | '(' | ')' | '.' | '+' => {}
                _ => return Err(PhoneError::BadCharacter),
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::NoDigits);
        }
        if international {
            return check_length(digits);
        }
        for prefix in self.international_prefixes {
            if let Some(rest) = digits.strip_prefix(prefix) {
                if rest.len() >= 7 {
                    return check_length(rest.to_string());
                }
            }
        }
        if !self.trunk_prefix.is_empty() {
            if let Some(national) = digits.strip_prefix(self.trunk_prefix.as_str()) {
                let is_national = match self.national_len {
                    Some(len) => national.len() == len,
                    None => national.len() >= 6,
                };
                if is_national {
                    return check_length(format!("{}{national}", self.country));
                }
            }
        }
        if self.national_len == Some(digits.len()) {
            return check_length(format!("{}{digits}", self.country));
        }
        check_length(digits)
    }

    /// How people in the default country dial a normalised number (`79161234567` → `89161234567`),
    /// for CRMs that match the stored spelling.
    pub(crate) fn national_form(&self, normalised: &str) -> Option<String> {
        let national = normalised.strip_prefix(self.country.as_str())?;
        if national.is_empty() || self.national_len.is_some_and(|len| national.len() != len) {
            return None;
        }
        Some(format!("{}{national}", self.trunk_prefix))
    }

    /// The number without the default country code (`79161234567` → `9161234567`).
    pub(crate) fn national_significant<'a>(&self, normalised: &'a str) -> Option<&'a str> {
        let national = normalised.strip_prefix(self.country.as_str())?;
        match self.national_len {
            Some(len) if national.len() == len => Some(national),
            _ => None,
        }
    }
}

fn check_length(digits: String) -> Result<String, PhoneError> {
    if digits.len() < MIN_DIGITS {
        Err(PhoneError::TooShort)
    } else if digits.len() > MAX_DIGITS {
        Err(PhoneError::TooManyDigits)
    } else {
        Ok(digits)
    }
}

impl fmt::Display for PhoneNormalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.country)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_russian_spellings_are_one_client() {
        let phones = PhoneNormalizer::new("7");
        for raw in
            ["+7 916 123-45-67", "89161234567", "79161234567", "9161234567", "+7 (916) 123.45.67", "81079161234567"]
        {
            assert_eq!(phones.normalise(raw).as_deref(), Ok("79161234567"), "{raw}");
        }
        // A form-decoded `+` arrives as a space.
        assert_eq!(phones.normalise(" 79161234567").as_deref(), Ok("79161234567"));
        assert_eq!(phones.normalise("88001234567").as_deref(), Ok("78001234567"));
        // Kazakhstan shares +7: its 10-digit national numbers start with 7.
        assert_eq!(phones.normalise("7012345678").as_deref(), Ok("77012345678"));
    }

    #[test]
    fn other_countries_and_short_numbers() {
        let germany = PhoneNormalizer::new("49");
        assert_eq!(germany.normalise("030 1234567").as_deref(), Ok("49301234567"));
        assert_eq!(germany.normalise("+49 30 1234567").as_deref(), Ok("49301234567"));
        assert_eq!(germany.normalise("0049 30 1234567").as_deref(), Ok("49301234567"));
        let russia = PhoneNormalizer::default();
        assert_eq!(russia.normalise("101").as_deref(), Ok("101"));
        assert_eq!(russia.normalise("+44 20 7946 0958").as_deref(), Ok("442079460958"));
        let usa = PhoneNormalizer::new("1");
        assert_eq!(usa.normalise("(212) 555-0100").as_deref(), Ok("12125550100"));
        assert_eq!(usa.normalise("1 212 555 0100").as_deref(), Ok("12125550100"));
    }

    #[test]
    fn garbage_is_rejected_with_a_hash_safe_reason() {
        let phones = PhoneNormalizer::default();
        let cases = [
            ("", PhoneError::Missing),
            ("   ", PhoneError::Missing),
            ("anonymous", PhoneError::BadCharacter),
            ("7916&number=1", PhoneError::BadCharacter),
            ("7916\n1234567", PhoneError::BadCharacter),
            ("7916\u{fffd}", PhoneError::BadCharacter),
            ("+-()", PhoneError::NoDigits),
            ("1", PhoneError::TooShort),
            ("1234567890123456", PhoneError::TooManyDigits),
        ];
        for (raw, expected) in cases {
            assert_eq!(phones.normalise(raw), Err(expected), "{raw:?}");
        }
        assert_eq!(phones.normalise(&"1".repeat(10_000)), Err(PhoneError::TooLong));
        for error in [PhoneError::Missing, PhoneError::BadCharacter, PhoneError::TooLong, PhoneError::NoDigits] {
            let text = error.to_string();
            assert!(!text.contains(['&', '=', '\n', '\r']), "{text}");
        }
    }

    #[test]
    fn national_forms_for_crm_searches() {
        let phones = PhoneNormalizer::default();
        assert_eq!(phones.national_form("79161234567").as_deref(), Some("89161234567"));
        assert_eq!(phones.national_significant("79161234567"), Some("9161234567"));
        assert_eq!(phones.national_form("442079460958"), None);
    }
}
