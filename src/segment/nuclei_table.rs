//! `MASK.nuclei.csv.gz`: one row per nucleus, streamed as nuclei are finished (memory does
//! not grow with their number), gzip-compressed (a slide has millions of rows), written as
//! `.partial` and renamed into place only when complete.
//!
//! Columns: `id` (1, 2, … in the order nuclei are finished: top to bottom by their last
//! row, the same however the slide was tiled), `centroid_x`, `centroid_y` (level-0
//! pixels, as the GeoJSON), `area_U2`, `perimeter_U`, `equivalent_diameter_U`,
//! `eccentricity`, `solidity`, `hematoxylin_od_mean`, `score_mean`, where `U` is `um`
//! when the slide records its microns per pixel and `px` (level-0 pixels) when it does
//! not. A field is empty when it was not measured (see [`Measurements`]).

use super::measurements::{LengthUnit, Measurements};
use super::SegmentError;
use crate::atomic_file::{Durability, PartialFile};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Streaming writer of the nuclei table; dropping it unfinished removes the partial file.
pub struct NucleiTable {
    /// `None` only once [`NucleiTable::finish`] has taken it; declared before `file` so it
    /// is closed before the partial file is removed.
    out: Option<csv::Writer<GzEncoder<BufWriter<File>>>>,
    file: PartialFile,
    rows: u64,
}

impl NucleiTable {
    /// Starts `<path>.partial` with the header for sizes in `unit`.
    pub fn create(path: &Path, unit: LengthUnit) -> Result<Self, SegmentError> {
        let file = PartialFile::new(path).ok_or_else(|| SegmentError::Write {
            path: path.to_owned(),
            message: "the path has no file name".to_owned(),
        })?;
        let handle = File::create(file.partial()).map_err(|e| write_error(&file, e))?;
        // Level 1: the table is written on the sink's thread, and numbers in text
        // compress to about a third at any level.
        let gz = GzEncoder::new(
            BufWriter::with_capacity(1 << 20, handle),
            Compression::new(1),
        );
        let mut table = Self {
            out: Some(csv::Writer::from_writer(gz)),
            file,
            rows: 0,
        };
        let u = unit.ascii();
        table.write([
            "id".to_owned(),
            "centroid_x".to_owned(),
            "centroid_y".to_owned(),
            format!("area_{u}2"),
            format!("perimeter_{u}"),
            format!("equivalent_diameter_{u}"),
            "eccentricity".to_owned(),
            "solidity".to_owned(),
            "hematoxylin_od_mean".to_owned(),
            "score_mean".to_owned(),
        ])?;
        Ok(table)
    }

    /// Appends the next nucleus.
    pub fn push(&mut self, nucleus: &Measurements) -> Result<(), SegmentError> {
        self.rows += 1;
        let fixed = |value: Option<f64>, digits: usize| {
            value.map_or_else(String::new, |v| format!("{v:.digits$}"))
        };
        let row = [
            self.rows.to_string(),
            format!("{:.2}", nucleus.centroid.0),
            format!("{:.2}", nucleus.centroid.1),
            format!("{:.4}", nucleus.area),
            fixed(nucleus.perimeter, 4),
            format!("{:.4}", nucleus.equivalent_diameter),
            fixed(nucleus.eccentricity, 4),
            fixed(nucleus.solidity, 4),
            fixed(nucleus.hematoxylin_mean, 4),
            fixed(nucleus.score_mean, 4),
        ];
        self.write(row)
    }

    fn write(&mut self, record: [String; 10]) -> Result<(), SegmentError> {
        let out = self.out.as_mut().expect("open until finish");
        out.write_record(&record)
            .map_err(|e| write_error(&self.file, e.into()))
    }

    /// Ends the gzip stream and moves the table to its final name, which it returns.
    pub fn finish(mut self) -> Result<PathBuf, SegmentError> {
        let out = self.out.take().expect("open until finish");
        let closed = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|gz| gz.finish())
            .and_then(|mut buffered| buffered.flush().map(|()| buffered));
        drop(closed.map_err(|e| write_error(&self.file, e))?);
        let path = self.file.path().to_owned();
        self.file
            .commit(Durability::RenameOnly)
            .map_err(|e| SegmentError::Write {
                path,
                message: e.into_io().to_string(),
            })
    }
}

fn write_error(file: &PartialFile, error: std::io::Error) -> SegmentError {
    SegmentError::Write {
        path: file.partial().to_owned(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_gz(path: &Path) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn rows_read_back_and_appear_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.nuclei.csv.gz");
        let mut table = NucleiTable::create(&path, LengthUnit::Micron).unwrap();
        table
            .push(&Measurements {
                centroid: (10.25, 20.5),
                area: 31.25,
                equivalent_diameter: 6.3078,
                perimeter: Some(20.1),
                eccentricity: Some(0.5),
                solidity: Some(0.97),
                hematoxylin_mean: Some(0.42),
                score_mean: Some(0.9),
            })
            .unwrap();
        table
            .push(&Measurements {
                centroid: (1.0, 2.0),
                area: 5e6,
                equivalent_diameter: 2523.1,
                perimeter: None,
                eccentricity: None,
                solidity: None,
                hematoxylin_mean: None,
                score_mean: None,
            })
            .unwrap();
        assert!(!path.exists(), "not under the final name before finish");
        assert_eq!(table.finish().unwrap(), path);
        let text = read_gz(&path);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header[3..6],
            ["area_um2", "perimeter_um", "equivalent_diameter_um"]
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][0], "1");
        assert_eq!(rows[0][3].parse::<f64>().unwrap(), 31.25);
        assert_eq!(rows[0][8].parse::<f64>().unwrap(), 0.42);
        assert_eq!(&rows[1][0], "2");
        assert_eq!(&rows[1][4], "", "not measured: empty");
        assert!(!crate::atomic_file::partial_path(&path).unwrap().exists());
    }

    #[test]
    fn pixel_units_are_named_and_an_unfinished_table_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.nuclei.csv.gz");
        let table = NucleiTable::create(&path, LengthUnit::Level0Pixel).unwrap();
        drop(table);
        assert!(!path.exists());
        assert!(!crate::atomic_file::partial_path(&path).unwrap().exists());
        let table = NucleiTable::create(&path, LengthUnit::Level0Pixel).unwrap();
        table.finish().unwrap();
        assert!(read_gz(&path).starts_with("id,centroid_x,centroid_y,area_px2,perimeter_px,"));
        let missing = dir.path().join("no/such/dir/t.csv.gz");
        let error = NucleiTable::create(&missing, LengthUnit::Micron)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("t.csv.gz.partial"), "{error}");
    }
}
