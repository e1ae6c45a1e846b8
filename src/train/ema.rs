//! The mean teacher (seed 003, eq. 2): a copy of the student whose weights follow the
//! student's as an exponential moving average. It changes more slowly than the student and
//! so gives steadier targets (CDCL). With α uncapped (1) the warm-up makes it a running mean
//! of the snapshots given, which is how the self-training method averages its late epochs
//! (`step::WeightAverage`).

use tch::nn::VarStore;

/// Eq. 2 of seed 003, with the mean-teacher warm-up: every variable of `teacher` (weights
/// and BatchNorm statistics) becomes α_t·teacher + (1 − α_t)·student with
/// α_t = min(1 − 1/(step+1), α). At step 0 the teacher is a copy of the student.
pub fn ema_update(teacher: &mut VarStore, student: &VarStore, alpha: f64, step: usize) {
    let alpha = (1.0 - 1.0 / (step as f64 + 1.0)).min(alpha);
    let student = student.variables();
    tch::no_grad(|| {
        for (name, mut t) in teacher.variables() {
            let s = &student[&name];
            if t.is_floating_point() {
                t.copy_(&(&t * alpha + s * (1.0 - alpha)));
            } else {
                t.copy_(s);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;
    use tch::Device;

    #[test]
    fn ema_copies_at_step_zero_then_averages() {
        let student = nn::VarStore::new(Device::Cpu);
        let s = student.root().var("w", &[2], nn::Init::Const(2.0));
        let mut teacher = nn::VarStore::new(Device::Cpu);
        let t = teacher.root().var("w", &[2], nn::Init::Const(0.0));
        ema_update(&mut teacher, &student, 0.999, 0);
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [2.0, 2.0]);
        let _ = tch::no_grad(|| s.shallow_clone().fill_(4.0));
        // Step 1: α_t = min(1 − 1/2, 0.999) = 0.5.
        ema_update(&mut teacher, &student, 0.999, 1);
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [3.0, 3.0]);
        // Late: α_t = 0.9 (the cap).
        ema_update(&mut teacher, &student, 0.9, 10_000);
        let v = Vec::<f32>::try_from(&t).unwrap();
        assert!((v[0] - 3.1).abs() < 1e-6);
    }
}
