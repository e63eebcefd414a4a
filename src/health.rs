//! Shared liveness flags (ARI connected, storage writable) read by `/healthz` and `check`. (Being built.)
