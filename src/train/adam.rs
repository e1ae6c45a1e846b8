//! Adam with L2 weight decay, the update of `torch::optim::Adam` (what `tch::nn::Adam`
//! wraps), written out because tch gives no access to the optimizer's moment estimates and
//! a run that resumes after a crash needs them (see [`super::checkpoint`]).

use std::collections::HashMap;

use tch::{nn, Tensor};

/// Moment estimates are stored under these name prefixes, one tensor per parameter.
const FIRST_MOMENT: &str = "adam.exp_avg.";
const SECOND_MOMENT: &str = "adam.exp_avg_sq.";

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// The optimizer of one `VarStore`'s trainable variables.
#[derive(Debug)]
pub struct Adam {
    lr: f64,
    weight_decay: f64,
    /// Updates taken so far (bias correction needs it).
    pub steps: u64,
    /// (name, parameter, first moment, second moment), sorted by name.
    params: Vec<(String, Tensor, Tensor, Tensor)>,
}

impl Adam {
    pub fn new(vs: &nn::VarStore, lr: f64, weight_decay: f64) -> Self {
        let mut params: Vec<(String, Tensor, Tensor, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, p)| p.requires_grad())
            .map(|(name, p)| {
                let zeros = || p.zeros_like();
                let (m, v) = (zeros(), zeros());
                (name, p, m, v)
            })
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            lr,
            weight_decay,
            steps: 0,
            params,
        }
    }

    /// Gradients of `loss`, then one update: grad += wd·p; m = β1·m + (1−β1)·grad;
    /// v = β2·v + (1−β2)·grad²; p −= lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε).
    pub fn backward_step(&mut self, loss: &Tensor) {
        for (_, p, _, _) in &mut self.params {
            p.zero_grad();
        }
        loss.backward();
        self.steps += 1;
        let t = self.steps as i32;
        let step_size = self.lr / (1.0 - BETA1.powi(t));
        let bias_correction2 = (1.0 - BETA2.powi(t)).sqrt();
        tch::no_grad(|| {
            for (_, p, m, v) in &mut self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = grad + &*p * self.weight_decay;
                *m *= BETA1;
                *m += &grad * (1.0 - BETA1);
                *v *= BETA2;
                *v += &grad * &grad * (1.0 - BETA2);
                let denominator = v.sqrt() / bias_correction2 + EPS;
                *p -= &*m / denominator * step_size;
            }
        });
    }

    /// The moment estimates as named tensors, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .flat_map(|(name, _, m, v)| {
                [
                    (format!("{FIRST_MOMENT}{name}"), m.shallow_clone()),
                    (format!("{SECOND_MOMENT}{name}"), v.shallow_clone()),
                ]
            })
            .collect()
    }

    /// Restores the moment estimates that [`Self::state`] wrote; the name of the first one
    /// missing or of the wrong shape is the error.
    pub fn load_state(
        &mut self,
        steps: u64,
        stored: &HashMap<String, Tensor>,
    ) -> Result<(), String> {
        tch::no_grad(|| {
            for (name, p, m, v) in &mut self.params {
                for (prefix, moment) in [(FIRST_MOMENT, &mut *m), (SECOND_MOMENT, &mut *v)] {
                    let key = format!("{prefix}{name}");
                    match stored.get(&key) {
                        Some(src) if src.size() == p.size() => moment.copy_(src),
                        _ => return Err(key),
                    }
                }
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{torch_rng, uniform};
    use tch::nn::{Module, OptimizerConfig};
    use tch::{Device, Kind};

    fn model(vs: &nn::VarStore) -> impl Module {
        let root = vs.root();
        nn::seq()
            .add(nn::linear(&root / "a", 5, 7, Default::default()))
            .add_fn(|x| x.tanh())
            .add(nn::linear(&root / "b", 7, 1, Default::default()))
    }

    /// Same initial weights and data: ours and libtorch's Adam take the same path.
    #[test]
    fn matches_libtorch_adam() {
        let _rng = torch_rng();
        let x = uniform(&[16, 5], 1) * 2.0 - 1.0;
        let y = uniform(&[16, 1], 2) * 2.0 - 1.0;
        let (lr, wd) = (0.05, 0.01);
        let train = |ours: bool| {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            let net = model(&vs);
            let mut theirs = nn::Adam::default().wd(wd).build(&vs, lr).unwrap();
            let mut mine = Adam::new(&vs, lr, wd);
            for _ in 0..20 {
                let loss = (net.forward(&x) - &y).square().mean(Kind::Float);
                if ours {
                    mine.backward_step(&loss);
                } else {
                    theirs.backward_step(&loss);
                }
            }
            (net.forward(&x) - &y).square().mean(Kind::Float)
        };
        let (ours, theirs) = (train(true), train(false));
        let start = {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            (model(&vs).forward(&x) - &y).square().mean(Kind::Float)
        };
        assert!(
            f64::try_from(&theirs).unwrap() < 0.8 * f64::try_from(&start).unwrap(),
            "20 steps must move the loss for the comparison to mean anything"
        );
        assert!(
            ours.allclose(&theirs, 1e-5, 1e-7, false),
            "{ours:?} vs {theirs:?}"
        );
    }

    #[test]
    fn state_round_trips_and_names_what_is_missing() {
        let _rng = torch_rng();
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = model(&vs);
        let mut adam = Adam::new(&vs, 0.01, 0.0);
        let x = uniform(&[4, 5], 3) * 2.0 - 1.0;
        adam.backward_step(&net.forward(&x).sum(Kind::Float));
        let stored: HashMap<String, Tensor> = adam.state().into_iter().collect();
        assert_eq!(stored.len(), 8);

        let mut fresh = Adam::new(&vs, 0.01, 0.0);
        fresh.load_state(adam.steps, &stored).unwrap();
        assert_eq!(fresh.steps, 1);
        for ((name, m), (_, m2)) in adam.state().iter().zip(fresh.state().iter()) {
            assert_eq!(m, m2, "{name}");
        }
        let mut partial = stored;
        partial.remove("adam.exp_avg_sq.b.bias");
        assert_eq!(
            fresh.load_state(1, &partial).unwrap_err(),
            "adam.exp_avg_sq.b.bias"
        );
    }
}
