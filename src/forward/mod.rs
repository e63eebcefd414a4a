//! `/forward`: the dialplan's "who is this caller's manager?" server and its resolvers. (Being built.)
