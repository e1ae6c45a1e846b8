//! The semi-supervised training loop and its RUN_DIR (the same files as every method, so
//! `segment`, `eval` and `cohort` use it unchanged).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

use super::augment::{geometric, photometric};
use super::contrast::{classify_patches, dense_contrastive_loss, FeatureBank};
use super::objective::{consistency_loss, consistency_weight, entropy_loss, poly_lr};
use super::split::LabeledTiles;
use super::SemiConfig;
use crate::model::{
    read_card, save_run, Architecture, InputNormalisation, Method, ModelCard, Selection, UNet,
    UNET_ALIGN,
};
use crate::train::curves::draw_curves;
use crate::train::data::{CropSource, DataError, LabeledCrops, LabeledFolder, LabeledSet};
use crate::train::ema::ema_update;
use crate::train::error::TrainError;
use crate::train::metrics::EpochMetrics;
use crate::train::run::{create_run_dir, Best, Progress, TrainSummary, CONFIDENCE_THRESHOLD};
use crate::train::step::StepOutcome;
use crate::train::validate::validation_dice;

/// The nucleus class of the classifier (channel 1 of the saved model).
const NUCLEUS: usize = 1;

/// Loss terms of one step (the unsupervised ones are `None` before the branch starts).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SemiStep {
    pub loss: f64,
    pub sup: f64,
    pub contr: Option<f64>,
    pub cons: Option<f64>,
    pub ent: Option<f64>,
    /// Consistency weight used.
    pub w_cons: f64,
}

impl SemiConfig {
    /// Refuses settings the trainer cannot run, before anything is written; `extra_slides`
    /// says whether whole slides will fill half of each unlabeled batch.
    pub fn check(&self, extra_slides: bool) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Config(what));
        let patch_side = UNET_ALIGN as i64 * self.grid;
        if self.grid < 1 || i64::from(self.crop) % patch_side != 0 {
            return bad(format!(
                "crop {} must be a multiple of 8 × grid = {patch_side} px (e.g. {})",
                self.crop,
                (i64::from(self.crop) / patch_side.max(1)).max(1) * patch_side
            ));
        }
        if self.crop > self.tile {
            return bad(format!(
                "crop {} must not exceed the sub-image side {}",
                self.crop, self.tile
            ));
        }
        if self.labeled_batch == 0
            || self.unlabeled_batch == 0
            || self.width == 0
            || self.epochs == 0
        {
            return bad("batches, width and epochs must be at least 1".into());
        }
        if self.max_steps == Some(0) || self.epoch_steps == Some(0) {
            return bad("max_steps and epoch_steps must be at least 1".into());
        }
        if !(self.bdp < self.fdp && (0.0..=1.0).contains(&self.bdp) && self.fdp <= 1.0) {
            return bad(format!(
                "need 0 ≤ bdp ({}) < fdp ({}) ≤ 1",
                self.bdp, self.fdp
            ));
        }
        if !(0.0..1.0).contains(&self.ema) || self.temperature <= 0.0 {
            return bad("ema must be in [0, 1) and temperature positive".into());
        }
        if extra_slides && slide_share(self.unlabeled_batch) == 0 {
            return bad(
                "extra unlabeled slides (--unlabeled) need an unlabeled batch \
                 (--unlabeled-batch) of at least 2: half of it comes from them"
                    .into(),
            );
        }
        Ok(())
    }
}

fn l2_normalise(x: &Tensor) -> Tensor {
    x / x
        .square()
        .sum_dim_intlist(1, true, Kind::Float)
        .sqrt()
        .clamp_min(1e-12)
}

/// Pseudo-labels at the stride-8 feature resolution: class of the highest mean probability
/// over each 8×8 block.
fn feature_labels(probabilities: &Tensor) -> Tensor {
    let s = i64::from(UNET_ALIGN);
    probabilities
        .avg_pool2d([s, s], [s, s], [0, 0], false, true, None)
        .argmax(1, false)
}

/// An endless shuffled deck of `0..n`, reshuffled on every pass.
struct Deck {
    order: Vec<usize>,
    next: usize,
}

impl Deck {
    fn new(n: usize) -> Self {
        Self {
            order: (0..n).collect(),
            next: n,
        }
    }

    fn draw(&mut self, count: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        (0..count)
            .map(|_| {
                if self.next == self.order.len() {
                    self.order.shuffle(rng);
                    self.next = 0;
                }
                self.next += 1;
                self.order[self.next - 1]
            })
            .collect()
    }
}

