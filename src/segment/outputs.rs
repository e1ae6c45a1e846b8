//! Everything made from the finished mask rows, in one pass: the pyramidal TIFF, the
//! nuclei (connected components, split by the watershed and measured), their GeoJSON
//! outlines and table, and the low-resolution coverage map the QC overlay is drawn from.

use super::components::{
    exterior_ring, ComponentStats, ComponentTracker, RowValues, TrackerOptions,
};
use super::geojson::{GeoJsonWriter, NucleusProperties};
use super::measurements::{measure, Measurements, Scale};
use super::nuclei::{Nucleus, SplitStats, Splitter};
use super::nuclei_table::NucleiTable;
use super::overlay::Coverage;
use super::{ScaleUsed, SegmentError, SegmentOptions};
use crate::atomic_file::IncompleteSet;
use crate::slide::geometry::Geometry;
use crate::slide::geometry::MppSource;
use crate::tiff::PyramidWriter;
use crate::watershed::SeparationParams;
use std::path::PathBuf;

/// Biggest component (px) whose pixels are kept for outlines, splitting and measurements:
/// far above any nucleus, so only a runaway mask loses them, and memory stays bounded.
const MAX_KEPT_AREA: u64 = 1 << 20;

/// How finished components become the nuclei reported.
#[derive(Debug, Clone, Copy)]
pub struct NucleiSetup {
    /// Split touching nuclei with these parameters; `None`: components are nuclei.
    pub separation: Option<SeparationParams>,
    /// Measure every nucleus (per-pixel values come with the rows).
    pub measure: bool,
    /// Objects smaller than this (px) are not nuclei.
    pub min_area: u64,
    pub scale: Scale,
}

impl NucleiSetup {
    /// The nuclei `options` ask for on a slide segmented at `geometry` and `scale`.
    pub fn new(options: &SegmentOptions, geometry: &Geometry, scale: &ScaleUsed) -> Self {
        // µm per output pixel. An assumed scale (the slide records none) is good enough to
        // size the watershed, whose defaults are in µm, but not to report µm.
        let microns = scale.slide_mpp * geometry.output_downsample;
        let known = (scale.slide_mpp_source != MppSource::Assumed).then_some(microns);
        Self {
            separation: options.separate.then(|| SeparationParams::at_mpp(microns)),
            measure: options.measure,
            min_area: scale.min_nucleus_area_px,
            scale: Scale::new(known, geometry.output_downsample),
        }
    }
}

pub struct MaskOutputs {
    writer: PyramidWriter,
    tracker: ComponentTracker,
    nuclei: NucleusReport,
    coverage: Coverage,
}

/// Where nuclei go once their component is finished.
struct NucleusReport {
    splitter: Splitter,
    measure: bool,
    scale: Scale,
    geojson: Option<GeoJsonWriter>,
    table: Option<NucleiTable>,
}

/// What the outputs add up to once the last row is in.
pub struct FinishedOutputs {
    pub mask: PathBuf,
    pub geojson: Option<PathBuf>,
    pub table: Option<PathBuf>,
    /// The files above, removed unless the slide's summary is written too.
    pub written: IncompleteSet,
    pub components: ComponentStats,
    pub nuclei: SplitStats,
    pub coverage: Coverage,
}

impl MaskOutputs {
    pub fn new(
        writer: PyramidWriter,
        geometry: &Geometry,
        geojson: Option<GeoJsonWriter>,
        table: Option<NucleiTable>,
        setup: NucleiSetup,
        coverage: Coverage,
    ) -> Self {
        let width = geometry.output_width as usize;
        let options = TrackerOptions {
            pixels: geojson.is_some() || setup.separation.is_some() || setup.measure,
            values: setup.measure,
            max_kept_area: MAX_KEPT_AREA,
            min_area: setup.min_area,
        };
        Self {
            writer,
            tracker: ComponentTracker::new(width as u32, options),
            nuclei: NucleusReport {
                splitter: Splitter::new(setup.separation, setup.min_area),
                measure: setup.measure,
                scale: setup.scale,
                geojson,
                table,
            },
            coverage,
        }
    }

    /// Takes whole output rows (0 or 255), top to bottom, with their pixels' values when
    /// nuclei are measured.
    pub fn push_rows(
        &mut self,
        rows: &[u8],
        values: Option<RowValues<'_>>,
    ) -> Result<(), SegmentError> {
        self.tracker.push_rows(rows, values);
        for component in self.tracker.drain_finished() {
            for nucleus in self.nuclei.splitter.split(component) {
                self.nuclei.report(nucleus)?;
            }
        }
        self.coverage.push_rows(rows);
        Ok(self.writer.write_rows(rows)?)
    }

    /// Closes every file; only now do they appear under their final names.
    pub fn finish(self) -> Result<FinishedOutputs, SegmentError> {
        let (components, last) = self.tracker.finish();
        let mut nuclei = self.nuclei;
        for component in last {
            for nucleus in nuclei.splitter.split(component) {
                nuclei.report(nucleus)?;
            }
        }
        // Each file is renamed into place as it is closed; should a later one fail, the
        // set removes those already in place.
        let mut written = IncompleteSet::default();
        let mask = self.writer.finish()?;
        written.add(&mask);
        let geojson = nuclei.geojson.map(GeoJsonWriter::finish).transpose()?;
        geojson.iter().for_each(|path| written.add(path));
        let table = nuclei.table.map(NucleiTable::finish).transpose()?;
        table.iter().for_each(|path| written.add(path));
        Ok(FinishedOutputs {
            mask,
            geojson,
            table,
            written,
            components,
            nuclei: nuclei.splitter.stats().clone(),
            coverage: self.coverage,
        })
    }
}

impl NucleusReport {
    /// Outlines and measures `nucleus` as the outputs need, and writes it to them.
    fn report(&mut self, nucleus: Nucleus) -> Result<(), SegmentError> {
        let shape = nucleus
            .pixels
            .as_ref()
            .filter(|_| self.measure)
            .map(measure);
        let measurements =
            Measurements::new(nucleus.area, nucleus.centroid, shape.as_ref(), &self.scale);
        if let (Some(geojson), Some(pixels)) = (&mut self.geojson, &nucleus.pixels) {
            let to_level0 = self.scale.level0_per_pixel;
            let ring: Vec<(f64, f64)> = exterior_ring(&pixels.runs)
                .iter()
                .map(|&(x, y)| (f64::from(x) * to_level0, y as f64 * to_level0))
                .collect();
            let properties = NucleusProperties {
                measurements: &measurements,
                unit: self.scale.unit,
            };
            geojson.write_polygon(&ring, &properties)?;
        }
        if let Some(table) = &mut self.table {
            table.push(&measurements)?;
        }
        Ok(())
    }
}
