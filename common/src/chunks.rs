//! Moving f32 tensors through gRPC in bounded pieces: little-endian bytes, at most
//! [`CHUNK_BYTES`] per message, so no message nears gRPC's 4 MiB default limit.

/// Bytes of tensor data per message.
pub const CHUNK_BYTES: usize = 1 << 20;

/// HTTP/2 flow-control windows for tensor streams: the 64 KiB default would throttle a stream of
/// 1 MiB chunks to a trickle.
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONNECTION_WINDOW: u32 = 32 << 20;

/// Little-endian bytes of f32 values (a plain copy on little-endian machines).
fn to_le(values: &[f32]) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice(values).to_vec()
    } else {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// The values as little-endian bytes, cut into chunks: (offset in elements, bytes).
pub fn split(values: &[f32]) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    let per = CHUNK_BYTES / 4;
    values.chunks(per).enumerate().map(move |(i, c)| (i * per, to_le(c)))
}

/// Writes a chunk's bytes into `dst` at element `offset`; errors name what does not fit.
pub fn place(dst: &mut [f32], offset: usize, bytes: &[u8]) -> Result<(), String> {
    if !bytes.len().is_multiple_of(4) {
        return Err(format!("chunk of {} bytes is not a whole number of f32 values", bytes.len()));
    }
    let n = bytes.len() / 4;
    let end = offset
        .checked_add(n)
        .filter(|&e| e <= dst.len())
        .ok_or_else(|| format!("chunk at offset {offset} with {n} values overruns a tensor of {} values", dst.len()))?;
    let dst = &mut dst[offset..end];
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice_mut::<f32, u8>(dst).copy_from_slice(bytes);
    } else {
        for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_tensors_larger_than_a_chunk() {
        let values: Vec<f32> = (0..(CHUNK_BYTES / 4) * 2 + 17).map(|i| i as f32 * 0.5).collect();
        let mut out = vec![0f32; values.len()];
        let mut pieces = 0;
        for (offset, bytes) in split(&values) {
            assert!(bytes.len() <= CHUNK_BYTES);
            place(&mut out, offset, &bytes).expect("fits");
            pieces += 1;
        }
        assert_eq!(pieces, 3);
        assert_eq!(out, values);
        assert!(place(&mut out, values.len() - 1, &[0u8; 8]).is_err());
        assert!(place(&mut out, 0, &[0u8; 3]).is_err());
    }
}
