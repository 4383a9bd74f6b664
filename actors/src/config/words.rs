//! Settings that take one of a few words: the parse and its error text.
//! A leaf module, so that every config struct (the broker's, the store's,
//! TLS's) can use it without importing `config.rs`.

/// `impl TryFrom<String>` for an enum setting that takes one of a few words
/// (the enum has `#[serde(try_from = "String")]`): a wrong word is an error
/// naming the key and listing the words ([`choice`]).
macro_rules! setting_words {
    ($ty:ty, $key:literal, [$(($word:literal, $value:expr)),+ $(,)?]) => {
        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $crate::config::words::choice(&s, $key, &[$(($word, $value)),+])
            }
        }
    };
}
pub(crate) use setting_words;

/// The value of a setting that takes one of a few words (`choices`), or an
/// error listing them: `'syncc' is not a value of flush_mode (one of:
/// async, sync)`.
pub fn choice<T: Copy>(value: &str, what: &str, choices: &[(&str, T)]) -> Result<T, String> {
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, v)) => Ok(*v),
        None => Err(format!(
            "'{value}' is not a value of {what} (one of: {})",
            choices
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
