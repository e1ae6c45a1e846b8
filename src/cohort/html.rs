//! `report.html`: the report as a page for people who open results in a browser. One
//! self-contained file, no network needed: the overlays' thumbnails are embedded as JPEG
//! `data:` URIs, each linking to the full overlay by a relative path; the style and the
//! table sorting are inline. Failed slides come first with their reason. Every text that
//! comes from outside (slide names and paths, errors, settings) is escaped, so a file named
//! `<script>…` shows as text and runs nothing.

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Component, Path};

use base64::Engine as _;

use super::{CohortReport, SlideRow, Status};
use crate::segment::caption_height;

/// Longest side of an embedded thumbnail: 50 slides stay well under 2 MB.
pub const THUMBNAIL_SIDE: u32 = 256;
const THUMBNAIL_QUALITY: u8 = 75;

/// Writes the page of `report` to `path` atomically; links are relative to its folder.
pub fn write(report: &CohortReport, path: &Path) -> anyhow::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let page = render(report, folder);
    crate::atomic_file::write_atomically(path, |partial| {
        std::fs::write(partial, page)?;
        Ok(())
    })
}

/// `text` safe inside an element and inside a double- or single-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Failed slides first, then cancelled and pending ones, then the complete ones; input
/// order within each group.
fn rank(status: Status) -> u8 {
    match status {
        Status::Failed => 0,
        Status::Cancelled => 1,
        Status::Pending => 2,
        Status::Done | Status::Skipped => 3,
    }
}

/// The page of `report`, whose links are relative to `folder` (where the page goes).
pub fn render(report: &CohortReport, folder: &Path) -> String {
    let mut rows: Vec<&SlideRow> = report.slides.iter().collect();
    rows.sort_by_key(|row| rank(row.status));
    let c = report.counts;
    let mut page = String::new();
    let title = if report.slides.len() == 1 {
        format!("slidestream report: {}", report.slides[0].name)
    } else {
        format!("slidestream cohort report: {} slides", c.total)
    };
    // `write!` to a String cannot fail.
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n\
         <p class=\"counts\">{} slide(s): {} done, {} skipped (already complete), \
         <span class=\"{}\">{} failed</span>, {} cancelled, {} pending.</p>\n",
        c.total,
        c.done,
        c.skipped,
        if c.failed > 0 { "bad" } else { "" },
        c.failed,
        c.cancelled,
        c.pending,
        title = escape(&title),
    );
    if c.failed > 0 {
        page.push_str(
            "<p>Failed slides are listed first, with the reason in the Error column; \
             rerunning the cohort retries them.</p>\n",
        );
    }
    page.push_str(
        "<p class=\"hint\">Click a column heading to sort by it (again to reverse). \
         Click a thumbnail for the full QC overlay.</p>\n<table id=\"slides\">\n<thead><tr>",
    );
    for heading in [
        "Overlay",
        "Slide",
        "Status",
        "Error",
        "Tissue %",
        "Nuclei",
        "Nuclei / mm² tissue",
        "Median area µm²",
        "Time s",
        "Mpx/s",
    ] {
        let _ = write!(page, "<th>{heading}</th>");
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        slide_row(&mut page, row, folder);
    }
    page.push_str("</tbody>\n</table>\n");
    settings(&mut page, report);
    let _ = write!(
        page,
        "<p class=\"hint\">Written by slidestream {}.</p>\n<script>{SORT_SCRIPT}</script>\n\
         </body>\n</html>\n",
        escape(env!("CARGO_PKG_VERSION"))
    );
    page
}

