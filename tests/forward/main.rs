//! `/forward` end to end: deskhook's real server and resolvers against loopback fake CRMs,
//! real CSV files and a real SQLite history; plus the `deskhook lookup` binary.

mod cli;
mod crm;
mod server;
mod support;
