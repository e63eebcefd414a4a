//! Durable delivery to the helpdesk: the SQLite outbox, the Omnidesk/Deskie request formats,
//! and the sender that retries with backoff, in order per call. (Being built.)
