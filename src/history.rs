//! deskhook's own call history (who talked with which number), kept in SQLite. (Being built.)
