//! Who may connect where, with what: each database's own roles and secrets.
//!
//! Applications never get pgmaint's superuser. Every database has a NOLOGIN
//! *owner* role that owns it and its objects, and two LOGIN roles that are
//! members of the owner (`ALTER ROLE login SET role = owner`, so what they
//! create belongs to the owner). Only one login is *active* at a time: its
//! name and password are in the database's URL. Rotating credentials gives
//! the other login a new password and makes it active; the previous one keeps
//! working until every attached app has restarted with the new URL, or until
//! the grace period ends, and is then retired (NOLOGIN, no password).
//!
//! A follower's roles live on its leader's cluster (a follower is a physical
//! copy, so they replicate to it); its owner role reads everything
//! (`pg_read_all_data`) instead of owning the database.
//!
//! Passwords are random (192 bits), kept in the state store, and never reach
//! SQL, PgBouncer's files or a log: servers and PgBouncer get the SCRAM-SHA-256
//! verifier pgmaint computes from them.

use rand::distributions::Alphanumeric;
use rand::Rng;

/// Characters in a password: 32 alphanumerics carry about 190 bits, and need
/// no escaping in a URL, a conninfo string or an env file.
const PASSWORD_LENGTH: usize = 32;

/// A new random password.
pub fn new_password() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(PASSWORD_LENGTH).map(char::from).collect()
}

/// The SCRAM-SHA-256 verifier of `password` (`SCRAM-SHA-256$4096:salt$stored:server`),
/// with a fresh salt: what `CREATE ROLE ... PASSWORD` and PgBouncer's auth file take.
pub fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// The roles of one database, named after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRoles {
    /// NOLOGIN: owns the database and its objects (or, for a follower, reads them).
    pub owner: String,
    /// The two LOGIN roles used in turn.
    pub logins: [String; 2],
}

impl DatabaseRoles {
    /// `NAME_owner`, `NAME_1`, `NAME_2`: distinct across databases, since
    /// the suffixes end in different characters.
    pub fn of(database: &str) -> DatabaseRoles {
        DatabaseRoles { owner: format!("{database}_owner"), logins: [format!("{database}_1"), format!("{database}_2")] }
    }

    /// The login that is not `login`: the next one to use.
    pub fn other_login(&self, login: &str) -> &str {
        if login == self.logins[0] {
            &self.logins[1]
        } else {
            &self.logins[0]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_plain() {
        let (a, b) = (new_password(), new_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), PASSWORD_LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn verifiers_hide_the_password() {
        let verifier = scram_verifier("hunter2");
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
        assert!(!verifier.contains("hunter2"));
        assert_ne!(verifier, scram_verifier("hunter2"), "a fresh salt each time");
    }

    #[test]
    fn roles_alternate() {
        let roles = DatabaseRoles::of("orders");
        assert_eq!(roles.owner, "orders_owner");
        assert_eq!(roles.other_login("orders_1"), "orders_2");
        assert_eq!(roles.other_login("orders_2"), "orders_1");
    }
}
