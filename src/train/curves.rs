//! `curves.png` and `curves.svg`: what a run did per epoch, readable without the code. The
//! title names the method, seed and data; the top panel plots the loss terms, the bottom
//! one the per-channel scores (validation Dice solid, label-free hematoxylin agreement
//! dashed, one colour per channel, both 0–1); a dashed vertical line and a ring mark the
//! epoch and channel `model.json` holds. Redrawn after every epoch, so a long run can be
//! watched.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::error::TrainError;
use super::metrics::EpochMetrics;
use crate::model::{ModelCard, Selection};
use crate::picture::{drawing_failed, fit_text, font, rgb_area};

const WIDTH: u32 = 800;
const HEIGHT: u32 = 600;
const TITLE_HEIGHT: u32 = 56;
/// Width of the legend column right of each chart.
const LEGEND_WIDTH: u32 = 200;
/// Channel c is drawn in `PALETTE[c % 8]`.
const PALETTE: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(127, 127, 127),
];
const SELECTED: RGBColor = RGBColor(90, 90, 90);

/// A named series of (epoch, value) points.
struct Series {
    label: String,
    colour: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// The checkpoint `model.json` holds.
struct Selected {
    epoch: f64,
    /// The selected channel's score at that epoch (ringed), if it has one.
    score: Option<f64>,
    /// "epoch E, channel cC".
    what: String,
    /// "by validation Dice", …
    why: &'static str,
}

/// What the picture shows, gathered once for both formats.
struct Curves {
    title: String,
    data: String,
    /// Epochs span 0..=last.
    last: f64,
    loss: Vec<Series>,
    scores: Vec<Series>,
    selected: Option<Selected>,
}

impl Curves {
    fn new(metrics: &[EpochMetrics], card: &ModelCard) -> Self {
        let series =
            |label: &str, colour, dashed, value: &dyn Fn(&EpochMetrics) -> Option<f64>| Series {
                label: label.to_owned(),
                colour,
                dashed,
                points: metrics
                    .iter()
                    .filter_map(|m| value(m).map(|v| (m.epoch as f64, v)))
                    .collect(),
            };
        let loss: Vec<Series> = [
            series("loss", BLACK, false, &|m| m.loss),
            series("intra-image term", PALETTE[1], true, &|m| m.intra),
            series("inter-image term", PALETTE[3], true, &|m| m.inter),
        ]
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect();
        let channels = metrics
            .iter()
            .map(|m| m.val_dice.len().max(m.hematoxylin_agreement.len()))
            .max()
            .unwrap_or(0);
        let mut scores = Vec::new();
        for c in 0..channels {
            let colour = PALETTE[c % PALETTE.len()];
            scores.push(series(
                &format!("Dice c{c} (validation)"),
                colour,
                false,
                &|m| m.val_dice.get(c).copied(),
            ));
            scores.push(series(
                &format!("agreement c{c} (label-free)"),
                colour,
                true,
                &|m| m.hematoxylin_agreement.get(c).copied(),
            ));
        }
        scores.retain(|s| !s.points.is_empty());
        // A run that records one map records the card's mask: the UNet student's nucleus
        // probability is the saved network's channel 1.
        let column = if channels == 1 { 0 } else { card.channel };
        let selected = card.epoch.map(|epoch| {
            let at = metrics.iter().find(|m| m.epoch == epoch);
            let (score, by) = match card.selection {
                Some(Selection::ValidationDice) => (
                    at.and_then(|m| m.val_dice.get(column)),
                    "by validation Dice",
                ),
                Some(Selection::HematoxylinAgreement) => (
                    at.and_then(|m| m.hematoxylin_agreement.get(column)),
                    "by label-free agreement",
                ),
                // Not chosen by a score: ring the channel's Dice, else its agreement.
                Some(Selection::LastEpoch) | None => (
                    at.and_then(|m| {
                        m.val_dice
                            .get(column)
                            .or(m.hematoxylin_agreement.get(column))
                    }),
                    if card.selection.is_some() {
                        "the last epoch"
                    } else {
                        "as model.json records"
                    },
                ),
            };
            Selected {
                epoch: epoch as f64,
                score: score.copied(),
                what: format!("epoch {epoch}, channel c{}", card.channel),
                why: by,
            }
        });
        Self {
            title: format!(
                "Training curves: {}, seed {}, {} epoch(s)",
                card.method,
                card.seed,
                metrics.len()
            ),
            data: format!("data: {}", card.data),
            last: metrics.iter().map(|m| m.epoch).max().unwrap_or(0) as f64,
            loss,
            scores,
            selected,
        }
    }

