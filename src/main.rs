mod config;
mod error;
mod model;

fn main() {}
