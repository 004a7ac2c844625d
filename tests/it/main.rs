//! Integration tests: one binary, one module per area.

mod interop;
mod python;
mod time_travel;
