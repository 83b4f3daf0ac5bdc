//! Shared helpers for the cgs examples.
