//! `cgs-probe`: print what this host offers confidential guests.
fn main() {}
