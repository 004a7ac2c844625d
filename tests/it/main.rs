//! Integration tests: one binary, one module per area.

mod asof_fuzz;
mod dbapi;
mod flight;
mod interop;
mod online;
mod python;
mod time_travel;
mod writes;
