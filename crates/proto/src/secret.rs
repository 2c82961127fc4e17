//! [`SecretString`]: a value in flight, wiped when dropped and never printed.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret value: UTF-8 text whose buffer is zeroized on drop and whose `Debug` prints `[redacted]`.
///
/// Read it with [`SecretString::expose_secret`]; every such call is a place a secret leaves this type.
#[derive(Clone, Default, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `value`, taking ownership of its buffer so no unzeroized copy is left behind.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length in bytes of the UTF-8 text.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is the empty string (a valid value, as in Expo).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self::new(value.to_owned())
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = SecretString::from("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose_secret(), "hunter2");
    }
}