    /// Draws everything on `root` (any backend: the PNG's bitmap or the SVG).
    /// Draws onto `root` and finishes it (PNG pixels or SVG text).
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        self.draw(root)
            .and_then(|()| root.present())
            .map_err(drawing_failed)
            .map_err(anyhow::Error::msg)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (head, body) = root.split_vertically(TITLE_HEIGHT);
        let title_font = font(22.0);
        head.draw_text(
            &fit_text(&self.title, &title_font, WIDTH - 20),
            &title_font.color(&BLACK),
            (10, 10),
        )?;
        let data_font = font(15.0);
        head.draw_text(
            &fit_text(&self.data, &data_font, WIDTH - 20),
            &data_font.color(&RGBColor(70, 70, 70)),
            (10, 34),
        )?;
        let panels = body.split_evenly((2, 1));
        self.panel(
            &panels[0],
            "Loss per epoch (mean over the epoch's steps)",
            "loss (unitless)",
            value_range(&self.loss),
            &self.loss,
            None,
        )?;
        self.panel(
            &panels[1],
            "Per channel: validation Dice (solid), label-free agreement (dashed)",
            "score (0–1)",
            (0.0, 1.0),
            &self.scores,
            self.selected.as_ref(),
        )
    }

    /// One panel: the chart on the left, its legend on the right (never over the data).
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        caption: &str,
        unit: &str,
        (lo, hi): (f64, f64),
        series: &[Series],
        selected: Option<&Selected>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (plot, legend) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
        // Half an epoch either side, so the first and last points are off the axes.
        let x_range = -0.5..self.last + 0.5;
        let mut chart = ChartBuilder::on(&plot)
            .margin_left(10)
            .margin_right(10)
            .margin_bottom(6)
            .caption(caption, font(16.0))
            .x_label_area_size(40)
            .y_label_area_size(62)
            .build_cartesian_2d(x_range, lo..hi)?;
        let whole_epochs = |x: &f64| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc("epoch (0-based)")
            .y_desc(unit)
            .x_labels(((self.last as usize) + 2).min(12))
            .y_labels(6)
            .x_label_formatter(&whole_epochs)
            .label_style(font(14.0))
            .axis_desc_style(font(15.0))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()?;
        for s in series {
            let style = s.colour.stroke_width(2);
            if s.dashed {
                chart.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))?;
            } else {
                chart.draw_series(LineSeries::new(s.points.clone(), style))?;
            }
            chart.draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, s.colour.filled())),
            )?;
        }
        if let Some(selected) = selected {
            let line = [(selected.epoch, lo), (selected.epoch, hi)];
            chart.draw_series(DashedLineSeries::new(line, 4, 4, SELECTED.stroke_width(1)))?;
            if let Some(score) = selected.score {
                chart.draw_series(std::iter::once(Circle::new(
                    (selected.epoch, score),
                    8,
                    SELECTED.stroke_width(2),
                )))?;
            }
        }
        draw_legend(&legend, series, selected)
    }
}

/// The legend column: a line sample and label per series, then the selection's ring.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
    selected: Option<&Selected>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let text = font(14.0);
    let (step, left) = (19, 34);
    let mut y = 40;
    for s in series {
        let style = s.colour.stroke_width(2);
        let dashes: &[(i32, i32)] = if s.dashed {
            &[(0, 6), (10, 16), (20, 26)]
        } else {
            &[(0, 26)]
        };
        for &(a, b) in dashes {
            area.draw(&PathElement::new(vec![(a, y), (b, y)], style))?;
        }
        area.draw_text(&s.label, &text.color(&BLACK), (left, y - 6))?;
        y += step;
    }
    if let Some(selected) = selected {
        area.draw(&Circle::new((13, y), 7, SELECTED.stroke_width(2)))?;
        let lines = [
            "selected checkpoint".to_owned(),
            selected.what.clone(),
            format!("({})", selected.why),
        ];
        for (i, line) in (0..).zip(lines) {
            area.draw_text(&line, &text.color(&BLACK), (left, y - 6 + i * step))?;
        }
    }
    Ok(())
}

/// The span of `series` with a margin, never empty.
fn value_range(series: &[Series]) -> (f64, f64) {
    let (lo, hi) = series
        .iter()
        .flat_map(|s| &s.points)
        .fold((f64::MAX, f64::MIN), |(lo, hi), &(_, v)| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs().max(1e-3) * 0.02);
    (lo - pad, hi + pad)
}

