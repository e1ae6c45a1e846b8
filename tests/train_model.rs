//! The confidence network, its on-disk form and `load_run`'s errors.

mod common;

use std::collections::BTreeMap;

use slidestream::model::{
    load_run, save_run, Architecture, ConfidenceNet, InputNormalisation, LoadedModel, Method,
    ModelCard, ModelError, WEIGHTS_FILE,
};
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

fn card(channels: usize, channel: usize) -> ModelCard {
    ModelCard {
        architecture: Architecture::ConfidenceNet,
        method: Method::Contrastive,
        channels,
        channel,
        threshold: 0.5,
        input_normalisation: InputNormalisation::Epsilon { epsilon: 0.05 },
        epoch: Some(3),
        val_dice: vec![0.1; channels],
        seed: 7,
        data: "test".into(),
        slidestream_version: "0.1.0".into(),
        train_mpp: Some(0.25),
        selection: None,
        hematoxylin_agreement: Vec::new(),
        width: None,
        stain_calibration: None,
    }
}

#[test]
fn has_7372_parameters_for_k4_with_pytorch_names() {
    let _rng = common::torch_rng();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = ConfidenceNet::new(&vs.root(), 4, 0.05);
    let trainable: i64 = vs
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum();
    assert_eq!(trainable, 7372);
    let names = vs.variables();
    for name in [
        "f.0.f.0.weight",
        "f.0.f.1.weight",
        "f.0.f.1.running_mean",
        "f.6.block.1.f.0.weight",
        "f.6.block.1.f.1.running_var",
        "f.7.weight",
        "f.7.bias",
    ] {
        assert!(names.contains_key(name), "missing {name}");
    }
    assert_eq!(names["f.6.block.0.f.0.weight"].size(), [8, 8, 3, 3]);
    assert_eq!(names["f.7.weight"].size(), [4, 8, 1, 1]);
    // No conv bias except the head's.
    assert!(!names.contains_key("f.0.f.0.bias"));
}

#[test]
fn output_has_k_channels_in_unit_interval() {
    let _rng = common::torch_rng();
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ConfidenceNet::new(&vs.root(), 3, 0.05);
    let x = common::uniform(&[2, 3, 45, 37], 1);
    for train in [true, false] {
        let y = net.forward_t(&x, train);
        assert_eq!(y.size(), [2, 3, 45, 37]);
        assert!(f64::try_from(y.min()).unwrap() > 0.0);
        assert!(f64::try_from(y.max()).unwrap() < 1.0);
    }
}

/// `infer` folds each BatchNorm into its convolution: the eval-mode values up to rounding,
/// with BatchNorm weights, biases and running statistics all away from their initial values.
#[test]
fn infer_equals_the_eval_forward() {
    let _rng = common::torch_rng();
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ConfidenceNet::new(&vs.root(), 4, 0.05);
    tch::no_grad(|| {
        for (seed, (name, mut var)) in vs.variables().into_iter().enumerate() {
            if name.contains(".f.1.") {
                var.copy_(&(common::uniform(&var.size(), seed as u64) + 0.5));
            }
        }
    });
    let _ = net.forward_t(&common::uniform(&[2, 3, 64, 48], 1), true);
    // A batch wider than the largest dilation's reach, and one image narrower than it.
    for (seed, shape) in [[2, 3, 64, 48], [1, 3, 7, 3]].into_iter().enumerate() {
        let x = common::uniform(&shape, 2 + seed as u64);
        let eval = net.forward_t(&x, false);
        let inferred = net.infer(&x);
        assert_eq!(inferred.size(), eval.size());
        assert!(!inferred.requires_grad());
        let gap = (&inferred - &eval).abs().max().double_value(&[]);
        assert!(
            gap < 1e-5,
            "{shape:?}: infer differs from the eval forward by {gap}"
        );
        let spread = eval.std(false).double_value(&[]);
        assert!(spread > 1e-3, "a flat output proves nothing: sd {spread}");
    }
}

/// The weights file must be plain safetensors: u64 LE header length, JSON header with
/// dtype/shape/data_offsets per tensor, then the data.
#[test]
fn safetensors_round_trip_and_standard_header() {
    let _rng = common::torch_rng();
    tch::manual_seed(2);
    let dir = tempfile::tempdir().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ConfidenceNet::new(&vs.root(), 4, 0.05);
    let x = common::uniform(&[1, 3, 32, 32], 1);
    // A training-mode pass moves the BatchNorm running statistics away from their init.
    let _ = net.forward_t(&x, true);
    let expected = net.forward_t(&x, false);
    save_run(dir.path(), Some(&vs), &card(4, 2)).unwrap();

    let (loaded, card_back) = load_run(dir.path(), Device::Cpu).unwrap();
    assert_eq!(card_back, card(4, 2));
    let LoadedModel::Network { net: net2, .. } = &loaded else {
        panic!("expected a network")
    };
    assert_eq!(net2.forward_t(&x, false), expected);
    let fg = loaded.foreground(&card_back, &x);
    assert_eq!(fg, net2.infer(&x).select(1, 2).gt(0.5));

    let bytes = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let vars = vs.variables();
    let mut end = 0;
    for (name, var) in &vars {
        let entry = &header[name];
        assert_eq!(entry["dtype"], "F32");
        assert_eq!(entry["shape"], serde_json::json!(var.size()));
        end = end.max(entry["data_offsets"][1].as_u64().unwrap() as usize);
    }
    assert_eq!(
        header.keys().filter(|k| *k != "__metadata__").count(),
        vars.len()
    );
    assert_eq!(8 + n + end, bytes.len());
}

#[test]
fn load_run_names_the_broken_file() {
    let _rng = common::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = ConfidenceNet::new(&vs.root(), 4, 0.05);

    // A folder that is not a run at all: say so, and what to pass instead.
    let err = load_run(dir.path(), Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NotARun { .. }), "{err}");
    assert!(err.to_string().contains("--out of a finished"), "{err}");

    save_run(dir.path(), None, &card(4, 0)).unwrap();
    let err = load_run(dir.path(), Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingWeights { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    save_run(dir.path(), Some(&vs), &card(3, 0)).unwrap();
    let err = load_run(dir.path(), Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, ModelError::Shape { name, .. } if name.starts_with("f.7")),
        "{err}"
    );

    save_run(dir.path(), Some(&vs), &card(4, 4)).unwrap();
    let err = load_run(dir.path(), Device::Cpu).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::ChannelOutOfRange {
                channel: 4,
                channels: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("model.json"), "{err}");

    std::fs::write(dir.path().join("model.json"), "{").unwrap();
    let err = load_run(dir.path(), Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::Card { .. }), "{err}");
}