/// One `<tr>`; each cell's `data-v` is what sorting compares.
fn slide_row(page: &mut String, row: &SlideRow, folder: &Path) {
    let _ = write!(page, "<tr class=\"{}\">", row.status);
    let overlay = row.overlay.as_deref();
    match overlay.and_then(|o| Some((thumbnail(o)?, relative_link(folder, o)?))) {
        Some((jpeg, link)) => {
            let _ = write!(
                page,
                "<td data-v=\"1\"><a href=\"{}\"><img src=\"data:image/jpeg;base64,{jpeg}\" \
                 alt=\"QC overlay of {}\"></a></td>",
                escape(&link),
                escape(&row.name)
            );
        }
        None => page.push_str("<td data-v=\"0\" class=\"none\">no overlay</td>"),
    }
    let _ = write!(
        page,
        "<td data-v=\"{}\"><b>{}</b><br><small>{}</small></td>",
        escape(&row.name),
        escape(&row.id),
        escape(&row.slide.display().to_string())
    );
    let _ = write!(
        page,
        "<td data-v=\"{}\">{}</td>",
        rank(row.status),
        row.status
    );
    let error = row.error.as_deref().unwrap_or("");
    let _ = write!(page, "<td data-v=\"{0}\">{0}</td>", escape(error));
    let cells: [(Option<f64>, usize); 6] = [
        (row.tissue_fraction.map(|f| f * 100.0), 1),
        (row.nuclei.map(|n| n as f64), 0),
        (row.nuclei_per_mm2, 0),
        (row.median_area_um2, 1),
        (row.seconds, 1),
        (row.mpx_per_s, 1),
    ];
    for (value, decimals) in cells {
        match value {
            Some(v) => {
                let _ = write!(page, "<td class=\"n\" data-v=\"{v}\">{v:.decimals$}</td>");
            }
            None => page.push_str("<td class=\"n\" data-v=\"\">–</td>"),
        }
    }
    page.push_str("</tr>\n");
}

/// The run's model, settings and totals, as name/value rows.
fn settings(page: &mut String, report: &CohortReport) {
    page.push_str("<h2>Settings</h2>\n<table class=\"settings\">\n");
    let mut pairs = vec![("model".to_owned(), report.model.clone())];
    if let Some(shard) = &report.shard {
        pairs.push(("shard".to_owned(), shard.clone()));
    }
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&report.settings) {
        for (key, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "–".to_owned(),
                other => other.to_string(),
            };
            pairs.push((key, text));
        }
    }
    pairs.push(("this run".to_owned(), report.throughput()));
    for (key, value) in pairs {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(&key),
            escape(&value)
        );
    }
    page.push_str("</table>\n");
}

/// The overlay at `path` without its caption strip, at most [`THUMBNAIL_SIDE`] a side, as
/// base64 JPEG; `None` if it cannot be read (the row then says so).
fn thumbnail(path: &Path) -> Option<String> {
    let image = image::open(path).ok()?.to_rgb8();
    let (width, height) = image.dimensions();
    // The caption's text is unreadable at thumbnail size; the page says it all anyway.
    let picture_height = height
        .checked_sub(caption_height(width))
        .filter(|&h| h > 0)
        .unwrap_or(height);
    let picture = image::imageops::crop_imm(&image, 0, 0, width, picture_height).to_image();
    let scale = f64::from(THUMBNAIL_SIDE) / f64::from(width.max(picture_height));
    let small = if scale < 1.0 {
        let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
        image::imageops::thumbnail(&picture, side(width), side(picture_height))
    } else {
        picture
    };
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), THUMBNAIL_QUALITY)
        .encode_image(&small)
        .ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(jpeg))
}

