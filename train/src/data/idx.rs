//! IDX files, the format MNIST and Fashion-MNIST ship in (optionally gzip-compressed): a magic
//! number giving the element type and rank, big-endian dimensions, then the data.

use std::io::Read;
use std::path::Path;

use super::{Dataset, TargetData, read_file};
use crate::error::{Result, TrainError};

struct IdxArray {
    dims: Vec<usize>,
    /// Values as f32, and whether they were unsigned bytes (pixels to scale by 1/255).
    values: Vec<f32>,
    bytes: bool,
}

fn parse(raw: &[u8], field: &str, path: &Path) -> Result<IdxArray> {
    let bad = |reason: String| TrainError::dataset(field, format!("{}: {reason}", path.display()));
    if raw.len() < 4 || raw[0] != 0 || raw[1] != 0 {
        return Err(bad("not an IDX file (bad magic number)".into()));
    }
    let (kind, rank) = (raw[2], raw[3] as usize);
    if rank == 0 || rank > 4 {
        return Err(bad(format!("unsupported rank {rank}")));
    }
    let header = 4 + 4 * rank;
    if raw.len() < header {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes([raw[4 + 4 * i], raw[5 + 4 * i], raw[6 + 4 * i], raw[7 + 4 * i]]) as usize)
        .collect();
    let count =
        dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad("dimensions overflow".into()))?;
    let width = match kind {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        other => return Err(bad(format!("unknown element type 0x{other:02x}"))),
    };
    let body = &raw[header..];
    if body.len() != count * width {
        return Err(bad(format!(
            "expected {} data bytes for dimensions {dims:?}, found {}",
            count * width,
            body.len()
        )));
    }
    let values: Vec<f32> = match kind {
        0x08 => body.iter().map(|&b| f32::from(b)).collect(),
        0x09 => body.iter().map(|&b| f32::from(b as i8)).collect(),
        0x0B => body.chunks_exact(2).map(|c| f32::from(i16::from_be_bytes([c[0], c[1]]))).collect(),
        0x0C => body.chunks_exact(4).map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
        0x0D => body.chunks_exact(4).map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect(),
        _ => body.chunks_exact(8).map(|c| f64::from_be_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
    };
    Ok(IdxArray { dims, values, bytes: kind == 0x08 })
}

fn read(path: &Path, field: &str) -> Result<IdxArray> {
    let raw = read_file(path, field)?;
    let raw = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| TrainError::dataset(field, format!("{}: bad gzip data: {e}", path.display())))?;
        out
    } else {
        raw
    };
    parse(&raw, field, path)
}

/// Samples of an images file without their labels.
pub struct Images {
    pub x: Vec<f32>,
    pub rows: usize,
    pub features: usize,
    pub image: Option<[usize; 3]>,
}

/// Loads an images file (n × h × w, or n × c × h × w; pixels of unsigned bytes scaled to [0, 1]).
pub fn load_images(images: &Path, field: &str) -> Result<Images> {
    let img = read(images, field)?;
    let rows = img.dims[0];
    let image = match img.dims.as_slice() {
        [_, h, w] => Some([1, *h, *w]),
        [_, c, h, w] => Some([*c, *h, *w]),
        _ => None,
    };
    let features = img.dims[1..].iter().product::<usize>().max(1);
    let x = if img.bytes { img.values.iter().map(|v| v / 255.0).collect() } else { img.values };
    Ok(Images { x, rows, features, image })
}

/// Loads an images file and its labels file (n).
pub fn load(images: &Path, labels: &Path, fields: (&str, &str)) -> Result<Dataset> {
    let Images { x, rows, features, image } = load_images(images, fields.0)?;
    let lab = read(labels, fields.1)?;
    if lab.dims.len() != 1 || lab.dims[0] != rows {
        return Err(TrainError::dataset(
            fields.1,
            format!("{} labels for {rows} images", lab.dims.iter().product::<usize>()),
        ));
    }
    let mut labels_u32 = Vec::with_capacity(rows);
    for (i, &v) in lab.values.iter().enumerate() {
        if v < 0.0 || v.fract() != 0.0 || v > 1e6 {
            return Err(TrainError::dataset(fields.1, format!("label {i} is {v}, not a class index")));
        }
        labels_u32.push(v as u32);
    }
    let classes = labels_u32.iter().max().map_or(0, |m| m + 1) as usize;
    Ok(Dataset {
        x,
        targets: TargetData::Classes { labels: labels_u32, classes: classes.max(2) },
        rows,
        features,
        image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(kind: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, kind, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_images_and_labels_plain_and_gzipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = idx_bytes(0x08, &[3, 2, 2], &[0, 255, 51, 102, 0, 0, 0, 0, 255, 255, 255, 255]);
        let labels = idx_bytes(0x08, &[3], &[2, 0, 1]);
        std::fs::write(dir.path().join("img"), &images).expect("write");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &labels).expect("gzip");
        std::fs::write(dir.path().join("lab.gz"), gz.finish().expect("gzip")).expect("write");
        let d = load(&dir.path().join("img"), &dir.path().join("lab.gz"), ("i", "l")).expect("load");
        assert_eq!((d.rows, d.features, d.image), (3, 4, Some([1, 2, 2])));
        assert_eq!(&d.x[..4], &[0.0, 1.0, 0.2, 0.4]);
        assert_eq!(d.targets, TargetData::Classes { labels: vec![2, 0, 1], classes: 3 });
    }

    #[test]
    fn rejects_truncated_and_mismatched_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("img"), idx_bytes(0x08, &[3, 2, 2], &[0; 5])).expect("write");
        std::fs::write(dir.path().join("lab"), idx_bytes(0x08, &[2], &[0, 1])).expect("write");
        let err = load(&dir.path().join("img"), &dir.path().join("lab"), ("dataset.images", "dataset.labels"))
            .expect_err("truncated");
        assert!(err.to_string().starts_with("dataset.images: "), "{err}");
        let err = load(&dir.path().join("missing"), &dir.path().join("lab"), ("dataset.images", "dataset.labels"))
            .expect_err("missing");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
