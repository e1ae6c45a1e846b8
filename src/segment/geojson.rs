//! Streams nuclei polygons into a GeoJSON FeatureCollection that QuPath imports.
//!
//! A slide can hold millions of nuclei, so features are written one at a time, one
//! feature per line, instead of building the document in memory. The output is an
//! RFC 7946 FeatureCollection whose features follow QuPath's own GeoJSON export
//! (v0.4+): a feature-level `id` shaped like a UUID, `properties.objectType`
//! `"detection"` (lightweight objects, as QuPath's own nucleus detections; an
//! `"annotation"` per nucleus would make the hierarchy unusably slow),
//! `properties.classification` `{"name", "color": [r, g, b]}` and
//! `properties.measurements` as a name → number map, named as QuPath names its own
//! (`Area µm^2`, `Perimeter µm`, …; `px` for level-0 pixels when the slide records no
//! microns per pixel).
//!
//! Coordinates are level-0 pixel coordinates (y down), as QuPath expects for a
//! slide; the caller scales mask coordinates. Rings are written as given: the
//! tracker's rings have a positive shoelace area on the raw numbers, i.e. they are
//! counter-clockwise in RFC 7946's y-up reading.
//!
//! The file is written as `<path>.partial` and renamed into place only by
//! [`GeoJsonWriter::finish`] after an fsync, so a crashed or abandoned run never
//! leaves a truncated file under the final name.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::measurements::{LengthUnit, Measurements};
use crate::atomic_file::{CommitError, Durability, PartialFile};

/// Class name given to every feature.
pub const NUCLEUS_CLASS: &str = "Nucleus";
/// Display colour of the class in QuPath.
pub const NUCLEUS_COLOR: [u8; 3] = [0, 160, 255];

/// Errors of [`GeoJsonWriter`]; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum GeoJsonError {
    #[error("cannot create GeoJSON file {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write GeoJSON file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot move finished GeoJSON file {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("invalid polygon ring for GeoJSON file {path}: {reason}")]
    InvalidRing { path: PathBuf, reason: &'static str },
}

/// Measurements attached to one nucleus: those it has, sizes in `unit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NucleusProperties<'a> {
    pub measurements: &'a Measurements,
    pub unit: LengthUnit,
}

impl Serialize for NucleusProperties<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (m, u) = (self.measurements, self.unit.symbol());
        let entries = [
            (format!("Area {u}^2"), Some(m.area)),
            (format!("Perimeter {u}"), m.perimeter),
            (
                format!("Equivalent diameter {u}"),
                Some(m.equivalent_diameter),
            ),
            ("Eccentricity".to_owned(), m.eccentricity),
            ("Solidity".to_owned(), m.solidity),
            ("Hematoxylin OD mean".to_owned(), m.hematoxylin_mean),
            ("Score mean".to_owned(), m.score_mean),
        ];
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in entries {
            if let Some(value) = value {
                map.serialize_entry(&name, &value)?;
            }
        }
        map.end()
    }
}

/// Streaming writer of a nuclei FeatureCollection; see the module docs.
#[derive(Debug)]
pub struct GeoJsonWriter {
    /// `None` only once [`GeoJsonWriter::finish`] has taken it. Declared before `file` so
    /// that it is closed before an unfinished collection (not valid JSON) is removed.
    out: Option<BufWriter<File>>,
    file: PartialFile,
    features: u64,
    id_seed: u64,
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    geometry: Polygon<'a>,
    properties: Properties<'a>,
}

