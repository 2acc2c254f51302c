//! Checks and conversions of plain JS arguments (numbers, bigints, modes).

use napi::bindgen_prelude::BigInt;
use quiver_engine::CreateMode;

use crate::errors::*;

pub(crate) fn u64_of(value: &BigInt, what: &str) -> napi::Result<u64> {
    let (signed, v, lossless) = value.get_u64();
    if signed || !lossless {
        return Err(coded(
            "InvalidArgument",
            format!("{what} must be a non-negative 64-bit integer"),
        ));
    }
    Ok(v)
}

pub(crate) fn version_arg(v: f64) -> napi::Result<u64> {
    if v.fract() != 0.0 || !(1.0..=9.007_199_254_740_991e15).contains(&v) {
        return Err(coded(
            "InvalidArgument",
            format!("version must be a positive integer, got {v}"),
        ));
    }
    Ok(v as u64)
}

pub(crate) fn create_mode(mode: &str) -> napi::Result<CreateMode> {
    match mode {
        "create" => Ok(CreateMode::Create),
        "overwrite" => Ok(CreateMode::Overwrite),
        "exist_ok" => Ok(CreateMode::ExistOk),
        other => Err(coded(
            "InvalidArgument",
            format!("mode must be 'create' or 'overwrite', got '{other}'"),
        )),
    }
}
