//! Manifest builders for the public corpora (spec §8) and for plain folders with a labels CSV.
