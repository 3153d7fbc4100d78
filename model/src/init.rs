//! Initialisation as the official code does it when given the MAE checkpoint (spec §2.4):
//! PyTorch default init for everything (Linear/Conv kaiming-uniform a=√5, LayerNorm/BN (1,0)),
//! `temporal_fc` zeroed in all blocks, `time_embed` zeros, `temp_token ~ N(0, 1e-6)`, then the
//! MAE encoder tensors (dict key `model`) loaded by name with `strict=False`.

use crate::network::Network;
use crate::safetensors_io::{HostTensor, StateDict};
use crate::ModelError;
use kernels::Backend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr_normal::normal;

/// Box–Muller standard normal (kept local to avoid another dependency).
mod rand_distr_normal {
    use rand::Rng;
    /// One N(0, 1) draw.
    pub fn normal<R: Rng>(rng: &mut R) -> f64 {
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Map MAE pre-training encoder names to FakeSTormer names (`backbone.` prefix); decoder and
/// mask-token tensors are dropped. Keys: `cls_token`, `pos_embed`, `patch_embed.proj.*`,
/// `blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`, `norm.*`.
pub fn map_mae_keys(mae: &StateDict) -> StateDict {
    mae.iter()
        .filter(|(k, _)| {
            k.as_str() == "cls_token"
                || k.as_str() == "pos_embed"
                || k.starts_with("patch_embed.")
                || k.starts_with("blocks.")
                || k.starts_with("norm.")
        })
        .map(|(k, v)| (format!("backbone.{k}"), v.clone()))
        .collect()
}

impl<B: Backend> Network<B> {
    /// PyTorch-default initialisation of spec §2.4 (deterministic given `seed`).
    pub fn init_default(&mut self, be: &B, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let lay = self.inv.layout.clone();
        let zero_fc: Vec<usize> = lay
            .blocks
            .iter()
            .flat_map(|b| [b.temporal_fc.w, b.temporal_fc.b])
            .collect();
        for (i, p) in self.inv.params.iter().enumerate() {
            let n = p.numel();
            let name = p.name.as_str();
            let vals: Vec<f32> = if zero_fc.contains(&i) || i == lay.time_embed {
                vec![0.0; n]
            } else if i == lay.temp_token {
                (0..n).map(|_| (1e-6 * normal(&mut rng)) as f32).collect()
            } else if i == lay.cls_token || i == lay.pos_embed {
                // replaced by MAE; without it the official constructor draws trunc_normal(0.02)
                (0..n)
                    .map(|_| (0.02 * normal(&mut rng)).clamp(-0.04, 0.04) as f32)
                    .collect()
            } else if p.shape.len() == 1
                && (name.contains("norm")
                    || name.contains("before_proj.0.1")
                    || name.contains("proj.0.1"))
            {
                let one = name.ends_with(".weight");
                vec![if one { 1.0 } else { 0.0 }; n]
            } else {
                // kaiming_uniform(a=√5) ⇒ U(±1/√fan_in) for weights, same bound for biases
                let fan_in = if name.ends_with(".weight") {
                    p.shape[1..].iter().product::<usize>()
                } else {
                    let w = &self.inv.params[i - 1];
                    w.shape[1..].iter().product::<usize>()
                };
                let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                (0..n)
                    .map(|_| rng.gen_range(-bound..bound) as f32)
                    .collect()
            };
            self.weights.params[i] = be.upload(&vals);
        }
        for (i, b) in self.inv.buffers.iter().enumerate() {
            let v = if b.name.ends_with("running_var") {
                1.0
            } else {
                0.0
            };
            self.weights.buffers[i] = be.upload(&vec![v; b.numel()]);
        }
        self.weights.tracked.iter_mut().for_each(|t| *t = 0);
    }

    /// Load the tensors of an MAE checkpoint (already key-mapped with [`map_mae_keys`]) whose
    /// names and shapes match (`strict=False`); returns the names loaded. A shape mismatch on a
    /// matching name is an error (it means the wrong architecture).
    pub fn load_partial(&mut self, be: &B, sd: &StateDict) -> Result<Vec<String>, ModelError> {
        let mut loaded = Vec::new();
        for (i, p) in self.inv.params.iter().enumerate() {
            match sd.get(&p.name) {
                Some(HostTensor::F32 { shape, data }) => {
                    let squeezed =
                        |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
                    if squeezed(shape) != squeezed(&p.shape) {
                        return Err(ModelError::Format(format!(
                            "{}: shape {shape:?}, model expects {:?}",
                            p.name, p.shape
                        )));
                    }
                    self.weights.params[i] = be.upload(data);
                    loaded.push(p.name.clone());
                }
                Some(HostTensor::I64 { .. }) => {
                    return Err(ModelError::Format(format!("{}: expected float", p.name)))
                }
                None => {}
            }
        }
        Ok(loaded)
    }
}
