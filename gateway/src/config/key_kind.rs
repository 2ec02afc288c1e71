//! The shape of one configuration key ([`ConfigKey`]) and of its type
//! ([`KeyKind`]): what the table in `keys.rs` is made of.

use std::net::SocketAddr;
use std::path::Path;

use super::types::Config;

/// One configuration key.
pub struct ConfigKey {
    /// The TOML table it lives in, e.g. `server`.
    pub section: &'static str,
    /// Its name in that table, e.g. `listen`.
    pub name: &'static str,
    /// What it does, in one line.
    pub doc: &'static str,
    /// Masked in the start-up log.
    pub secret: bool,
    pub kind: KeyKind,
}

/// A key's type, with its default, its bounds, and the accessors of the
/// typed field it fills. `set` receives only values that passed the bounds,
/// so it may narrow (`u64` to `u32`) without checking again.
pub enum KeyKind {
    /// A non-negative integer in `min..=max`; also 0 when `zero_allowed`
    /// (0 meaning "off" or "the system's choice" for keys whose other
    /// values start higher).
    Unsigned {
        default: u64,
        min: u64,
        max: u64,
        zero_allowed: bool,
        set: fn(&mut Config, u64),
        get: fn(&Config) -> u64,
    },
    /// An integer in `min..=max`.
    Signed {
        default: i64,
        min: i64,
        max: i64,
        set: fn(&mut Config, i64),
        get: fn(&Config) -> i64,
    },
    /// Free text of 1 to `max_bytes` bytes, not blank, no whitespace at
    /// either end (HTTP strips it from header values, so such a token could
    /// never be presented).
    Text {
        default: &'static str,
        max_bytes: usize,
        /// A further check of the value's shape; the error says why.
        shape: fn(&str) -> Result<(), String>,
        set: fn(&mut Config, &str),
        get: fn(&Config) -> &str,
    },
    /// Like `Text`, or empty: the feature it enables is off.
    OptionalText {
        max_bytes: usize,
        /// A further check of a non-empty value's shape; the error says why.
        shape: fn(&str) -> Result<(), String>,
        set: fn(&mut Config, Option<&str>),
        get: fn(&Config) -> Option<&str>,
    },
    /// One of `choices`.
    Choice {
        default: &'static str,
        choices: &'static [&'static str],
        set: fn(&mut Config, &str),
        get: fn(&Config) -> &'static str,
    },
    /// `ip:port`.
    SocketAddr {
        default: &'static str,
        set: fn(&mut Config, SocketAddr),
        get: fn(&Config) -> SocketAddr,
    },
    /// A non-empty filesystem path.
    Dir {
        default: &'static str,
        set: fn(&mut Config, &Path),
        get: fn(&Config) -> &Path,
    },
    /// `true` or `false` (a TOML boolean; the words in a variable).
    Bool {
        default: bool,
        set: fn(&mut Config, bool),
        get: fn(&Config) -> bool,
    },
}

impl ConfigKey {
    /// `section.name`, as errors and the start-up log spell it.
    pub fn path(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// `FLASHSALE_SECTION_NAME`, the variable that overrides it.
    pub fn env_name(&self) -> String {
        format!("FLASHSALE_{}_{}", self.section, self.name).to_ascii_uppercase()
    }
}

/// A value that `set` narrows to `u32`; the key's range guarantees it fits.
pub(super) fn narrow(v: u64) -> u32 {
    u32::try_from(v).expect("the key's declared range fits u32")
}
