//! Phone numbers and extensions: how deskhook spells a client's number and which strings are
//! extensions it may hand to the dialplan. Shared by `/forward`, the call history and the
//! CRM sinks; depends on nothing else in the crate.

pub(crate) mod phone;

pub use phone::{PhoneError, PhoneNormalizer};

/// Longest extension accepted from a resolver or a CRM.
pub(crate) const EXTENSION_MAX_LEN: usize = 20;

/// An extension is what the dialplan can `Goto`/`Dial` safely: ASCII digits and letters, `*#_+-`.
pub(crate) fn is_valid_extension(number: &str) -> bool {
    !number.is_empty()
        && number.len() <= EXTENSION_MAX_LEN
        && number.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'#' | b'_' | b'+' | b'-'))
}
