//! Arrow IPC stream bytes in and out (the one copy across the boundary).

use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use quiver_engine::Error as EngineError;

/// Decodes caller-given IPC stream bytes, which may be damaged: arrow-ipc verifies the
/// flatbuffer metadata, but a body whose buffers do not fit it can make it panic while slicing
/// (caught here, so a damaged stream is refused like any other), and values it does not check
/// (offsets, UTF-8, child lengths) are validated in full before the engine sees them.
pub(crate) fn decode_ipc(bytes: &[u8]) -> quiver_engine::Result<(SchemaRef, Vec<RecordBatch>)> {
    let damaged = |e: &dyn std::fmt::Display| {
        EngineError::InvalidArgument(format!("Arrow IPC stream is damaged: {e}"))
    };
    let read = || -> quiver_engine::Result<(SchemaRef, Vec<RecordBatch>)> {
        let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| {
            EngineError::InvalidArgument(format!("data is not an Arrow IPC stream: {e}"))
        })?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| damaged(&e))?;
        for column in batches.iter().flat_map(|b| b.columns()) {
            column.to_data().validate_full().map_err(|e| damaged(&e))?;
        }
        Ok((schema, batches))
    };
    let (schema, batches) = std::panic::catch_unwind(AssertUnwindSafe(read))
        .unwrap_or_else(|_| Err(damaged(&"its buffers do not match its metadata")))?;
    decode_dictionaries(schema, batches)
}

/// Dictionary-encoded columns (apache-arrow encodes JS strings that way) are stored as their
/// plain value type.
pub(crate) fn decode_dictionaries(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> quiver_engine::Result<(SchemaRef, Vec<RecordBatch>)> {
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Dictionary(_, _)))
    {
        return Ok((schema, batches));
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => {
                f.as_ref().clone().with_data_type(value.as_ref().clone())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    let plain = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batches = batches
        .into_iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .map(|c| match c.as_any_dictionary_opt() {
                    Some(dict) => Ok(arrow_select::take::take(
                        dict.values().as_ref(),
                        dict.keys(),
                        None,
                    )?),
                    None => Ok(c.clone()),
                })
                .collect::<quiver_engine::Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(plain.clone(), columns)?)
        })
        .collect::<quiver_engine::Result<Vec<_>>>()?;
    Ok((plain, batches))
}

pub(crate) fn encode_ipc(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> quiver_engine::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(
        batches
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum::<usize>()
            + 1024,
    );
    let mut writer = StreamWriter::try_new(&mut out, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_ipc_bytes_are_refused_never_a_panic() {
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("a", arrow_schema::DataType::Int32, true),
            arrow_schema::Field::new("b", arrow_schema::DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow_array::Int32Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(arrow_array::StringArray::from(vec!["x", "yy", "zzz"])),
            ],
        )
        .expect("batch");
        let bytes = encode_ipc(&schema, &[batch]).expect("encode");
        assert!(decode_ipc(&bytes).is_ok());
        // Hundreds of the damaged streams make arrow-ipc panic (caught): keep the log readable.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                match decode_ipc(&damaged) {
                    Ok(_) | Err(EngineError::InvalidArgument(_)) => {}
                    Err(other) => panic!("byte {at} bit {bit}: {other}"),
                }
            }
            match decode_ipc(&bytes[..at]) {
                Ok(_) | Err(EngineError::InvalidArgument(_)) => {}
                Err(other) => panic!("truncated at {at}: {other}"),
            }
        }
        std::panic::set_hook(hook);
    }
}
