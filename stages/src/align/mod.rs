//! Facial landmark alignment with dlib's ensemble-of-regression-trees shape predictor
//! (Kazemi & Sullivan 2014), reimplemented in pure Rust.
//!
//! * [`dlib_format`] reads dlib's binary serialization (`serialize.h`).
//! * [`ShapePredictor`] loads any serialized `dlib::shape_predictor` (68-point, 81-point,
//!   5-point, …) and reproduces `shape_predictor::operator()` step for step, so that on the
//!   same grayscale pixels and box it returns dlib's landmarks.
//! * [`GrayImage`] is the borrowed 8-bit input (width/height/stride, so it wraps an OpenCV
//!   `Mat` row buffer or a plain `Vec<u8>`); [`rgb_to_gray`] is dlib's RGB→gray rule.
//! * [`DlibRect`] is dlib's inclusive integer `rectangle`; [`BoxAdapter`] maps boxes from
//!   another face detector onto the boxes dlib's model was trained with.

mod box_adapter;
pub mod dlib_format;
mod image;
mod leaf_table;
mod rect;
mod shape_predictor;
mod similarity;

pub use box_adapter::BoxAdapter;
pub use dlib_format::FormatError;
pub use image::{rgb_to_gray, GrayImage, ImageError};
pub use rect::DlibRect;
pub use shape_predictor::{LoadError, PredictScratch, ShapePredictor};