/// `file` as a URL path relative to `folder` (both must exist), each segment
/// percent-encoded; `None` when either cannot be resolved.
fn relative_link(folder: &Path, file: &Path) -> Option<String> {
    let (folder, file) = (folder.canonicalize().ok()?, file.canonicalize().ok()?);
    let (from, to): (Vec<Component>, Vec<Component>) =
        (folder.components().collect(), file.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let ups = std::iter::repeat_n("..".to_owned(), from.len() - common);
    let downs = to[common..]
        .iter()
        .map(|c| percent_encode(&c.as_os_str().to_string_lossy()));
    Some(ups.chain(downs).collect::<Vec<_>>().join("/"))
}

/// `segment` with every byte but unreserved URL characters as `%XX`.
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "
body { font-family: system-ui, 'DejaVu Sans', sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; }
h2 { font-size: 1.2em; margin-top: 1.5em; }
.counts { font-size: 1.1em; }
.bad { color: #b00020; font-weight: bold; }
.hint { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; }
#slides th { cursor: pointer; user-select: none; background: #eee; position: sticky; top: 0; }
#slides th[data-order=asc]::after { content: ' ▲'; }
#slides th[data-order=desc]::after { content: ' ▼'; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td small { color: #666; word-break: break-all; }
td img { display: block; max-width: 256px; max-height: 256px; }
td.none { color: #999; }
tr.failed { background: #fdecea; }
tr.failed td:nth-child(3) { color: #b00020; font-weight: bold; }
tr.failed td:nth-child(4) { color: #b00020; }
tr.cancelled, tr.pending { background: #fff8e1; }
.settings th { background: #f6f6f6; font-weight: normal; }
";

/// Sorts the table by the clicked column: numbers as numbers, text as text, empty last.
const SORT_SCRIPT: &str = "
document.querySelectorAll('#slides th').forEach(function (th, column) {
  th.addEventListener('click', function () {
    var body = document.querySelector('#slides tbody');
    var ascending = th.dataset.order !== 'asc';
    document.querySelectorAll('#slides th').forEach(function (h) { delete h.dataset.order; });
    th.dataset.order = ascending ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.v, y = b.cells[column].dataset.v;
      if (x === '' || y === '') { return (x === '') - (y === ''); }
      var nx = Number(x), ny = Number(y);
      var order = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::Entry;
    use crate::segment::{Settings, TargetScale};
    use std::path::PathBuf;

    const HOSTILE: &str = "<img src=x onerror=alert(1)>";

    fn settings() -> Settings {
        Settings {
            tile: 256,
            batch: 1,
            postprocess: true,
            all_tiles: false,
            min_nucleus_area_um2: 0.0,
            level: 0,
            target_mpp: TargetScale::Model,
            mpp: None,
            separate: true,
            measure: true,
        }
    }

    fn row(name: &str, status: Status, overlay: Option<PathBuf>) -> SlideRow {
        let entry = Entry {
            id: name.to_owned(),
            name: crate::cohort::inputs::safe_name(name),
            path: PathBuf::from(format!("/slides/{name}.svs")),
        };
        let mut row = SlideRow::new(&entry, status);
        if status == Status::Failed {
            row.error = Some(format!("/slides/{name}.svs: not a slide"));
        } else {
            row.overlay = overlay;
            row.tissue_fraction = Some(0.25);
            row.nuclei = Some(1234);
            row.nuclei_per_mm2 = Some(2500.0);
            row.median_area_um2 = Some(31.25);
            row.seconds = Some(3.5);
            row.mpx_per_s = Some(12.0);
        }
        row
    }

    fn report(slides: Vec<SlideRow>) -> CohortReport {
        CohortReport::new(slides, "runs/model".to_owned(), settings(), None, 1.0)
    }

    /// An overlay-like PNG: smooth tissue with a caption strip of a different colour.
    fn overlay_png(path: &Path, width: u32, height: u32) {
        let strip = caption_height(width);
        let image = image::RgbImage::from_fn(width, height + strip, |x, y| {
            if y >= height {
                image::Rgb([0, 0, 255])
            } else {
                let v = 150 + ((x * 7 + y * 3) % 90) as u8;
                image::Rgb([v, 120, v / 2 + 100])
            }
        });
        image.save(path).unwrap();
    }

    /// The `<tbody>` rows of a page.
    fn body_rows(page: &str) -> Vec<&str> {
        let body = &page[page.find("<tbody>").unwrap()..page.find("</tbody>").unwrap()];
        body.lines().filter(|l| l.starts_with("<tr")).collect()
    }

    #[test]
    fn every_slide_has_a_row_and_failures_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("slides/a.overlay.png");
        std::fs::create_dir_all(overlay.parent().unwrap()).unwrap();
        overlay_png(&overlay, 600, 400);
        let page = render(
            &report(vec![
                row("a", Status::Done, Some(overlay)),
                row("b", Status::Failed, None),
                row("c", Status::Skipped, None),
                row("d", Status::Failed, None),
            ]),
            dir.path(),
        );
        let rows = body_rows(&page);
        let order: Vec<&str> = ["b", "d", "a", "c"].to_vec();
        assert_eq!(rows.len(), order.len());
        for (row, name) in rows.iter().zip(order) {
            assert!(row.contains(&format!("<b>{name}</b>")), "{row}");
        }
        assert!(rows[0].starts_with("<tr class=\"failed\">"));
        assert!(rows[0].contains("/slides/b.svs: not a slide"));
        // The done slide: its numbers, its thumbnail and the link to the full overlay.
        assert!(rows[2].contains(">25.0<") && rows[2].contains(">1234<"));
        assert!(rows[2].contains(">2500<") && rows[2].contains(">31.2<"));
        assert!(
            rows[2].contains("<a href=\"slides/a.overlay.png\"><img src=\"data:image/jpeg;base64,")
        );
        assert!(rows[3].contains("no overlay"));
        assert!(page.contains("2 failed"));
        assert!(page.contains("<tr><th>model</th><td>runs/model</td></tr>"));
        assert!(page.contains("<tr><th>tile</th><td>256</td></tr>"));
        // Self-contained: nothing is fetched from anywhere.
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("src=\"http") && !page.contains("<link"));
    }

    #[test]
    fn hostile_slide_names_appear_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut failed = row(HOSTILE, Status::Failed, None);
        failed.error = Some(format!("{HOSTILE}.svs: \"quoted\" & 'single'"));
        let page = render(
            &report(vec![row(HOSTILE, Status::Done, None), failed]),
            dir.path(),
        );
        assert!(
            !page.contains(HOSTILE),
            "the name went into the page unescaped"
        );
        assert!(!page.contains("<img src=x"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("&quot;quoted&quot; &amp; &#39;single&#39;"));
        // The only script is the page's own sorter, and the only images are thumbnails.
        assert_eq!(page.matches("<script").count(), 1);
        assert_eq!(page.matches("<img").count(), 0);
    }

    #[test]
    fn fifty_thumbnails_stay_under_two_megabytes() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("big.overlay.png");
        overlay_png(&overlay, 1024, 700);
        let slides: Vec<SlideRow> = (0..50)
            .map(|i| row(&format!("slide{i}"), Status::Done, Some(overlay.clone())))
            .collect();
        let page = render(&report(slides), dir.path());
        assert_eq!(page.matches("data:image/jpeg;base64,").count(), 50);
        assert!(page.len() < 2 << 20, "{} bytes", page.len());
        // Thumbnails are at most 256 px a side and leave the caption strip out.
        let start = page.find("base64,").unwrap() + 7;
        let end = start + page[start..].find('"').unwrap();
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(&page[start..end])
            .unwrap();
        let thumb = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(thumb.dimensions(), (256, 175));
        let bottom = thumb.get_pixel(128, 174);
        assert!(
            bottom[2] < 200,
            "the caption's blue strip is in the thumbnail: {bottom:?}"
        );
    }

    #[test]
    fn links_are_relative_and_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slides/a b#?.png");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"x").unwrap();
        let report_dir = dir.path().join("reports");
        std::fs::create_dir_all(&report_dir).unwrap();
        assert_eq!(
            relative_link(dir.path(), &file).unwrap(),
            "slides/a%20b%23%3F.png"
        );
        assert_eq!(
            relative_link(&report_dir, &file).unwrap(),
            "../slides/a%20b%23%3F.png"
        );
        assert_eq!(relative_link(dir.path(), &dir.path().join("missing")), None);
    }

    #[test]
    fn a_one_slide_page_is_titled_by_its_slide() {
        let page = render(&report(vec![row("x", Status::Done, None)]), Path::new("."));
        assert!(page.contains("<title>slidestream report: x</title>"));
        assert!(page.contains("1 slide(s): 1 done"));
        assert!(!page.contains("Failed slides are listed first"));
    }
}
