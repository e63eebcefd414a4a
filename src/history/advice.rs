//! The fix for each usual way a shared history fails to connect (a wrong password, no
//! pg_hba.conf line, TLS required or refused, a certificate not trusted, nothing listening),
//! said in the admin's terms next to PostgreSQL's own message.

use tokio_postgres::error::SqlState;

use super::shared::SharedError;
use crate::postgres::PgTarget;

/// What to do about `error` on `target`, when deskhook knows.
pub(crate) fn advice(error: &SharedError, target: &PgTarget) -> Option<String> {
    let (user, database, host) = (target.user(), target.database(), target.host_port());
    let roots = match &target.root_cert {
        Some(path) => format!("sslrootcert ({})", path.display()),
        None => "the system trust store".to_string(),
    };
    let error = match error {
        SharedError::Postgres(error) => error,
        SharedError::TimedOut(_) => {
            return Some(format!(
                "{host} did not answer in time: is it overloaded, or does a firewall drop the packets?"
            ))
        }
        SharedError::Pool(_) | SharedError::Local(_) | SharedError::SchemaNewer { .. } => return None,
    };
    if let Some(db) = error.as_db_error() {
        let message = db.message();
        let code = db.code();
        return Some(if *code == SqlState::INVALID_PASSWORD {
            format!("the password of role {user:?} is wrong: fix it in storage.history (on the server: ALTER ROLE {user} PASSWORD '…')")
        } else if message.contains("pg_hba.conf") && message.contains("no encryption") {
            "the server takes this PBX only over TLS (a hostssl line): add ?sslmode=verify-full&sslrootcert=/path/ca.crt \
             (or sslmode=require) to storage.history"
                .to_string()
        } else if message.contains("pg_hba.conf") {
            format!(
                "the server's pg_hba.conf has no line for this PBX: add `hostssl {database} {user} <this PBX's address>/32 \
                 scram-sha-256` and reload PostgreSQL (SELECT pg_reload_conf())"
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            format!("database {database:?} does not exist: create it (CREATE DATABASE {database} OWNER {user})")
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION && message.contains("role") {
            format!("role {user:?} does not exist: create it (CREATE ROLE {user} LOGIN PASSWORD '…')")
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            format!(
                "role {user:?} may not create deskhook's tables: GRANT CREATE ON SCHEMA public TO {user} \
                 (or make it the database's owner)"
            )
        } else if *code == SqlState::UNDEFINED_TABLE {
            "deskhook's tables are not there yet: `deskhook run` creates them when it first connects".to_string()
        } else if *code == SqlState::QUERY_CANCELED {
            "the statement ran past its timeout: the server is overloaded, or storage.history_timeout is too short"
                .to_string()
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            "the server has no connection left: raise max_connections, or put PgBouncer in front".to_string()
        } else {
            return None;
        });
    }
    let chain = crate::failure::error_chain(error);
    let said = |needle: &str| chain.contains(needle);
    Some(if said("Connection refused") {
        format!(
            "nothing listens on {host}: is PostgreSQL running, and do listen_addresses and port cover this address?"
        )
    } else if said("server does not support TLS") || said("server does not support SSL") {
        "the server does not speak TLS (ssl = off in postgresql.conf): turn ssl on, or use sslmode=prefer/disable \
         on a network you trust"
            .to_string()
    } else if said("not valid for name") || said("NotValidForName") {
        format!(
            "the server's certificate does not name {}: connect by a name it carries, or use sslmode=verify-ca",
            host.rsplit_once(':').map_or(host.as_str(), |(name, _)| name)
        )
    } else if said("UnknownIssuer") || said("invalid peer certificate") {
        format!("the server's certificate is not signed by a CA in {roots}: point sslrootcert at the CA that signed it")
    } else if said("password missing") {
        "the server asks for a password: put it in the URL (postgres://user:password@host/database)".to_string()
    } else if said("timed out") || said("timeout") {
        format!("{host} did not answer: is the host right, or does a firewall drop the packets?")
    } else if said("failed to lookup address") || said("Name or service not known") {
        format!("the host name of {host} does not resolve: check it, or use the server's address")
    } else {
        return None;
    })
}
