//! The `lab` binary and library from outside, in one test binary: its
//! errors on bad input (`cli`) and `lab load image` against the real
//! engine (`load_image`).

mod cli;
mod load_image;