/// Student, teacher, optimizer and feature bank.
struct MeanTeacher {
    student_vs: nn::VarStore,
    student: UNet,
    teacher_vs: nn::VarStore,
    teacher: UNet,
    optimizer: nn::Optimizer,
    bank: FeatureBank,
}

impl MeanTeacher {
    fn new(config: &SemiConfig) -> Result<Self, TrainError> {
        let student_vs = nn::VarStore::new(config.device);
        let student = UNet::new(&student_vs.root(), config.width as i64);
        let mut teacher_vs = nn::VarStore::new(config.device);
        let teacher = UNet::new(&teacher_vs.root(), config.width as i64);
        teacher_vs.freeze();
        let optimizer = nn::Adam::default().build(&student_vs, config.lr)?;
        Ok(Self {
            student_vs,
            student,
            teacher_vs,
            teacher,
            optimizer,
            bank: FeatureBank::default(),
        })
    }

    /// The unsupervised terms on one unlabeled batch of sub-images (B×3×T×T):
    /// (contrastive, consistency, entropy).
    fn unsupervised(
        &mut self,
        config: &SemiConfig,
        tiles: &Tensor,
        rng: &mut ChaCha8Rng,
    ) -> (Tensor, Tensor, Tensor) {
        let geometry = geometric(
            config.unlabeled_batch,
            tiles.size()[2],
            i64::from(config.crop),
            config.device,
            rng,
        );
        let weak = geometry.apply(tiles, false);
        let strong = photometric(&weak, rng);
        let (teacher_probabilities, teacher_queries) = tch::no_grad(|| {
            let out = self.teacher.forward_features(&weak, false);
            let probabilities = out.logits.softmax(1, Kind::Float);
            let projected = l2_normalise(&self.teacher.project(&out.features));
            let queries = classify_patches(
                &projected,
                &feature_labels(&probabilities),
                config.grid,
                config.fdp,
                config.bdp,
            );
            (probabilities, queries)
        });
        let out = self.student.forward_features(&strong, true);
        let projected = l2_normalise(&self.student.project(&out.features));
        let student_labels = feature_labels(&out.logits.detach().softmax(1, Kind::Float));
        let student_queries = classify_patches(
            &projected,
            &student_labels,
            config.grid,
            config.fdp,
            config.bdp,
        );
        let positives = teacher_queries.features.shallow_clone();
        self.bank.push(teacher_queries);
        let bank = self.bank.contents().expect("just pushed");
        let contr = dense_contrastive_loss(&student_queries, &positives, &bank, config.temperature);
        let cons = consistency_loss(&out.logits, &teacher_probabilities, config.cons_threshold);
        (contr, cons, entropy_loss(&out.logits))
    }
}

/// Appends one row per epoch to `metrics.csv` (loss terms, validation Dice, time).
struct SemiCsv {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl SemiCsv {
    fn create(run_dir: &Path) -> Result<Self, TrainError> {
        let path = run_dir.join("metrics.csv");
        let mut file = std::fs::File::create(&path).map_err(TrainError::io(&path))?;
        writeln!(
            file,
            "epoch,loss,sup,contr,cons,ent,w_cons,lr,val_dice_c0,val_dice_c1,elapsed_s"
        )
        .map_err(TrainError::io(&path))?;
        Ok(Self { path, file })
    }

    fn append(&mut self, m: &EpochMetrics, parts: &[SemiStep], lr: f64) -> Result<(), TrainError> {
        let mean = |f: fn(&SemiStep) -> Option<f64>| {
            let v: Vec<f64> = parts.iter().filter_map(f).collect();
            if v.is_empty() {
                String::new()
            } else {
                (v.iter().sum::<f64>() / v.len() as f64).to_string()
            }
        };
        let dice = |c: usize| m.val_dice.get(c).map_or(String::new(), f64::to_string);
        writeln!(
            self.file,
            "{},{},{},{},{},{},{},{lr},{},{},{:.3}",
            m.epoch,
            mean(|s| Some(s.loss)),
            mean(|s| Some(s.sup)),
            mean(|s| s.contr),
            mean(|s| s.cons),
            mean(|s| s.ent),
            mean(|s| Some(s.w_cons)),
            dice(0),
            dice(NUCLEUS),
            m.elapsed_s
        )
        .and_then(|()| self.file.flush())
        .map_err(TrainError::io(&self.path))
    }
}

/// How long a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub epoch_steps: usize,
    pub steps: usize,
    /// Steps with the unsupervised branch on.
    pub semi_steps: usize,
}

