//! Everything made from the finished mask rows, in one pass: the pyramidal TIFF, the
//! nuclei count (connected components), the GeoJSON contours and the low-resolution
//! coverage map the QC overlay is drawn from.

use super::components::{Component, ComponentStats, ComponentTracker, TrackerOptions};
use super::geojson::{GeoJsonWriter, NucleusProperties};
use super::geometry::Geometry;
use super::overlay::Coverage;
use super::SegmentError;
use crate::tiff::PyramidWriter;
use std::path::PathBuf;

/// Biggest component (px) whose outline is kept for GeoJSON: far above any nucleus, so
/// only a runaway mask loses outlines, and memory stays bounded.
const MAX_POLYGON_AREA: u64 = 1 << 20;

pub struct MaskOutputs {
    writer: PyramidWriter,
    width: usize,
    /// Rows waiting for a full TIFF tile row.
    pending: Vec<u8>,
    tracker: ComponentTracker,
    geojson: Option<GeoJsonWriter>,
    /// Level-0 pixels per output pixel, for GeoJSON coordinates.
    level0_per_output: f64,
    coverage: Coverage,
}

/// What the outputs add up to once the last row is in.
pub struct FinishedOutputs {
    pub mask: PathBuf,
    pub geojson: Option<PathBuf>,
    pub nuclei: ComponentStats,
    pub coverage: Coverage,
}

impl MaskOutputs {
    pub fn new(
        writer: PyramidWriter,
        geometry: &Geometry,
        geojson: Option<GeoJsonWriter>,
        min_nucleus_area: u64,
        coverage: Coverage,
    ) -> Self {
        let width = geometry.output_width as usize;
        let options = TrackerOptions {
            polygons: geojson.is_some(),
            max_polygon_area: MAX_POLYGON_AREA,
            min_area: min_nucleus_area,
        };
        Self {
            writer,
            width,
            pending: Vec::new(),
            tracker: ComponentTracker::new(width as u32, options),
            geojson,
            level0_per_output: geometry.output_downsample,
            coverage,
        }
    }

    /// Takes whole output rows (0 or 255), top to bottom.
    pub fn push_rows(&mut self, rows: &[u8]) -> Result<(), SegmentError> {
        self.tracker.push_rows(rows);
        self.write_polygons()?;
        self.coverage.push_rows(rows);
        let mut rest = rows;
        while !rest.is_empty() {
            let wanted = self.writer.rows_expected() as usize * self.width;
            let take = (wanted - self.pending.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            rest = later;
            if self.pending.is_empty() && take == wanted {
                // A whole tile row in one piece: no copy.
                self.writer.write_tile_row(now)?;
                continue;
            }
            self.pending.extend_from_slice(now);
            if self.pending.len() == wanted {
                self.writer.write_tile_row(&self.pending)?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn write_polygons(&mut self) -> Result<(), SegmentError> {
        if let Some(geojson) = &mut self.geojson {
            write_outlines(
                geojson,
                self.level0_per_output,
                self.tracker.drain_finished(),
            )?;
        }
        Ok(())
    }

    /// Closes every file; only now do they appear under their final names.
    pub fn finish(self) -> Result<FinishedOutputs, SegmentError> {
        let (nuclei, last) = self.tracker.finish();
        let mask = self.writer.finish()?;
        let geojson = match self.geojson {
            Some(mut geojson) => {
                write_outlines(&mut geojson, self.level0_per_output, last.into_iter())?;
                Some(geojson.finish()?)
            }
            None => None,
        };
        Ok(FinishedOutputs {
            mask,
            geojson,
            nuclei,
            coverage: self.coverage,
        })
    }
}

/// Writes the outlines of `nuclei`, scaled from output to level-0 pixels.
fn write_outlines(
    geojson: &mut GeoJsonWriter,
    level0_per_output: f64,
    nuclei: impl Iterator<Item = Component>,
) -> Result<(), SegmentError> {
    for nucleus in nuclei {
        let Some(polygon) = &nucleus.polygon else {
            continue;
        };
        let ring: Vec<(f64, f64)> = polygon
            .iter()
            .map(|&(x, y)| {
                (
                    f64::from(x) * level0_per_output,
                    y as f64 * level0_per_output,
                )
            })
            .collect();
        let properties = NucleusProperties {
            area_px: nucleus.area as f64 * level0_per_output * level0_per_output,
        };
        geojson.write_polygon(&ring, &properties)?;
    }
    Ok(())
}
