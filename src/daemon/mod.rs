//! `deskhook run`: the live daemon wiring ARI, the engine and the sinks together. (Being built.)