impl Schedule {
    /// The schedule of `config` for a split with `pool` sub-images: by default an epoch is
    /// one pass over them as unlabeled data.
    pub fn new(config: &SemiConfig, pool: usize) -> Self {
        let epoch_steps = config
            .epoch_steps
            .unwrap_or_else(|| pool.div_ceil(config.unlabeled_batch.max(1)))
            .max(1);
        let all = config.epochs * epoch_steps;
        let steps = config.max_steps.map_or(all, |m| m.min(all));
        let semi_steps = if config.unsupervised {
            steps.saturating_sub(config.semi_start * epoch_steps)
        } else {
            0
        };
        Self {
            epoch_steps,
            steps,
            semi_steps,
        }
    }

    /// Crops a run takes from extra unlabeled slides (half of each unlabeled batch).
    pub fn slide_crops(&self, config: &SemiConfig) -> usize {
        self.semi_steps * slide_share(config.unlabeled_batch)
    }
}

/// Crops of an unlabeled batch of `batch` that come from extra slides, when there are any.
fn slide_share(batch: usize) -> usize {
    batch / 2
}

/// Trains CDCL (or SupOnly when `config.unsupervised` is false) on the labeled sub-images of
/// `folder` and unlabeled crops from `folder` and, if given, half of each unlabeled batch
/// from `slides` (e.g. a whole-slide crop stream of [`Schedule::slide_crops`] crops), validating on
/// `val` after every epoch, and writes the RUN_DIR: the teacher (CDCL) or the student
/// (SupOnly) of the best epoch by validation Dice, else of the last epoch. Stops with
/// [`DataError::Interrupted`] before a step once `cancelled()` says so.
pub fn train_semi(
    config: &SemiConfig,
    folder: &LabeledFolder,
    slides: Option<&dyn CropSource>,
    val: Option<&LabeledSet>,
    run_dir: &Path,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<TrainSummary, TrainError> {
    config.check(slides.is_some())?;
    create_run_dir(run_dir, config)?;
    let start = Instant::now();
    let labeled = LabeledTiles::choose(
        folder,
        config.tile,
        config.labeled_fraction,
        config.split_seed,
    )?;
    let method = if config.unsupervised {
        Method::Cdcl
    } else {
        Method::Supervised
    };
    let Schedule {
        epoch_steps,
        steps: total_steps,
        ..
    } = Schedule::new(config, labeled.pool);
    let epochs = total_steps.div_ceil(epoch_steps);
    // Unlabeled batches: crops from the folder's images, and from the slides if any.
    let sources: Vec<(&dyn CropSource, usize)> = match slides {
        Some(slides) => vec![
            (
                folder,
                config.unlabeled_batch - slide_share(config.unlabeled_batch),
            ),
            (slides, slide_share(config.unlabeled_batch)),
        ],
        None => vec![(folder, config.unlabeled_batch)],
    };
    let data = format!(
        "{} labeled of {} sub-images ({}px) in {}; unlabeled: {}",
        labeled.len(),
        labeled.pool,
        config.tile,
        folder.describe(),
        if config.unsupervised {
            sources
                .iter()
                .map(|(source, _)| source.describe())
                .collect::<Vec<_>>()
                .join(" + ")
        } else {
            "none (SupOnly)".into()
        }
    );

    tch::manual_seed(config.seed as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut model = MeanTeacher::new(config)?;
    ema_update(&mut model.teacher_vs, &model.student_vs, config.ema, 0);
    let mut csv = SemiCsv::create(run_dir)?;
    let mut labeled_deck = Deck::new(labeled.len());
    let mut unlabeled_decks: Vec<Deck> = sources
        .iter()
        .map(|(s, _)| Deck::new(s.epoch_len()))
        .collect();
    let mut history = Vec::new();
    let mut best: Option<Best> = None;
    let mut step = 0;
    for epoch in 0..epochs {
        let semi = config.unsupervised && epoch >= config.semi_start;
        let mut parts = Vec::with_capacity(epoch_steps);
        let mut lr = config.lr;
        while step < total_steps && step < (epoch + 1) * epoch_steps {
            if cancelled() {
                return Err(DataError::Interrupted.into());
            }
            lr = poly_lr(config.lr, step, total_steps);
            model.optimizer.set_lr(lr);
            let LabeledCrops {
                images: tiles,
                masks,
                ..
            } = labeled.batch(
                &labeled_deck.draw(config.labeled_batch, &mut rng),
                config.device,
            );
            let geometry = geometric(
                config.labeled_batch,
                tiles.size()[2],
                i64::from(config.crop),
                config.device,
                &mut rng,
            );
            let logits = model
                .student
                .forward_features(&geometry.apply(&tiles, false), true)
                .logits;
            let targets = geometry
                .apply(&masks, true)
                .squeeze_dim(1)
                .to_kind(Kind::Int64);
            let sup = logits.cross_entropy_loss::<Tensor>(
                &targets,
                None,
                tch::Reduction::Mean,
                -100,
                0.0,
            );
            let mut loss = &sup * config.w_sup;
            let mut record = SemiStep::default();
            if semi {
                let mut crops = Vec::with_capacity(sources.len());
                for ((source, count), deck) in sources.iter().zip(&mut unlabeled_decks) {
                    let items = deck.draw(*count, &mut rng);
                    crops.push(
                        source
                            .crops(&items, config.tile, config.device, &mut rng)?
                            .images,
                    );
                }
                let tiles = Tensor::cat(&crops, 0);
                let (contr, cons, ent) = model.unsupervised(config, &tiles, &mut rng);
                record.w_cons = consistency_weight(
                    config.w_cons,
                    step as f64 / epoch_steps as f64,
                    epochs as f64,
                );
                loss = loss + &contr * config.w_contr + &cons * record.w_cons + &ent * config.w_ent;
                record.contr = Some(f64::try_from(&contr)?);
                record.cons = Some(f64::try_from(&cons)?);
                record.ent = Some(f64::try_from(&ent)?);
            }
            model.optimizer.backward_step(&loss);
            ema_update(&mut model.teacher_vs, &model.student_vs, config.ema, step);
            record.loss = f64::try_from(&loss)?;
            record.sup = f64::try_from(&sup)?;
            parts.push(record);
            step += 1;
            progress(Progress::Step {
                epoch,
                step,
                outcome: StepOutcome::Updated {
                    loss: record.loss,
                    intra: None,
                    inter: None,
                },
            });
        }
        // CDCL keeps the teacher (the authors test the EMA model); SupOnly the student.
        let (net, vs) = if config.unsupervised {
            (&model.teacher, &model.teacher_vs)
        } else {
            (&model.student, &model.student_vs)
        };
        let val_dice = val
            .map(|set| {
                validation_dice(
                    &|x: &Tensor| net.probabilities(x),
                    set,
                    config.device,
                    CONFIDENCE_THRESHOLD,
                )
            })
            .unwrap_or_default();
        let metrics = EpochMetrics {
            epoch,
            loss: Some(parts.iter().map(|p| p.loss).sum::<f64>() / parts.len().max(1) as f64),
            intra: None,
            inter: None,
            steps: parts.len(),
            skipped_steps: 0,
            val_dice,
            hematoxylin_agreement: Vec::new(),
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        csv.append(&metrics, &parts, lr)?;
        let dice = metrics.val_dice.get(NUCLEUS).copied();
        let improved = dice.is_some_and(|d| best.is_none_or(|b| d > b.dice));
        if improved {
            best = dice.map(|dice| Best {
                epoch: Some(epoch),
                channel: NUCLEUS,
                dice,
            });
        }
        if improved || dice.is_none() {
            let card = ModelCard {
                architecture: Architecture::Unet,
                method,
                channels: 2,
                channel: NUCLEUS,
                threshold: CONFIDENCE_THRESHOLD,
                input_normalisation: InputNormalisation::Unit,
                epoch: Some(epoch),
                val_dice: metrics.val_dice.clone(),
                seed: config.seed,
                data: data.clone(),
                slidestream_version: env!("CARGO_PKG_VERSION").to_string(),
                train_mpp: config.train_mpp,
                selection: Some(if dice.is_some() {
                    Selection::ValidationDice
                } else {
                    Selection::LastEpoch
                }),
                hematoxylin_agreement: Vec::new(),
                width: Some(config.width),
                stain_calibration: None,
            };
            save_run(run_dir, Some(vs), &card)?;
        }
        progress(Progress::Epoch(&metrics));
        history.push(metrics);
        // Every epoch, so a long run can be watched; marked with what model.json now holds.
        draw_curves(&history, &read_card(run_dir)?, run_dir)?;
    }
    Ok(TrainSummary {
        method,
        seed: config.seed,
        best,
        label_free: None,
        steps: step,
        skipped_steps: 0,
        elapsed_s: start.elapsed().as_secs_f64(),
        epochs: history,
    })
}