/// Writes `run_dir/curves.png` and `run_dir/curves.svg` for `metrics`, titled and marked
/// from `card`, the saved model's card. Each file is replaced atomically, so a reader never
/// sees half a picture.
pub fn draw_curves(
    metrics: &[EpochMetrics],
    card: &ModelCard,
    run_dir: &Path,
) -> Result<(), TrainError> {
    let curves = Curves::new(metrics, card);
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |e: anyhow::Error| TrainError::Io {
            path,
            source: std::io::Error::other(format!("{e:#}")),
        }
    };
    let png = run_dir.join("curves.png");
    crate::atomic_file::write_atomically(&png, |partial| {
        let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
        {
            curves.paint(&rgb_area(&mut pixels, WIDTH, HEIGHT))?;
        }
        image::save_buffer_with_format(
            partial,
            &pixels,
            WIDTH,
            HEIGHT,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )?;
        Ok(())
    })
    .map_err(failed(&png))?;
    let svg = run_dir.join("curves.svg");
    crate::atomic_file::write_atomically(&svg, |partial| {
        let mut text = String::new();
        {
            curves
                .paint(&SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area())?;
        }
        std::fs::write(partial, text)?;
        Ok(())
    })
    .map_err(failed(&svg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Architecture, InputNormalisation, Method};

    fn epoch(epoch: usize, loss: f64, dice: Vec<f64>, agreement: Vec<f64>) -> EpochMetrics {
        EpochMetrics {
            epoch,
            loss: Some(loss),
            intra: Some(loss * 0.6),
            inter: Some(loss * 0.4),
            steps: 4,
            skipped_steps: 0,
            val_dice: dice,
            hematoxylin_agreement: agreement,
            elapsed_s: epoch as f64,
        }
    }

    fn card(epoch: usize, channel: usize, selection: Selection) -> ModelCard {
        ModelCard {
            architecture: Architecture::ConfidenceNet,
            method: Method::SelfTraining,
            channels: 2,
            channel,
            threshold: 0.5,
            input_normalisation: InputNormalisation::Epsilon { epsilon: 1e-3 },
            epoch: Some(epoch),
            val_dice: Vec::new(),
            seed: 17,
            data: "tiles/: 6 images (6 with masks)".to_owned(),
            slidestream_version: String::new(),
            train_mpp: None,
            selection: Some(selection),
            hematoxylin_agreement: Vec::new(),
            width: None,
            stain_calibration: None,
        }
    }

    #[test]
    fn curves_are_labeled_and_mark_the_selected_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = [
            epoch(0, 2.0, vec![0.3, 0.5], vec![0.2, 0.4]),
            epoch(1, 1.5, vec![0.35, 0.7], vec![0.25, 0.6]),
            epoch(2, 1.2, vec![0.4, 0.65], vec![0.3, 0.55]),
        ];
        let card = card(1, 1, Selection::ValidationDice);
        draw_curves(&metrics, &card, dir.path()).unwrap();
        let png = image::open(dir.path().join("curves.png")).unwrap();
        assert_eq!((png.width(), png.height()), (WIDTH, HEIGHT));
        let svg = std::fs::read_to_string(dir.path().join("curves.svg")).unwrap();
        // plotters writes each text on a line of its own.
        let texts: std::collections::HashSet<&str> = svg.lines().map(str::trim).collect();
        for text in [
            "Training curves: self-training, seed 17, 3 epoch(s)",
            "data: tiles/: 6 images (6 with masks)",
            "epoch (0-based)",
            "loss (unitless)",
            "score (0–1)",
            "intra-image term",
            "Dice c0 (validation)",
            "Dice c1 (validation)",
            "agreement c1 (label-free)",
            "selected checkpoint",
            "epoch 1, channel c1",
            "(by validation Dice)",
            // Ticks: the epochs and the score axis.
            "0",
            "1",
            "2",
            "0.5",
        ] {
            assert!(texts.contains(text), "the SVG lacks the text {text:?}");
        }
    }

    #[test]
    fn curves_without_validation_or_agreement_still_draw() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = [epoch(0, 0.7, Vec::new(), Vec::new())];
        draw_curves(&metrics, &card(0, 0, Selection::LastEpoch), dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("curves.svg")).unwrap();
        assert!(svg.contains("epoch 0, channel c0"));
        assert!(svg.contains("(the last epoch)"));
        assert!(!svg.contains("Dice c0"));
    }
}
