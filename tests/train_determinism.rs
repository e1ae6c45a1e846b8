//! Same seed, same weights (own test binary: torch's RNG is process-global).

mod common;

use slidestream::train::{train, TrainConfig};
use tch::Device;

fn weights_after(seed: u64) -> Vec<(String, tch::Tensor)> {
    let data = common::disks(6, 64, 6, 10, 11);
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        seed,
        epochs: 2,
        channels: 2,
        crop: 48,
        batch: 3,
        patch_size: 16,
        stride: 8,
        ..TrainConfig::default()
    };
    train(&config, &data, None, dir.path(), &mut |_| {}).unwrap();
    let (model, _) = slidestream::model::load_run(dir.path(), Device::Cpu).unwrap();
    let slidestream::model::LoadedModel::Network { vs, .. } = model else {
        panic!()
    };
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

#[test]
fn same_seed_same_weights() {
    let (a, b, c) = (weights_after(3), weights_after(3), weights_after(4));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(ta, tb, "{na} differs between runs with the same seed");
    }
    assert!(a.iter().zip(&c).any(|((_, ta), (_, tc))| ta != tc));
}
