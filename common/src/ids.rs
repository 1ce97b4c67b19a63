//! Id newtypes. Ids are short, random and prefixed by what they name (`job-k3x9p2qa`), so a pasted
//! id says what it is and ids never collide across coordinator databases.

use std::fmt;

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

fn random_suffix() -> String {
    let mut rng = rand::rng();
    (0..8).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                Self(format!("{}-{}", $prefix, random_suffix()))
            }

            /// Wraps an id received from elsewhere (a request, the database). Not checked: an
            /// unknown id is simply not found.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// Names a job.
    JobId,
    "job"
);
id_type!(
    /// Names a registered worker.
    WorkerId,
    "wrk"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_differ() {
        let a = JobId::generate();
        let b = JobId::generate();
        assert!(a.as_str().starts_with("job-"));
        assert_eq!(a.as_str().len(), 12);
        assert_ne!(a, b);
        assert!(WorkerId::generate().as_str().starts_with("wrk-"));
    }
}