#[derive(Serialize)]
struct Polygon<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: [&'a [(f64, f64)]; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Properties<'a> {
    object_type: &'static str,
    classification: Classification,
    measurements: &'a NucleusProperties<'a>,
}

#[derive(Serialize)]
struct Classification {
    name: &'static str,
    color: [u8; 3],
}

impl GeoJsonWriter {
    /// Starts `<path>.partial` and writes the collection header.
    pub fn create(path: &Path) -> Result<Self, GeoJsonError> {
        let partial = PartialFile::new(path).ok_or_else(|| GeoJsonError::Create {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        })?;
        let file = File::create(partial.partial()).map_err(|source| GeoJsonError::Create {
            path: partial.partial().to_owned(),
            source,
        })?;
        // Ids only need to be unique within the images they are imported into; deriving
        // them from the file name keeps reruns byte-identical and different slides apart.
        let name = path.file_name().unwrap_or_default().as_encoded_bytes();
        let id_seed = name
            .iter()
            .fold(0x5eed_u64, |seed, &b| splitmix64(seed ^ u64::from(b)));
        let mut writer = Self {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            file: partial,
            features: 0,
            id_seed,
        };
        writer.write_bytes(b"{\"type\":\"FeatureCollection\",\"features\":[")?;
        Ok(writer)
    }

    /// Appends one nucleus. `ring` is a closed exterior ring (first == last, at least
    /// 4 positions) in level-0 pixel coordinates.
    pub fn write_polygon(
        &mut self,
        ring: &[(f64, f64)],
        properties: &NucleusProperties<'_>,
    ) -> Result<(), GeoJsonError> {
        let reason = if ring.len() < 4 {
            Some("a ring needs at least 4 positions")
        } else if ring.first() != ring.last() {
            Some("the ring is not closed")
        } else if ring.iter().any(|p| !p.0.is_finite() || !p.1.is_finite()) {
            Some("non-finite coordinate")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(GeoJsonError::InvalidRing {
                path: self.file.partial().to_owned(),
                reason,
            });
        }

        let id = self.next_id();
        let feature = Feature {
            kind: "Feature",
            id: &id,
            geometry: Polygon {
                kind: "Polygon",
                coordinates: [ring],
            },
            properties: Properties {
                object_type: "detection",
                classification: Classification {
                    name: NUCLEUS_CLASS,
                    color: NUCLEUS_COLOR,
                },
                measurements: properties,
            },
        };
        // One feature per line keeps the file greppable and line-streamable.
        let separator: &[u8] = if self.features == 0 { b"\n" } else { b",\n" };
        self.write_bytes(separator)?;
        let result = serde_json::to_writer(self.out(), &feature);
        result.map_err(|e| GeoJsonError::Write {
            path: self.file.partial().to_owned(),
            source: e.into(),
        })?;
        self.features += 1;
        Ok(())
    }

    /// Number of features written so far.
    pub fn features_written(&self) -> u64 {
        self.features
    }

    /// Closes the collection, fsyncs and atomically renames the file to its final
    /// path, which it returns.
    pub fn finish(mut self) -> Result<PathBuf, GeoJsonError> {
        self.write_bytes(b"\n]}\n")?;
        let Self { out, file, .. } = self;
        let partial = file.partial().to_owned();
        let path = file.path().to_owned();
        let out = out.expect("writer is open until finish");
        let closed = out.into_inner().map_err(|e| GeoJsonError::Write {
            path: partial.clone(),
            source: e.into_error(),
        })?;
        drop(closed);
        file.commit(Durability::Synced).map_err(|e| match e {
            CommitError::Sync(source) => GeoJsonError::Write {
                path: partial.clone(),
                source,
            },
            CommitError::Rename(source) => GeoJsonError::Rename {
                from: partial.clone(),
                to: path.clone(),
                source,
            },
            CommitError::SyncFolder(source) => GeoJsonError::Write { path, source },
        })
    }

    fn out(&mut self) -> &mut BufWriter<File> {
        self.out.as_mut().expect("writer is open until finish")
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), GeoJsonError> {
        let result = self.out().write_all(bytes);
        result.map_err(|source| GeoJsonError::Write {
            path: self.file.partial().to_owned(),
            source,
        })
    }

    /// A random-looking RFC 4122 version-4 UUID derived from the seed and a counter.
    fn next_id(&self) -> String {
        let hi = splitmix64(self.id_seed ^ self.features.wrapping_mul(2));
        let lo = splitmix64(self.id_seed ^ self.features.wrapping_mul(2).wrapping_add(1));
        let hi = (hi & !0xf000) | 0x4000; // version 4
        let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }
}

/// SplitMix64 finaliser: a cheap bijective mixer, good enough for unique ids.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133f_22eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn square(x: f64, y: f64, s: f64) -> Vec<(f64, f64)> {
        vec![(x, y), (x + s, y), (x + s, y + s), (x, y + s), (x, y)]
    }

    /// A nucleus of `area` with only the measurements every nucleus has.
    fn area_only(area: f64) -> Measurements {
        Measurements {
            centroid: (0.0, 0.0),
            area,
            equivalent_diameter: 2.0 * (area / std::f64::consts::PI).sqrt(),
            perimeter: None,
            eccentricity: None,
            solidity: None,
            hematoxylin_mean: None,
            score_mean: None,
        }
    }

    fn props(m: &Measurements) -> NucleusProperties<'_> {
        NucleusProperties {
            measurements: m,
            unit: LengthUnit::Level0Pixel,
        }
    }

    #[test]
    fn writes_a_feature_collection_qupath_can_import() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nuclei.geojson");
        let mut writer = GeoJsonWriter::create(&path).unwrap();
        assert!(dir.path().join("nuclei.geojson.partial").exists());
        assert!(!path.exists());
        let measured = Measurements {
            perimeter: Some(10.0),
            solidity: Some(1.0),
            hematoxylin_mean: Some(0.3),
            ..area_only(6.25)
        };
        for i in 0..3 {
            let ring = square(10.0 * i as f64, 5.0, 2.5);
            let properties = NucleusProperties {
                measurements: &measured,
                unit: LengthUnit::Micron,
            };
            writer.write_polygon(&ring, &properties).unwrap();
        }
        assert_eq!(writer.features_written(), 3);
        assert_eq!(writer.finish().unwrap(), path);
        assert!(!dir.path().join("nuclei.geojson.partial").exists());

        let text = std::fs::read_to_string(&path).unwrap();
        // Header, one line per feature, footer.
        assert_eq!(text.lines().count(), 5);
        assert!(text
            .lines()
            .skip(1)
            .take(3)
            .all(|l| l.starts_with("{\"type\":\"Feature\"")));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["type"], "FeatureCollection");
        let features = doc["features"].as_array().unwrap();
        assert_eq!(features.len(), 3);
        let mut ids = std::collections::HashSet::new();
        for (i, f) in features.iter().enumerate() {
            assert_eq!(f["type"], "Feature");
            let id = f["id"].as_str().unwrap();
            let groups: Vec<_> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
            assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
            assert_eq!(&id[14..15], "4");
            assert!(ids.insert(id.to_owned()));
            assert_eq!(f["geometry"]["type"], "Polygon");
            let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
            assert_eq!(ring.len(), 5);
            assert_eq!(ring[0], ring[4]);
            assert_eq!(ring[1], serde_json::json!([10.0 * i as f64 + 2.5, 5.0]));
            let props = &f["properties"];
            assert_eq!(props["objectType"], "detection");
            assert_eq!(props["classification"]["name"], "Nucleus");
            assert_eq!(
                props["classification"]["color"],
                serde_json::json!(NUCLEUS_COLOR)
            );
            let measurements = props["measurements"].as_object().unwrap();
            let mut names: Vec<&str> = measurements.keys().map(String::as_str).collect();
            names.sort_unstable();
            assert_eq!(
                names,
                [
                    "Area µm^2",
                    "Equivalent diameter µm",
                    "Hematoxylin OD mean",
                    "Perimeter µm",
                    "Solidity"
                ],
                "QuPath's names, only what was measured"
            );
            assert_eq!(measurements["Area µm^2"], 6.25);
            assert_eq!(measurements["Hematoxylin OD mean"], 0.3);
        }
    }

    #[test]
    fn empty_collection_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.geojson");
        GeoJsonWriter::create(&path).unwrap().finish().unwrap();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["features"], serde_json::json!([]));
    }

    #[test]
    fn dropping_without_finish_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abandoned.geojson");
        let mut writer = GeoJsonWriter::create(&path).unwrap();
        writer
            .write_polygon(&square(0.0, 0.0, 1.0), &props(&area_only(1.0)))
            .unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/nuclei.geojson");
        let err = GeoJsonWriter::create(&path).unwrap_err();
        assert!(matches!(err, GeoJsonError::Create { .. }));
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[test]
    fn invalid_rings_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.geojson");
        let mut writer = GeoJsonWriter::create(&path).unwrap();
        let area = area_only(1.0);
        let props = props(&area);
        let open = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)];
        let short = [(0.0, 0.0), (1.0, 0.0), (0.0, 0.0)];
        let nan = [(0.0, 0.0), (f64::NAN, 0.0), (1.0, 1.0), (0.0, 0.0)];
        for ring in [&open[..], &short, &nan] {
            let err = writer.write_polygon(ring, &props).unwrap_err();
            assert!(matches!(err, GeoJsonError::InvalidRing { .. }), "{err}");
            assert!(err.to_string().contains("bad.geojson"), "{err}");
        }
        // Rejected rings leave the document valid.
        writer
            .write_polygon(&square(0.0, 0.0, 1.0), &props)
            .unwrap();
        writer.finish().unwrap();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["features"].as_array().unwrap().len(), 1);
    }
}
