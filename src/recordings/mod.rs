//! Call recordings to the helpdesk: MixMonitor file pickup and recording through ARI snoop. (Being built.)
